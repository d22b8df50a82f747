/**
 * The columnstore as TimescaleDB users run it (issue 15, part 2): analytics_trades
 * compresses chunks past an age, and every change that reaches a compressed chunk
 * still applies exactly under the apply rule, touching only the batches that hold
 * the changed rows; the OHLCV continuous aggregates follow history a backfill or a
 * verify repair rewrote.
 */
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, runCommand, startWithHttp } from '../harness/connector.js';
import { createTestContext, type TestContext } from '../harness/context.js';
import { expectSinkEqualsSource, expectSlotAtCheckpoint, sinkTrades } from '../harness/compare.js';
import { call } from '../harness/http.js';
import { FAST } from '../harness/settings.js';
import { timescaleSkip } from '../harness/tools.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
  type PonderPool,
} from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';

const skip = timescaleSkip('columnstore tests');

const BASE = 1_700_000_000;
/** Far enough that the policy exists but never touches the tests' 2023 chunks: they compress them. */
const FIFTY_YEARS = String(50 * 366 * 86_400);

async function one<T extends pg.QueryResultRow>(db: pg.Pool, sql: string, params: unknown[] = []) {
  return (await db.query<T>(sql, params)).rows[0] as T;
}

/**
 * Compresses every chunk that ended before `before` (unix s), recompressing what DML had
 * decompressed into them; returns their names.
 */
async function compressChunksBefore(db: pg.Pool, before: number): Promise<string[]> {
  const { rows } = await db.query<{ c: string }>(
    `SELECT compress_chunk(c, recompress => true)::text AS c
       FROM show_chunks('analytics_trades', older_than => to_timestamp($1)) c`,
    [before],
  );
  return rows.map((r) => r.c);
}

/** Whether TimescaleDB holds `chunk` compressed. */
async function isCompressed(db: pg.Pool, chunk: string): Promise<boolean> {
  const r = await one<{ z: boolean }>(
    db,
    `SELECT is_compressed AS z FROM timescaledb_information.chunks
      WHERE format('%I.%I', chunk_schema, chunk_name)::regclass = $1::regclass`,
    [chunk],
  );
  return r.z;
}

/**
 * The pools of the rows in `chunk`'s rowstore heap: what DML decompressed into it (or was
 * inserted there since it was compressed). Empty: every row is still compressed.
 */
async function decompressedPools(db: pg.Pool, chunk: string): Promise<string[]> {
  const { rows } = await db.query<{ p: string }>(
    `SELECT DISTINCT pool_id AS p FROM ONLY ${chunk} ORDER BY 1`,
  );
  return rows.map((r) => r.p);
}

/** The chunk holding trade `id` in the sink. */
async function chunkOf(db: pg.Pool, id: string): Promise<string> {
  const r = await one<{ c: string }>(
    db,
    `SELECT tableoid::regclass::text AS c FROM analytics_trades WHERE trade_id = $1`,
    [id],
  );
  return r.c;
}

describe.skipIf(skip !== null)('columnstore policy', () => {
  const job = (db: pg.Pool) =>
    db.query<{ job_id: number; after: string }>(
      `SELECT job_id, config ->> 'compress_after' AS after FROM timescaledb_information.jobs
        WHERE proc_name = 'policy_compression' AND hypertable_name = 'analytics_trades'`,
    );

  it('setup adds the policy with the configured age, segmented by pool and ordered by time; a new age alters it, 0 removes it', async () => {
    await using ctx = await createTestContext('cs_policy');
    await createPonderTables(ctx.source);
    const setup = async (after: string) => {
      const r = await runCommand(ctx.env({ ...FAST, SLOTLINE_COLUMNSTORE_AFTER_SECONDS: after }), [
        'setup',
      ]);
      expect(r.code, r.output).toBe(0);
    };

    await setup(''); // unset: the default
    expect((await job(ctx.sink)).rows).toEqual([{ job_id: expect.any(Number), after: '7 days' }]);
    const settings = await one<{ segmentby: string; orderby: string; index: unknown }>(
      ctx.sink,
      `SELECT segmentby, orderby, index FROM timescaledb_information.hypertable_compression_settings
        WHERE hypertable = 'analytics_trades'::regclass`,
    );
    expect(settings.segmentby).toBe('pool_id');
    expect(settings.orderby).toBe('"time" DESC');
    expect(settings.index).toContainEqual(
      expect.objectContaining({ type: 'bloom', column: 'trade_id' }),
    );
    const first = (await job(ctx.sink)).rows[0]!.job_id;

    await setup(String(3 * 86_400));
    expect((await job(ctx.sink)).rows).toEqual([{ job_id: first, after: '3 days' }]);

    // Setup again with compressed chunks present: idempotent.
    await ctx.sink.query(
      `INSERT INTO analytics_trades (trade_id, time, chain_id, pool_id, side, price, quantity, volume, source_lsn)
       SELECT 'x' || g, to_timestamp(${BASE} + g * 60), 1, 'p' || (g % 3), 'buy', 1, 1, 1, '0/1'
         FROM generate_series(1, 100) g`,
    );
    expect(await compressChunksBefore(ctx.sink, BASE + 86_400 * 3)).not.toEqual([]);
    await setup(String(3 * 86_400));
    expect((await job(ctx.sink)).rows).toEqual([{ job_id: first, after: '3 days' }]);

    await setup('0');
    expect((await job(ctx.sink)).rows).toEqual([]);
  });
});

