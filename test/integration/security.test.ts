/**
 * docs/security.md held to what PostgreSQL does. The recommended pg_hba.conf
 * (taken from the document itself, no `replication` line) lets slotline's
 * roles set up and stream, and refuses the source role a physical replication
 * connection and other databases. And what REPLICATION grants beyond
 * slotline's slot is what the notes say it is.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { startCluster } from '../harness/cluster.js';
import { runCommand, startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { expectSinkEqualsSource, expectSlotAtCheckpoint } from '../harness/compare.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
} from '../harness/ponder.js';
import { asRole, psql, withClient } from '../harness/psql.js';
import { FAST } from '../harness/settings.js';
import { waitFor } from '../harness/wait.js';

const DOC = readFileSync(new URL('../../docs/security.md', import.meta.url), 'utf8');

/** The harness's own superuser, over TCP with its password: the only line before the test's. */
const ADMIN_ONLY = 'host  all  slotline_admin  127.0.0.1/32  scram-sha-256\n';

/** The document's recommended lines, with this test's databases, roles and address. */
function recommendedHba(names: Record<string, string>): string {
  const block = /<!-- hba:start -->[\s\S]*?```\n([\s\S]*?)```/.exec(DOC)?.[1];
  if (!block) throw new Error('docs/security.md has no pg_hba block between hba:start and hba:end');
  return block
    .replace(/<connector address>/g, '127.0.0.1/32')
    .split('\n')
    .map((line) => {
      if (line.trim() === '' || line.trim().startsWith('#')) return line;
      const f = line.trim().split(/\s+/);
      return f.map((x, i) => (i === 1 || i === 2 ? (names[x] ?? x) : x)).join('  ');
    })
    .join('\n');
}

