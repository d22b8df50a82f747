/**
 * Bad input. A corpus of hostile source rows: each lands in dead letters with
 * the reason code docs/operations.md documents, or is stored exactly; the stream never
 * stops. The HTTP server under a fuzz of malformed requests: only 4xx (never
 * 5xx) where anything could change, and nothing changes. Passwords and the
 * admin token never appear in the logs, even at trace level through failures.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  expectSinkEqualsSource,
  expectSlotAtCheckpoint,
  positions,
  sinkTrades,
} from '../harness/compare.js';
import { startCluster } from '../harness/cluster.js';
import { runCommand, startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { call, freePort, waitReady } from '../harness/http.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
  UINT256_MAX,
} from '../harness/ponder.js';
import { FAST } from '../harness/settings.js';
import { createSplitContext } from '../harness/split-context.js';
import { expectVerifyClean } from '../harness/verify.js';
import { waitFor } from '../harness/wait.js';

const TOKEN = 'hostile-admin-token-0123456789abcdef';
const REASON_CODES = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');

/** A trade row of the unconstrained variant: every value as text (or NULL), cast by the server. */
type Row = Record<
  'id' | 'price' | 'quantity' | 'timestamp' | 'transaction_id' | 'side' | 'pool_id',
  string | null
>;

const SCHEMA = 'hostile';