/** Deletes trade `id` as a session under the database's limit would, then rolls back. */
async function underLimit(db: pg.Pool, id: string): Promise<void> {
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    await client.query(`SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = 1`);
    await client.query(`DELETE FROM analytics_trades WHERE trade_id = $1`, [id]);
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
    client.release();
  }
}

describe.skipIf(skip !== null)('changes that reach compressed chunks', () => {
  const POOLS = Array.from({ length: 8 }, (_, i) => makePool(i));
  /** Trade i of pool i % 8, every 5 s from BASE: two 1-day chunks of 2023. */
  const old = (i: number) => makeTrade(i, POOLS[i % 8]!, { timestamp: BASE + i * 5 });
  const pool = (i: number) => (POOLS[i % 8] as PonderPool).order_book as string;

  it('a delete, an update, a move and a re-insert via the stream apply exactly, decompressing only their batches', async () => {
    await using ctx = await createTestContext('cs_stream');
    await createPonderTables(ctx.source);
    await insertPools(ctx.source, 'public', POOLS);
    await insertTrades(
      ctx.source,
      'public',
      Array.from({ length: 4000 }, (_, i) => old(i)),
    );
    const now = Math.floor(Date.now() / 1000);
    const recent = Array.from({ length: 20 }, (_, i) =>
      makeTrade(10_000 + i, POOLS[i % 8]!, { timestamp: now - 600 + i }),
    );
    await insertTrades(ctx.source, 'public', recent);
    // A statement that decompresses more than one row now fails for anyone but the sink,
    // which lifts the limit for its own transactions.
    await ctx.sink.query(
      `ALTER DATABASE ${ctx.sinkDb} SET timescaledb.max_tuples_decompressed_per_dml_transaction = 1`,
    );
    const { c } = await startWithHttp(ctx, { SLOTLINE_COLUMNSTORE_AFTER_SECONDS: FIFTY_YEARS });
    await using _c = c;
    await expectSinkEqualsSource(ctx);

    const chunks = await compressChunksBefore(ctx.sink, now - 86_400);
    expect(chunks.length).toBeGreaterThanOrEqual(2);
    const [deleted, updated, reinserted, moved] = [old(100), old(1201), old(2502), old(3803)];
    for (const t of [deleted, updated, reinserted, moved]) {
      const chunk = await chunkOf(ctx.sink, t.id);
      expect(chunks).toContain(chunk);
      expect(await isCompressed(ctx.sink, chunk), chunk).toBe(true);
    }
    for (const chunk of chunks) expect(await decompressedPools(ctx.sink, chunk)).toEqual([]);
    // The limit is real: a delete of one row by id decompresses its batch and is refused.
    await expect(underLimit(ctx.sink, deleted.id)).rejects.toThrow(/decompression limit/);

    // A reorg of recent trades: the rowstore only; no compressed batch is touched.
    await ctx.source.query(`DELETE FROM order_book_trades WHERE id = ANY($1)`, [
      recent.slice(0, 5).map((t) => t.id),
    ]);
    await expectSinkEqualsSource(ctx);
    for (const chunk of chunks) expect(await decompressedPools(ctx.sink, chunk)).toEqual([]);

    // Deep changes, in separate transactions as Ponder makes them.
    await ctx.source.query(`DELETE FROM order_book_trades WHERE id = ANY($1)`, [
      [deleted.id, reinserted.id],
    ]);
    await ctx.source.query(
      `UPDATE order_book_trades SET price = price + 7, quantity = quantity * 2 WHERE id = $1`,
      [updated.id],
    );
    // Its time moves to now: out of the compressed chunk into the rowstore.
    await ctx.source.query(`UPDATE order_book_trades SET "timestamp" = $2 WHERE id = $1`, [
      moved.id,
      now,
    ]);
    await insertTrades(ctx.source, 'public', [{ ...reinserted, price: '123456789' }]);
    await expectSinkEqualsSource(ctx);
    await expectSlotAtCheckpoint(ctx);

    // Only the batches of the four changed trades' pools left the columnstore.
    const touched = [100, 1201, 2502, 3803].map(pool);
    const left = new Set<string>();
    for (const chunk of chunks) {
      expect(await isCompressed(ctx.sink, chunk)).toBe(true);
      for (const p of await decompressedPools(ctx.sink, chunk)) left.add(p);
    }
    expect([...left].sort()).toEqual([...new Set(touched)].sort());
    expect(c.output()).not.toMatch(/decompression limit/);
  });

  it('an LSN reset replays deep changes over compressed chunks and leaves the sink as it was', async () => {
    await using ctx = await createTestContext('cs_replay');
    await createPonderTables(ctx.source);
    await insertPools(ctx.source, 'public', POOLS);
    await insertTrades(
      ctx.source,
      'public',
      Array.from({ length: 2000 }, (_, i) => old(i)),
    );
    // Acks held back: the slot's confirmed flush stays behind the sink's checkpoint, a real
    // window to replay (as in admin.test.ts).
    const { c, port } = await startWithHttp(ctx, {
      SLOTLINE_COLUMNSTORE_AFTER_SECONDS: FIFTY_YEARS,
      SLOTLINE_ACK_INTERVAL_MS: '3600000',
      SLOTLINE_STATUS_INTERVAL_MS: '3600000',
    });
    await using _c = c;
    await expectSinkEqualsSource(ctx);
    const chunks = await compressChunksBefore(ctx.sink, BASE + 4 * 86_400);
    const slot = await one<{ lsn: string }>(
      ctx.source,
      'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
      [ctx.slot],
    );

    // A reorg of old trades: deleted, re-inserted with new values, updated, moved in time.
    const [gone, back, changed, moved] = [old(11), old(512), old(1013), old(1514)];
    await ctx.source.query(`DELETE FROM order_book_trades WHERE id = ANY($1)`, [
      [gone.id, back.id],
    ]);
    await insertTrades(ctx.source, 'public', [{ ...back, price: '42', quantity: '3' }]);
    await ctx.source.query(
      `UPDATE order_book_trades SET side = 'sell', price = price * 2 WHERE id = $1`,
      [changed.id],
    );
    await ctx.source.query(`UPDATE order_book_trades SET "timestamp" = $2 WHERE id = $1`, [
      moved.id,
      BASE + 3 * 86_400,
    ]);
    await expectSinkEqualsSource(ctx);
    const content = await sinkTrades(ctx.sink);
    // Back to the columnstore, so the replay reaches compressed batches again.
    await compressChunksBefore(ctx.sink, BASE + 4 * 86_400);
    for (const chunk of chunks) expect(await decompressedPools(ctx.sink, chunk)).toEqual([]);

    const written = async () =>
      Number(
        /slotline_sink_rows_written_total\{sink="timescale"\} (\d+)/.exec(
          (await call(port, 'GET', '/metrics')).text,
        )?.[1],
      );
    const before = await written();
    const reset = await call(port, 'POST', '/admin/lsn-reset', {
      token: ADMIN_TOKEN,
      json: { lsn: slot.lsn },
    });
    expect(reset.status, reset.text).toBe(200);
    expect(reset.body.mode).toBe('replay');
    // The five changes (two deletes, an insert, two updates) are applied again.
    await waitFor(async () => (await written()) >= before + 5 || undefined, {
      timeoutMs: 30_000,
      what: 'the replayed changes to be written again',
    });
    await expectSinkEqualsSource(ctx);
    expect(await sinkTrades(ctx.sink)).toEqual(content);
    const left = new Set<string>();
    for (const chunk of chunks)
      for (const p of await decompressedPools(ctx.sink, chunk)) left.add(p);
    expect([...left].every((p) => [11, 512, 1013, 1514].map(pool).includes(p))).toBe(true);
    expect(c.output()).not.toMatch(/decompression limit/);
  });
});

