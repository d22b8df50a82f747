/**
 * The mistakes operators make, run through the CLI as a user runs it
 * (`node dist/cli.js …`): each ends with its own code, the side (source, sink,
 * http), the variable to look at and a `Fix:` line, never "unexpected" with a
 * stack; and a setup that fails has changed neither database.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { runCommand } from '../harness/connector.js';
import { createTestContext, type TestContext } from '../harness/context.js';
import { freePort } from '../harness/http.js';
import { createPonderTables } from '../harness/ponder.js';
import { asRole } from '../harness/psql.js';
import { FAST } from '../harness/settings.js';

interface Block {
  code?: string;
  side?: string;
  variable?: string;
  fix?: string;
}

/** The code, side, variable and Fix lines the CLI printed for the error. */
function block(output: string): Block {
  const line = (name: string) => new RegExp(`^\\s*${name}: (.+)$`, 'm').exec(output)?.[1];
  return { code: line('code'), side: line('side'), variable: line('variable'), fix: line('Fix') };
}

/** Exit code and block of a command that must fail with `want`; never a stack. */
async function expectMistake(
  env: Record<string, string>,
  args: string[],
  want: { exit: number; code: string; side: string; variable: string; fix: RegExp },
): Promise<string> {
  const r = await runCommand(env, args);
  expect(r.code, r.output).toBe(want.exit);
  expect(block(r.output), r.output).toEqual({
    code: want.code,
    side: want.side,
    variable: want.variable,
    fix: expect.stringMatching(want.fix),
  });
  expect(r.output).not.toMatch(/unexpected|\n\s+at .*\.js:\d+/);
  return r.output;
}

/** Everything setup could create or change in a database: schemas, relations, extensions, publications, slots. */
async function catalog(db: pg.Pool): Promise<string[]> {
  const r = await db.query<{ o: string }>(
    `SELECT 'schema ' || nspname AS o FROM pg_namespace
      WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'
     UNION ALL
     SELECT 'relation ' || n.nspname || '.' || c.relname || ' ' || c.relkind::text || ' ' || c.relowner::regrole::text
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
     UNION ALL SELECT 'extension ' || extname FROM pg_extension
     UNION ALL SELECT 'publication ' || pubname FROM pg_publication
     UNION ALL SELECT 'slot ' || slot_name FROM pg_replication_slots WHERE database = current_database()
     ORDER BY 1`,
  );
  return r.rows.map((x) => x.o);
}

async function both(ctx: TestContext): Promise<{ source: string[]; sink: string[] }> {
  return { source: await catalog(ctx.source), sink: await catalog(ctx.sink) };
}

function withPassword(url: string, password: string): string {
  const u = new URL(url);
  u.password = password;
  return u.toString();
}