describe('hostile rows', () => {
  it('each lands in dead letters with its documented reason, or is stored exactly; the stream goes on', async () => {
    await using ctx = await createTestContext('hostile');
    // The Ponder shape with its limits lifted, so that 79-digit amounts and year-3000
    // timestamps can exist at the source at all: numeric and bigint columns.
    const setupClient = new pg.Client({ connectionString: ctx.sourceUrl });
    await setupClient.connect();
    await setupClient.query(`ALTER DATABASE ${ctx.sourceDb} SET search_path TO ${SCHEMA}`);
    await setupClient.end();
    await createPonderTables(ctx.source, SCHEMA);
    await ctx.source.query(`
      ALTER TABLE ${SCHEMA}.order_book_trades
        ALTER COLUMN price TYPE numeric, ALTER COLUMN quantity TYPE numeric,
        ALTER COLUMN "timestamp" TYPE bigint`);
    const pool = makePool(0);
    await insertPools(ctx.source, SCHEMA, [pool]);
    const port = await freePort();
    await using c = startConnector(
      ctx.env({ ...FAST, SLOTLINE_SOURCE_SCHEMA: SCHEMA, SLOTLINE_HTTP_PORT: String(port) }),
    );
    await waitReady(port);
    await expectSlotAtCheckpoint(ctx);

    const good = makeTrade(1, pool);
    const base: Row = {
      id: good.id,
      price: good.price,
      quantity: good.quantity,
      timestamp: String(good.timestamp),
      transaction_id: good.transaction_id,
      side: good.side,
      pool_id: good.pool_id,
    };
    const big = '1' + '0'.repeat(78); // 79 digits
    const tenKb = (c: string) => c.repeat(10 * 1024);
    const randomTenKb = randomBytes(5 * 1024).toString('hex'); // incompressible: stored out of line (TOAST)
    // [id, overrides, expected dead-letter reason code, or null: stored exactly]
    const corpus: [string, Partial<Row>, string | null][] = [
      ['null-price', { price: null }, 'null_price'],
      ['null-quantity', { quantity: null }, 'null_quantity'],
      ['nan-price', { price: 'NaN' }, 'invalid_price'],
      ['nan-quantity', { quantity: 'NaN' }, 'invalid_quantity'],
      ['fraction-price', { price: '1.5' }, 'invalid_price'],
      ['negative-price', { price: '-1' }, 'negative_price'],
      ['negative-quantity', { quantity: '-123456789' }, 'negative_quantity'],
      ['79-digit-price', { price: big }, 'price_out_of_range'],
      ['79-digit-quantity', { quantity: big }, 'quantity_out_of_range'],
      ['null-timestamp', { timestamp: null }, 'missing_timestamp'],
      ['zero-timestamp', { timestamp: '0' }, 'timestamp_out_of_range'],
      ['negative-timestamp', { timestamp: '-1' }, 'timestamp_out_of_range'],
      ['year-3000', { timestamp: '32503680000' }, 'timestamp_out_of_range'],
      ['unknown-side', { side: 'hold' }, 'invalid_side'],
      ['empty-side', { side: '' }, 'invalid_side'],
      ['null-side', { side: null }, 'invalid_side'],
      ['10kb-side', { side: tenKb('b') }, 'invalid_side'],
      ['unknown-pool', { pool_id: '0xdeadbeef' }, 'unknown_pool'],
      ['empty-pool', { pool_id: '' }, 'missing_pool'],
      ['', {}, 'missing_key'], // an empty id
      // Stored exactly:
      [tenKb('i'), {}, null], // a 10 kB id
      ['10kb-transaction-id', { transaction_id: randomTenKb }, null],
      ['empty-transaction-id', { transaction_id: '' }, null],
      ['null-transaction-id', { transaction_id: null }, null],
      ['zero-amounts', { price: '0', quantity: '0' }, null],
      ['uint256-max', { price: UINT256_MAX, quantity: UINT256_MAX }, null],
      ['leading-zeros', { price: '000123', quantity: '-0' }, null],
      ['upper-case-side', { side: 'BUY' }, null],
      ['mixed-case-side', { side: 'Sell' }, null],
      ['first-second', { timestamp: '1' }, null],
      ['last-second-before-2100', { timestamp: '4102444799' }, null],
      [`quotes "'\\ ; DROP TABLE x; --\n✓ 🚀`, { transaction_id: '{"json": [1]}' }, null],
    ];
    const insert = (rows: Row[]) =>
      ctx.source.query(
        `INSERT INTO ${SCHEMA}.order_book_trades (id, chain_id, price, quantity, "timestamp", transaction_id, side, pool_id)
         SELECT r.id, 31337, r.price::numeric, r.quantity::numeric, r.ts::bigint, r.tx, r.side, r.pool
           FROM json_to_recordset($1::json) AS r(id text, price text, quantity text, ts text, tx text, side text, pool text)`,
        [
          JSON.stringify(
            rows.map((r) => ({
              id: r.id,
              price: r.price,
              quantity: r.quantity,
              ts: r.timestamp,
              tx: r.transaction_id,
              side: r.side,
              pool: r.pool_id,
            })),
          ),
        ],
      );
    // Half one by one, half in one transaction with good rows: a bad row never poisons its batch.
    const rows = corpus.map(([id, o]) => ({ ...base, id, ...o }) as Row);
    for (const r of rows.slice(0, rows.length / 2)) await insert([r]);
    await insert([
      ...rows.slice(rows.length / 2),
      ...Array.from({ length: 20 }, (_, i) => ({ ...base, id: `good-${i}` })),
    ]);
    // An update that leaves the TOASTed 10 kB transaction id out of the change.
    await ctx.source.query(
      `UPDATE ${SCHEMA}.order_book_trades SET price = price + 1 WHERE id = '10kb-transaction-id'`,
    );
    // The stream goes on: later trades arrive.
    await insertTrades(
      ctx.source,
      SCHEMA,
      Array.from({ length: 50 }, (_, i) => makeTrade(100 + i, pool)),
    );

    const expected = new Map<string, string>();
    for (const [id, , code] of corpus) if (code) expected.set(id === '' ? '(missing)' : id, code);
    expected.set('10kb-transaction-id', 'unchanged_toast');
    const letters = await waitFor(
      async () => {
        const r = await ctx.sink.query<{ row_key: string; reason_code: string; reason: string }>(
          `SELECT row_key, reason_code, reason FROM slotline.dead_letters WHERE slot = $1`,
          [ctx.slot],
        );
        return r.rows.length >= expected.size ? r.rows : undefined;
      },
      { timeoutMs: 30_000, what: `${expected.size} dead letters` },
    );
    const got = new Map(letters.map((l) => [l.row_key, l.reason_code]));
    expect(Object.fromEntries(got)).toEqual(Object.fromEntries(expected));
    for (const l of letters) {
      expect(l.reason.length, l.row_key).toBeGreaterThan(5);
      // Every code is in the documented reason-code table.
      expect(REASON_CODES, l.reason_code).toContain(`\`${l.reason_code}\``);
    }
    // The TOAST case keeps its version before the update, until the column is touched
    // (the documented advice): then the whole row streams and the sink catches up.
    const toasted = (await sinkTrades(ctx.sink)).find((t) => t.id === '10kb-transaction-id');
    expect(toasted?.transaction_id).toBe(randomTenKb);
    expect(toasted?.price).toBe(good.price);
    await ctx.source.query(
      `UPDATE ${SCHEMA}.order_book_trades SET transaction_id = transaction_id || '' WHERE id = '10kb-transaction-id'`,
    );
    await waitFor(
      async () =>
        (await sinkTrades(ctx.sink)).find((t) => t.id === '10kb-transaction-id')?.price !==
          good.price || undefined,
      { timeoutMs: 20_000, what: 'the touched row to stream' },
    );
    // Everything else is stored exactly.
    const dead = [...expected.keys()].filter((k) => k !== '10kb-transaction-id');
    await expectSinkEqualsSource(ctx, {
      where: `id <> ALL(ARRAY[${dead.map((k) => `'${k.replace(/'/g, "''")}'`).join(', ')}, '']::text[])`,
    });
    const r = await expectVerifyClean(ctx, { sourceSchema: SCHEMA });
    // The touched TOAST row streamed whole: its letter was settled by that later change.
    expect(r.rows.deadLettered).toBe(expected.size - 1);
    const toast = await ctx.sink.query<{ state: string }>(
      `SELECT state FROM slotline.dead_letters WHERE slot = $1 AND row_key = '10kb-transaction-id'`,
      [ctx.slot],
    );
    expect(toast.rows.map((x) => x.state)).toEqual(['resolved']);
    expect(c.proc.exitCode, c.output()).toBeNull();
    expect((await call(port, 'GET', '/readyz')).status).toBe(200);
    console.info(
      `hostile rows: ${corpus.length + 1} (${expected.size} dead-lettered with their reason, ` +
        `${corpus.length + 1 - expected.size} stored exactly), stream still running, verify clean`,
    );
    expect((await c.stop()).code, c.output()).toBe(0);
  });
});