/** Every bucket of `view` beside the same OHLCV recomputed from analytics_trades' rows. */
async function ohlcvDiff(db: pg.Pool, view: 'ohlcv_1m' | 'ohlcv_1h'): Promise<unknown[]> {
  const width = view === 'ohlcv_1m' ? '1 minute' : '1 hour';
  const cols = `open::text, high::text, low::text, close::text, volume::text, quote_volume::text, trades::int`;
  const { rows } = await db.query(
    `WITH raw AS (
       SELECT pool_id, time_bucket(INTERVAL '${width}', time) AS bucket, first(price, time) AS open,
              max(price) AS high, min(price) AS low, last(price, time) AS close,
              sum(quantity) AS volume, sum(volume) AS quote_volume, count(*) AS trades
         FROM analytics_trades GROUP BY 1, 2),
     agg AS (SELECT pool_id, bucket, ${cols} FROM ${view}),
     want AS (SELECT pool_id, bucket, ${cols} FROM raw)
     (SELECT 'view' AS side, * FROM (TABLE agg EXCEPT TABLE want) a)
     UNION ALL
     (SELECT 'raw' AS side, * FROM (TABLE want EXCEPT TABLE agg) b)
     ORDER BY 3, 2 LIMIT 10`,
  );
  return rows;
}