describe('operator mistakes through the CLI', () => {
  it('setup: each source mistake names its code, side, variable and fix, and changes neither database', async () => {
    await using ctx = await createTestContext('mistakes_source');
    await createPonderTables(ctx.source);
    const role = `weak_${randomBytes(4).toString('hex')}`;
    const password = randomBytes(12).toString('hex');
    await ctx.source.query(`CREATE ROLE ${role} LOGIN REPLICATION PASSWORD '${password}'`);
    try {
      await ctx.source.query(`GRANT SELECT ON order_book_trades, pools TO ${role}`);
      const weak = ctx.env({ ...FAST, SLOTLINE_SOURCE_URL: asRole(ctx.sourceUrl, role, password) });
      const before = await both(ctx);
      const unchanged = async (what: string) => expect(await both(ctx), what).toEqual(before);

      await expectMistake(
        ctx.env({ SLOTLINE_SOURCE_URL: withPassword(ctx.sourceUrl, 'not-the-password') }),
        ['setup'],
        {
          exit: 1,
          code: 'auth_failed',
          side: 'source',
          variable: 'SLOTLINE_SOURCE_URL',
          fix: /user name and password in SLOTLINE_SOURCE_URL/,
        },
      );
      await unchanged('wrong source password');

      // No publication, and the role may not create one: PostgreSQL's own words, then the fix.
      const denied = {
        exit: 1,
        code: 'publication_privilege',
        side: 'source',
        variable: 'SLOTLINE_PUBLICATION',
        fix: /sql\/roles\/source_role\.sql/,
      };
      expect(await expectMistake(weak, ['setup'], denied)).toMatch(
        /permission denied for database/,
      );
      await unchanged('no CREATE on the source database');
      await ctx.source.query(`GRANT CREATE ON DATABASE ${ctx.sourceDb} TO ${role}`);
      expect(await expectMistake(weak, ['setup'], denied)).toMatch(
        /must be owner of table order_book_trades, pools/,
      );
      await unchanged('tables owned by another role');
      // Someone else's publication, lacking a table.
      await ctx.source.query(`CREATE PUBLICATION ${ctx.publication} FOR TABLE order_book_trades`);
      const withPub = await both(ctx);
      expect(await expectMistake(weak, ['setup'], denied)).toMatch(
        new RegExp(`must be owner of publication ${ctx.publication}`),
      );
      expect(await both(ctx), 'publication owned by another role').toEqual(withPub);
    } finally {
      await ctx.source.query(`DROP OWNED BY ${role}`).catch(() => undefined);
      await ctx.source.query(`DROP ROLE IF EXISTS ${role}`);
    }
  });

  it('setup refuses a SQL_ASCII source, named, with its fix, and changes nothing', async () => {
    await using ctx = await createTestContext('mistakes_ascii');
    const ascii = `${ctx.sourceDb}_ascii`;
    await ctx.source.query(
      `CREATE DATABASE ${ascii} ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'`,
    );
    const url = new URL(ctx.sourceUrl);
    url.pathname = `/${ascii}`;
    try {
      const before = await catalog(ctx.sink);
      const out = await expectMistake(ctx.env({ SLOTLINE_SOURCE_URL: url.toString() }), ['setup'], {
        exit: 1,
        code: 'source_encoding',
        side: 'source',
        variable: 'SLOTLINE_SOURCE_URL',
        fix: /ENCODING 'UTF8'/,
      });
      expect(out).toMatch(/SQL_ASCII/);
      expect(await catalog(ctx.sink)).toEqual(before);
    } finally {
      await ctx.source.query(`DROP DATABASE ${ascii} WITH (FORCE)`);
    }
  });

  it('sink mistakes: a wrong password, a missing database, a system schema', async () => {
    await using ctx = await createTestContext('mistakes_sink');
    await createPonderTables(ctx.source);
    const before = await both(ctx);
    await expectMistake(
      ctx.env({ SLOTLINE_SINK_URL: withPassword(ctx.sinkUrl, 'not-the-password') }),
      ['setup'],
      {
        exit: 1,
        code: 'auth_failed',
        side: 'sink',
        variable: 'SLOTLINE_SINK_URL',
        fix: /user name and password in SLOTLINE_SINK_URL/,
      },
    );
    const missing = new URL(ctx.sinkUrl);
    missing.pathname = `/${ctx.sinkDb}_nowhere`;
    await expectMistake(ctx.env({ SLOTLINE_SINK_URL: missing.toString() }), ['setup'], {
      exit: 1,
      code: 'database_missing',
      side: 'sink',
      variable: 'SLOTLINE_SINK_URL',
      fix: /CREATE DATABASE/,
    });
    for (const schema of ['pg_catalog', 'information_schema', 'pg_toast']) {
      await expectMistake(ctx.env({ SLOTLINE_SINK_SCHEMA: schema }), ['setup'], {
        exit: 2,
        code: 'sink_schema_reserved',
        side: 'sink',
        variable: 'SLOTLINE_SINK_SCHEMA',
        fix: /schema of your own/,
      });
    }
    // Source checks passed in the first two: the sink failure alone kept setup from changing the source.
    expect(await both(ctx)).toEqual(before);
  });

  it('a URL password with an unencoded @ and # (or /) is refused by name without echoing it; encoded it works', async () => {
    await using ctx = await createTestContext('mistakes_url');
    await createPonderTables(ctx.source);
    const role = `odd_${randomBytes(4).toString('hex')}`;
    const password = `p@ss#w0rd/${randomBytes(4).toString('hex')}`;
    await ctx.source.query(`CREATE ROLE ${role} LOGIN SUPERUSER PASSWORD '${password}'`);
    try {
      const raw = (url: string) => {
        const u = new URL(url);
        return `postgres://${role}:${password}@${u.host}${u.pathname}`;
      };
      for (const [variable, side, url] of [
        ['SLOTLINE_SOURCE_URL', 'source', raw(ctx.sourceUrl)],
        ['SLOTLINE_SINK_URL', 'sink', raw(ctx.sinkUrl)],
      ] as const) {
        const out = await expectMistake(ctx.env({ [variable]: url }), ['check'], {
          exit: 2,
          code: 'url_unencoded_character',
          side,
          variable,
          fix: /percent-encode.*@ as %40, # as %23/,
        });
        for (const piece of password.split(/[@#/]/).filter((p) => p.length >= 4))
          expect(out).not.toContain(piece);
      }
      const encoded = (url: string) => asRole(url, role, password);
      const ok = await runCommand(
        ctx.env({
          SLOTLINE_SOURCE_URL: encoded(ctx.sourceUrl),
          SLOTLINE_SINK_URL: encoded(ctx.sinkUrl),
        }),
        ['check'],
      );
      expect(ok.code, ok.output).toBe(0);
    } finally {
      await ctx.source.query(`DROP ROLE IF EXISTS ${role}`);
    }
  });

  it('the HTTP port in use: run and the demo name SLOTLINE_HTTP_PORT and how to change it', async () => {
    await using ctx = await createTestContext('mistakes_http');
    await createPonderTables(ctx.source);
    const port = await freePort();
    const busy: Server = createServer();
    await new Promise<void>((resolve) => busy.listen(port, '0.0.0.0', resolve));
    try {
      const want = {
        exit: 1,
        code: 'http_port_in_use',
        side: 'http',
        variable: 'SLOTLINE_HTTP_PORT',
        fix: /SLOTLINE_HTTP_PORT=\d+ slotline run.*SLOTLINE_HTTP_PORT=\d+ slotline demo.*or to 0/,
      };
      const env = ctx.env({ ...FAST, SLOTLINE_HTTP_PORT: String(port) });
      expect(await expectMistake(env, ['run'], want)).toMatch(`port ${port} is in use`);
      const before = await both(ctx);
      // The demo finds it before it starts anything (its own PostgreSQL included).
      const demo = await expectMistake(
        { SLOTLINE_HTTP_PORT: String(port), SLOTLINE_DEMO_SECONDS: '5' },
        ['demo'],
        want,
      );
      expect(demo).not.toMatch(/PostgreSQL \d/);
      expect(await both(ctx)).toEqual(before);
      // `check` says so too, as a warning: the port may be this connector's, already running.
      const check = await runCommand(env, ['check']);
      expect(check.code, check.output).toBe(0);
      expect(check.output).toMatch(/http +port +warn +port \d+ is in use/);
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  });

  it('check runs every check on both databases, prints ok or the fix, exits 1 on a failure, and changes nothing', async () => {
    await using ctx = await createTestContext('mistakes_check');
    const before = await both(ctx);
    const missingSink = new URL(ctx.sinkUrl);
    missingSink.pathname = `/${ctx.sinkDb}_nowhere`;
    // Both databases wrong at once: both are reported.
    const bad = await runCommand(ctx.env({ SLOTLINE_SINK_URL: missingSink.toString() }), ['check']);
    expect(bad.code, bad.output).toBe(1);
    expect(bad.output).toMatch(/source table order_book_trades +FAIL .*does not exist/);
    expect(bad.output).toMatch(/code: source_table_missing\n\s+variable: SLOTLINE_SOURCE_SCHEMA/);
    expect(bad.output).toMatch(/sink +connect +FAIL .*does not exist/);
    expect(bad.output).toMatch(/code: database_missing\n\s+variable: SLOTLINE_SINK_URL\n\s+Fix: /);
    expect(bad.output).toMatch(/\d+ checks, 3 failed/);
    // setup with the same mistakes: both told, nothing changed.
    const setup = await runCommand(ctx.env({ SLOTLINE_SINK_URL: missingSink.toString() }), [
      'setup',
    ]);
    expect(setup.code, setup.output).toBe(1);
    expect(setup.output).toMatch(/3 checks failed:/);
    for (const code of ['source_table_missing', 'database_missing'])
      expect(setup.output).toContain(`code: ${code}`);

    expect(await both(ctx), 'a failed check or setup changes nothing').toEqual(before);
    await createPonderTables(ctx.source);
    const ready = await both(ctx);
    const good = await runCommand(ctx.env(), ['check']);
    expect(good.code, good.output).toBe(0);
    for (const line of [
      /source +connect +ok +PostgreSQL 1\d/,
      /source +wal_level +ok +logical/,
      /source +encoding +ok +UTF8/,
      /source +max_replication_slots +ok +\d+ of \d+ in use, one free for this slot/,
      /source +max_wal_senders +ok +\d+ of \d+ in use, one free/,
      /source +max_slot_wal_keep_size +warn .*unbounded/,
      /Fix: ALTER SYSTEM SET max_slot_wal_keep_size/,
      /source +publication +ok .*setup creates it/,
      /sink +connect +ok/,
      /sink +encoding +ok +UTF8/,
      /sink +privileges +ok/,
      /sink +timescaledb +ok/,
      /source +slot +ok .*setup creates it/,
      /0 failed, 1 warning: ready/,
    ])
      expect(good.output).toMatch(line);
    expect(await both(ctx), 'check changes nothing').toEqual(ready);
    // Once set up, check sees the slot and the publication as they are.
    const setupOk = await runCommand(ctx.env(), ['setup']);
    expect(setupOk.code, setupOk.output).toBe(0);
    const after = await runCommand(ctx.env(), ['check']);
    expect(after.code, after.output).toBe(0);
    expect(after.output).toMatch(
      new RegExp(`source +slot +ok +${ctx.slot} exists \\(wal_status reserved`),
    );
    expect(after.output).toMatch(/source +publication +ok .*covers order_book_trades, pools/);
  });
});