/** A small deterministic PRNG (mulberry32), so that a failing fuzz case can be replayed. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)] as T;
  return { next, pick };
}

/** One raw HTTP exchange; the status code of the answer (0 if the server just closed). */
function raw(port: number, request: string | Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let answer = '';
    s.on('data', (d) => (answer += d.toString('latin1')));
    s.on('error', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0)));
    s.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0)));
    s.setTimeout(10_000, () => {
      s.destroy();
      reject(new Error(`no answer to ${JSON.stringify(request.slice(0, 60))}`));
    });
    s.end(request);
  });
}

describe('HTTP server under fuzz', () => {
  it('answers hundreds of malformed requests with 4xx, never 5xx, and nothing changes', async () => {
    await using ctx = await createTestContext('http_fuzz');
    await createPonderTables(ctx.source);
    const pool = makePool(0);
    await insertPools(ctx.source, 'public', [pool]);
    await insertTrades(
      ctx.source,
      'public',
      Array.from({ length: 100 }, (_, i) => makeTrade(i, pool)),
    );
    const port = await freePort();
    await using c = startConnector(
      ctx.env({ ...FAST, SLOTLINE_HTTP_PORT: String(port), SLOTLINE_ADMIN_TOKEN: TOKEN }),
    );
    await waitReady(port);
    await expectSinkEqualsSource(ctx);
    await expectSlotAtCheckpoint(ctx);
    const before = { sink: await sinkTrades(ctx.sink), at: await positions(ctx) };

    const seed = Number(process.env.SLOTLINE_FUZZ_SEED ?? 20240611);
    const r = prng(seed);
    const ADMIN = [
      '/admin/lsn-reset',
      '/admin/backfill',
      '/admin/pause',
      '/admin/resume',
      '/admin/dead-letters',
      '/admin/dead-letters/1',
      '/admin/dead-letters/retry',
      '/admin/dead-letters/discard',
      '/admin/dead-letters/purge',
      '/api/sync/run',
      '/api/sync/force',
    ];
    const junkPath = () =>
      r.pick([
        '/admin',
        '/admin/',
        '/admin/pause/',
        '/admin//pause',
        '/admin/%2e%2e/pause',
        '/admin/dead-letters/-1',
        '/admin/dead-letters/99999999999999999999',
        '/admin/dead-letters/1e3',
        '/%00',
        '/%ZZ',
        `/${'a'.repeat(8000)}`,
        '/status?x=' + '%'.repeat(50),
        '/api/sync/running?token=' + TOKEN.slice(0, 8),
      ]);
    const wrongAuth = () =>
      r.pick<string | undefined>([
        undefined,
        '',
        'Bearer',
        'Bearer ',
        `Bearer ${TOKEN}x`,
        `bearer ${TOKEN}`,
        `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}`,
        `Bearer ${TOKEN.slice(0, -1)}`,
        'Bearer ' + 'x'.repeat(5000),
        `Token ${TOKEN}`,
      ]);
    const badJson = () =>
      r.pick([
        '{',
        '{"lsn": ',
        '[1,2,3]',
        '"a string"',
        '42',
        'null',
        'true',
        '{"a":1}{"b":2}',
        "{'single': 'quotes'}",
        '{"lsn": "0/1",}',
        '\u0000\u0001\u0002',
        '{"__proto__": {"admin": true}}',
        '{"constructor": {"prototype": {"x": 1}}}',
        '['.repeat(5000) + ']'.repeat(5000),
        '{"a":' + '1'.repeat(10_000) + '}',
        '{"from": 1e400}',
        JSON.stringify({ x: 'y'.repeat(20 * 1024) }), // over the 16 KiB limit
      ]);
    // Authenticated bodies that are wrong by construction (never a valid action).
    const invalidAction = (path: string): unknown => {
      switch (path) {
        case '/admin/lsn-reset':
          return r.pick([
            { lsn: r.pick(['', 'x/y', '0/', '/0', '0/0/0', 'FFFFFFFFF/0', '-1/0', '0x1/0', ' ']) },
            { lsn: 12345 },
            { lsn: null },
            { lsn: ['0/1'] },
            { lsn: '0/1', force: r.pick(['true', 1, null, {}]) },
            { lsn: '0/0' }, // before the slot's confirmed flush: 409
          ]);
        case '/admin/backfill':
          return r.pick([
            {},
            { from: 'yesterday' },
            { from: -5 },
            { from: 100, to: 50 },
            { from: 0, chunkSize: 0 },
            { from: 0, chunkSize: 1e9 },
            { fromId: '' },
            { from: 0, extra: true },
            { fromId: 'b', toId: 'a' },
          ]);
        case '/api/sync/force':
          return r.pick([
            {},
            { fromTimestamp: '1' },
            { fromTimestamp: -1 },
            { fromTimestamp: 1.5 },
          ]);
        case '/api/sync/run':
          return r.pick([
            { bucketSeconds: 1 },
            { from: 'soon' },
            { repair: 'yes' },
            { unknown: 1 },
            { from: 10, to: 5 },
          ]);
        case '/admin/dead-letters/retry':
          return r.pick([{ ids: 'all' }, { state: 'nope' }, { unknown: true }, { ids: [-1] }]);
        case '/admin/dead-letters/discard':
          return r.pick([{}, { note: '' }, { note: 'why' }, { note: 'x'.repeat(3000), ids: [1] }]);
        case '/admin/dead-letters/purge':
          return r.pick([{ olderThanDays: -1 }, { olderThanDays: 'x' }, { other: 1 }]);
        default:
          return undefined;
      }
    };

    const seen = new Map<number, number>();
    const failures: string[] = [];
    const CASES = 300;
    for (let i = 0; i < CASES; i++) {
      const kind = r.pick(['no-auth', 'bad-json', 'content-type', 'junk-path', 'invalid-action']);
      let method = r.pick(['POST', 'POST', 'GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);
      let path = r.pick(ADMIN);
      let auth: string | undefined = `Bearer ${TOKEN}`;
      let body: string | undefined;
      let type: string | undefined = 'application/json';
      if (kind === 'no-auth') {
        auth = wrongAuth();
        body = r.next() < 0.5 ? JSON.stringify({ lsn: '0/1', force: true, from: 0 }) : undefined;
      } else if (kind === 'bad-json') {
        method = 'POST';
        // Not pause and resume: any JSON object is a valid body for them.
        path = r.pick(ADMIN.filter((p) => !/dead-letters\/1|pause|resume/.test(p)));
        body = badJson();
      } else if (kind === 'content-type') {
        method = 'POST';
        type = r.pick([
          'text/plain',
          'application/x-www-form-urlencoded',
          'multipart/form-data; boundary=x',
          'application/jsonp',
          'json',
          '',
        ]);
        body = r.pick(['lsn=0/1', '{"lsn": "0/1"}', 'from=0']);
      } else if (kind === 'junk-path') {
        path = junkPath();
        auth = r.next() < 0.5 ? auth : wrongAuth();
      } else {
        method = r.pick(['POST', 'POST', 'POST', 'DELETE', 'GET']);
        path = r.pick(ADMIN.filter((p) => invalidAction(p) !== undefined));
        if (method === 'POST') body = JSON.stringify(invalidAction(path));
        else if (method === 'GET' && path.startsWith('/admin/dead-letters')) {
          path = `/admin/dead-letters?${r.pick(['limit=-1', 'limit=x', 'state=nope', 'after=1e3', 'from=never'])}`;
        }
      }
      if (method === 'GET' || method === 'OPTIONS') body = undefined; // fetch sends none
      const headers: Record<string, string> = {};
      if (auth !== undefined) headers.authorization = auth;
      if (body !== undefined && type !== undefined && type !== '') headers['content-type'] = type;
      const res = await fetch(`http://127.0.0.1:${port}${path}`, { method, headers, body }).catch(
        (err: unknown) => ({ status: 0, text: async () => String(err) }),
      );
      const text = await res.text();
      seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
      const what = `#${i} ${kind} ${method} ${path.slice(0, 60)} auth=${String(auth).slice(0, 20)} body=${String(body).slice(0, 60)} → ${res.status} ${text.slice(0, 120)}`;
      // A public GET may answer 200; anything else must be refused with a 4xx and a JSON error.
      const isPublicGet = method === 'GET' && !/^\/(admin|api\/sync\/(run|force))/.test(path);
      if (res.status >= 500 || res.status === 0) failures.push(what);
      else if (!isPublicGet && (res.status < 400 || res.status >= 500)) failures.push(what);
    }
    // Below HTTP: garbage, a header block too large, a chunked body over the limit.
    const rawAnswers = [
      await raw(port, 'GARBAGE\r\n\r\n'),
      await raw(port, `GET / HTTP/1.1\r\nHost: x\r\nX: ${'y'.repeat(20_000)}\r\n\r\n`),
      await raw(
        port,
        `POST /admin/lsn-reset HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n` +
          'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n' +
          `4000\r\n${'a'.repeat(0x4000)}\r\n4000\r\n${'a'.repeat(0x4000)}\r\n0\r\n\r\n`,
      ),
      await raw(port, Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x01, 0x00, 0x00, 0xfb])), // a TLS hello
    ];
    for (const status of rawAnswers) if (status >= 500) failures.push(`raw → ${status}`);

    expect(failures, `seed ${seed}`).toEqual([]);
    expect(c.output()).not.toMatch(/HTTP handler failed/);
    // Nothing changed: still streaming, not paused, no backfill, the same rows, nothing moved back.
    const status = await call(port, 'GET', '/status');
    expect(status.body).toMatchObject({ phase: 'streaming', paused: false, backfill: null });
    expect(await sinkTrades(ctx.sink)).toEqual(before.sink);
    const after = await positions(ctx);
    expect(after.checkpoint! >= before.at.checkpoint!).toBe(true);
    expect(
      (await ctx.sink.query('SELECT 1 FROM slotline.dead_letters')).rowCount,
      'dead letters',
    ).toBe(0);
    await insertTrades(ctx.source, 'public', [makeTrade(1000, pool)]);
    await expectSinkEqualsSource(ctx);
    await expectVerifyClean(ctx, { minRows: 101 });
    console.info(
      `HTTP fuzz: ${CASES} requests + ${rawAnswers.length} raw (seed ${seed}); statuses ${JSON.stringify(Object.fromEntries([...seen].sort()))}; raw ${rawAnswers.join(', ')}; nothing changed`,
    );
    expect((await c.stop()).code, c.output()).toBe(0);
  });
});