async function expectOhlcvFromRows(ctx: TestContext, what: string): Promise<void> {
  for (const view of ['ohlcv_1m', 'ohlcv_1h'] as const) {
    let last: unknown[] = [];
    await waitFor(
      async () => {
        last = await ohlcvDiff(ctx.sink, view);
        return last.length === 0;
      },
      { timeoutMs: 60_000, intervalMs: 250, what: `${view} to equal its recomputation ${what}` },
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}: ${JSON.stringify(last)}`);
    });
  }
}

/** Materialises both views over all history as they are now (the stale state to be fixed). */
async function materialise(db: pg.Pool): Promise<void> {
  for (const view of ['ohlcv_1m', 'ohlcv_1h'])
    await db.query(`CALL refresh_continuous_aggregate('${view}', NULL, NULL)`);
}

/** Changes sink rows behind the connector's back, in compressed chunks. */
async function drift(db: pg.Pool, sql: string, params: unknown[]): Promise<void> {
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    await client.query(`SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = 0`);
    await client.query(sql, params);
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}

describe.skipIf(skip !== null)('OHLCV aggregates over rewritten history', () => {
  it('equal a recomputation from raw rows after a backfill and after a verify repair of compressed chunks', async () => {
    await using ctx = await createTestContext('cs_ohlcv');
    await createPonderTables(ctx.source);
    const pools = [makePool(0), makePool(1), makePool(2)];
    await insertPools(ctx.source, 'public', pools);
    // One trade every 57 s (no two at the same second: first/last need an order), two days.
    const trades = Array.from({ length: 3000 }, (_, i) =>
      makeTrade(i, pools[i % 3]!, { timestamp: BASE + i * 57 }),
    );
    await insertTrades(ctx.source, 'public', trades);
    const { c, port, env } = await startWithHttp(ctx, {
      SLOTLINE_COLUMNSTORE_AFTER_SECONDS: FIFTY_YEARS,
    });
    await using _c = c;
    await expectSinkEqualsSource(ctx);
    await expectOhlcvFromRows(ctx, 'after the snapshot');
    const chunks = await compressChunksBefore(ctx.sink, BASE + 4 * 86_400);
    expect(chunks.length).toBeGreaterThanOrEqual(2);

    // Drift in compressed chunks, materialised into both views: only a refresh fixes them.
    const victims = [trades[10]!, trades[1500]!, trades[2900]!].map((t) => t.id);
    await drift(
      ctx.sink,
      `UPDATE analytics_trades SET price = price * 3, volume = volume * 3 WHERE trade_id = ANY($1)`,
      [victims],
    );
    await drift(ctx.sink, `DELETE FROM analytics_trades WHERE trade_id = $1`, [trades[700]!.id]);
    await materialise(ctx.sink);
    expect(await ohlcvDiff(ctx.sink, 'ohlcv_1m')).toEqual([]); // views agree with the drifted rows
    const from = BASE;
    const to = BASE + 3000 * 57;
    const started = await call(port, 'POST', '/admin/backfill', {
      token: ADMIN_TOKEN,
      json: { from, to, chunkSize: 500 },
    });
    expect(started.status, started.text).toBe(202);
    await waitFor(
      async () => {
        const b = (await call(port, 'GET', '/status')).body.backfill as { state: string } | null;
        return b?.state === 'done' || undefined;
      },
      { timeoutMs: 120_000, what: 'the backfill to finish' },
    );
    await expectSinkEqualsSource(ctx);
    await expectOhlcvFromRows(ctx, 'after the backfill');

    // A verify repair: a row the source never had (deleted by the repair itself) and a price drift.
    await drift(
      ctx.sink,
      `INSERT INTO analytics_trades (trade_id, time, chain_id, pool_id, symbol, side, price, quantity, volume, source_lsn)
       SELECT 'ghost', time + interval '1 second', chain_id, pool_id, symbol, side, price * 1000, quantity, volume * 1000, '0/1'
         FROM analytics_trades WHERE trade_id = $1`,
      [trades[20]!.id],
    );
    await drift(ctx.sink, `UPDATE analytics_trades SET price = price + 5 WHERE trade_id = $1`, [
      trades[2000]!.id,
    ]);
    await materialise(ctx.sink);
    const repair = await runCommand(env, [
      'verify',
      '--repair',
      '--from',
      String(from),
      '--to',
      String(to + 1),
    ]);
    expect(repair.code, repair.output).toBe(0);
    await expectSinkEqualsSource(ctx);
    await expectOhlcvFromRows(ctx, 'after the verify repair');
    expect(c.output()).not.toMatch(/decompression limit/);
  });
});