describe('docs/security.md', () => {
  it('the recommended pg_hba.conf: slotline sets up and streams with no replication line; its role gets no physical replication and no other database', async () => {
    await using cluster = await startCluster({ hba: ADMIN_ONLY });
    await using ctx = await createTestContext('hba', { adminUrl: cluster.adminUrl });
    const password = randomBytes(18).toString('hex');
    const [sourceRole, sinkRole] = ['slotline', 'slotline_sink'];
    await createPonderTables(ctx.source);
    const pool = makePool(0);
    await insertPools(ctx.source, 'public', [pool]);
    await insertTrades(ctx.source, 'public', [makeTrade(1, pool), makeTrade(2, pool)]);
    await psql(ctx.sourceUrl, 'sql/roles/source_role.sql', {
      role: sourceRole,
      password,
      publication: ctx.publication,
    });
    await psql(ctx.sinkUrl, 'sql/roles/sink_role.sql', { role: sinkRole, password });

    const hba =
      ADMIN_ONLY +
      recommendedHba({
        ponder: ctx.sourceDb,
        analytics: ctx.sinkDb,
        slotline: sourceRole,
        slotline_sink: sinkRole,
      });
    expect(hba).not.toMatch(/\sreplication\s/);
    await writeFile(join(cluster.dataDir, 'pg_hba.conf'), hba);
    await ctx.source.query('SELECT pg_reload_conf()');
    const rules = await ctx.source.query<{ error: string | null }>(
      'SELECT error FROM pg_hba_file_rules WHERE error IS NOT NULL',
    );
    expect(rules.rows).toEqual([]);

    const sourceUrl = asRole(ctx.sourceUrl, sourceRole, password);
    // The postmaster reloads on SIGHUP, a moment after pg_reload_conf() returns.
    await waitFor(
      () =>
        withClient(sourceUrl, (x) => x.query('SELECT 1')).then(
          () => true,
          () => undefined,
        ),
      { timeoutMs: 10_000, what: 'the new pg_hba.conf to admit the source role' },
    );
    const env = ctx.env({
      ...FAST,
      SLOTLINE_SOURCE_URL: sourceUrl,
      SLOTLINE_SINK_URL: asRole(ctx.sinkUrl, sinkRole, password),
    });
    const check = await runCommand(env, ['check']);
    expect(check.code, check.output).toBe(0);
    // Setup and the stream: the initial snapshot, then live changes.
    await using c = startConnector(env);
    await expectSinkEqualsSource(ctx).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${c.output().slice(-3000)}`);
    });
    await insertTrades(ctx.source, 'public', [makeTrade(3, pool), makeTrade(4, pool)]);
    await expectSinkEqualsSource(ctx);
    await expectSlotAtCheckpoint(ctx);
    expect((await c.stop()).code, c.output().slice(-3000)).toBe(0);

    // Physical replication (what pg_basebackup and pg_receivewal use) is refused...
    const physical = { connectionString: sourceUrl, replication: true } as pg.ClientConfig;
    await expect(withClient(physical, (x) => x.query('IDENTIFY_SYSTEM'))).rejects.toMatchObject({
      code: '28000',
      message: expect.stringMatching(/no pg_hba\.conf entry for replication connection/),
    });
    // ...and so is every other database, for SQL and logical replication alike.
    for (const db of [ctx.sinkDb, 'postgres']) {
      const other = new URL(sourceUrl);
      other.pathname = `/${db}`;
      for (const cfg of [
        { connectionString: other.toString() },
        { connectionString: other.toString(), replication: 'database' },
      ] as pg.ClientConfig[]) {
        await expect(
          withClient(cfg, (x) => x.query('SELECT 1')),
          db,
        ).rejects.toMatchObject({
          code: '28000',
        });
      }
    }
    // The CLI names the file to look at when pg_hba.conf refuses.
    const elsewhere = new URL(sourceUrl);
    elsewhere.pathname = `/${ctx.sinkDb}`;
    const refused = await runCommand({ ...env, SLOTLINE_SOURCE_URL: elsewhere.toString() }, [
      'check',
    ]);
    expect(refused.code, refused.output).toBe(1);
    expect(refused.output).toMatch(/source connect +FAIL .*no pg_hba\.conf entry/);
    expect(refused.output).toMatch(/Fix: the server's pg_hba\.conf has no line/);
  });

  it('REPLICATION grants what the notes say: every change of its database, and other databases’ slots', async () => {
    await using ctx = await createTestContext('replication_grants');
    const role = `slotline_rep_${randomBytes(4).toString('hex')}`;
    const password = randomBytes(18).toString('hex');
    try {
      await createPonderTables(ctx.source);
      await psql(ctx.sourceUrl, 'sql/roles/source_role.sql', {
        role,
        password,
        publication: ctx.publication,
      });
      await ctx.source.query('CREATE TABLE private_notes (note text)');
      const url = asRole(ctx.sourceUrl, role, password);
      const peek = `${ctx.slot}_peek`;
      await withClient(url, async (c) => {
        await expect(c.query('SELECT * FROM private_notes')).rejects.toThrow(/permission denied/);
        // Any output plugin, not only pgoutput; no SELECT grant is asked for.
        await c.query(`SELECT pg_create_logical_replication_slot($1, 'test_decoding')`, [peek]);
        await ctx.source.query(`INSERT INTO private_notes VALUES ('the owner''s secret')`);
        const changes = await c.query<{ data: string }>(
          'SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL)',
          [peek],
        );
        expect(changes.rows.map((r) => r.data).join('\n')).toContain(`the owner''s secret`);
        await c.query('SELECT pg_drop_replication_slot($1)', [peek]);
      });

      // A slot of another database, someone else's: the role drops it.
      const other = `${ctx.slot}_other`;
      await ctx.sink.query(`SELECT pg_create_logical_replication_slot($1, 'test_decoding')`, [
        other,
      ]);
      await withClient(url, (c) => c.query('SELECT pg_drop_replication_slot($1)', [other]));
      const left = await ctx.sink.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [
        other,
      ]);
      expect(left.rowCount).toBe(0);
    } finally {
      await ctx[Symbol.asyncDispose]();
      await withClient(ctx.adminUrl, (c) => c.query(`DROP ROLE IF EXISTS "${role}"`));
    }
  });
});