describe('secrets in logs', () => {
  it('passwords, connection strings and the admin token never appear, at trace level through failures', async () => {
    await using cluster = await startCluster();
    const ctx = await createSplitContext('secrets', cluster, cluster);
    await using _ctx = ctx;
    await createPonderTables(ctx.source);
    const pool = makePool(0);
    await insertPools(ctx.source, 'public', [pool]);
    const password = decodeURIComponent(new URL(ctx.sourceUrl).password);
    const wrongPassword = 'wrong-sink-password-0123';
    const wrongSink = new URL(ctx.sinkUrl);
    wrongSink.password = wrongPassword;
    const nearMiss = `${TOKEN.slice(0, -1)}X`;
    const port = await freePort();
    const env = ctx.env({
      ...FAST,
      SLOTLINE_LOG_LEVEL: 'trace',
      SLOTLINE_HTTP_PORT: String(port),
      SLOTLINE_ADMIN_TOKEN: TOKEN,
    });
    const outputs: string[] = [];

    // A bad sink password: start-up stops, saying so.
    const bad = await runCommand(
      { ...env, SLOTLINE_SINK_URL: wrongSink.toString() },
      ['run'],
      30_000,
    );
    expect(bad.code, bad.output).toBe(1);
    expect(bad.output).toMatch(/authentication failed/);
    outputs.push(bad.output);

    // Streaming at trace: admin requests refused and accepted, a source (and sink) restart.
    const c = startConnector(env);
    try {
      await waitReady(port);
      await insertTrades(ctx.source, 'public', [makeTrade(1, pool), makeTrade(2, pool)]);
      await expectSinkEqualsSource(ctx);
      for (const token of [undefined, nearMiss, password, `${TOKEN} ${TOKEN}`]) {
        const a = await call(port, 'POST', '/admin/pause', token === undefined ? {} : { token });
        expect(a.status).toBe(401);
      }
      expect((await call(port, 'POST', '/admin/pause', { token: TOKEN })).status).toBe(200);
      expect((await call(port, 'POST', '/admin/resume', { token: TOKEN })).status).toBe(200);
      // Source and sink share this server: a crash restart takes both away at once. (A fast
      // shutdown would wait for the walsender, whose last ack needs the sink it is stopping.)
      await cluster.stop('immediate');
      await cluster.start();
      await sleep(500);
      await insertTrades(ctx.source, 'public', [makeTrade(3, pool), makeTrade(4, pool)]);
      await expectSinkEqualsSource(ctx, { timeoutMs: 30_000 });
      await waitReady(port);
      for (const args of [['verify'], ['status'], ['verify', '--repair']]) {
        const r = await runCommand(env, args, 30_000);
        expect(r.code, r.output).toBe(0);
        outputs.push(r.output);
      }
      expect((await c.stop()).code, c.output()).toBe(0);
    } finally {
      c.kill('SIGKILL');
    }
    expect(c.lines.length, 'every line kept').toBeLessThan(5_000);
    outputs.push(c.output());
    const all = outputs.join('\n');
    expect(all).toMatch(/"level":"(trace|debug)"/);
    expect(all).toMatch(/replication interrupted|reconnecting|write failed/);
    for (const secret of [password, wrongPassword, TOKEN, nearMiss, ctx.sourceUrl, ctx.sinkUrl]) {
      const at = all.indexOf(secret);
      expect(at, `a secret in the logs: …${all.slice(Math.max(0, at - 200), at + 50)}`).toBe(-1);
    }
    console.info(
      `secrets: ${all.split('\n').length} log lines at trace (bad sink password, 4 admin 401s, a server restart, verify, status); no password, URL or token in them`,
    );
  });
});
