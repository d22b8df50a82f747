/**
 * The COPY write path (src/sinks/timescale-copy.ts) keeps the apply rule: the
 * sink is driven directly with batches as the pipeline hands them over, so each
 * case says which path wrote and what the sink then holds.
 */
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseLsn } from '../../src/checkpoint/lsn.js';
import { LeadershipLostError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { Batch, type Change } from '../../src/sinks/batch.js';
import { copyIn } from '../../src/sinks/copy-in.js';
import { copyTuning, hotPathCounts } from '../../src/sinks/timescale-copy.js';
import { TimescaleSink } from '../../src/sinks/timescale.js';
import type { Trade } from '../../src/trades/map.js';
import { runCommand } from '../harness/connector.js';
import { createTestContext, type TestContext } from '../harness/context.js';
import { createPonderTables } from '../harness/ponder.js';
import { FAST } from '../harness/settings.js';
import { timescaleSkip } from '../harness/tools.js';

const BASE = 1_700_000_000;
const tx = { xid: 1, commitTime: 0n };

const trade = (i: number, over: Partial<Trade> = {}): Trade => ({
  tradeId: `t-${i}`,
  time: String(BASE + i * 5),
  chainId: '1',
  poolId: `pool-${i % 4}`,
  symbol: 'ETH/USDC',
  side: i % 2 === 0 ? 'buy' : 'sell',
  price: (2500n * 10n ** 18n + BigInt(i)).toString(),
  quantity: String(i + 1),
  transactionId: `0x${i}`,
  ...over,
});

/** One committed source transaction at `lsn` inserting `trades`, as a batch. */
function batchOf(lsn: string, changes: Change[]): Batch {
  const b = new Batch(0);
  b.changes.push(...changes);
  b.checkpoint = parseLsn(lsn);
  b.commitTime = 0n;
  b.commits = 1;
  return b;
}
const ins = (lsn: string, seq: number, t: Trade, op: 'insert' | 'update' = 'insert'): Change => ({
  kind: 'trade_upsert',
  op,
  lsn: parseLsn(lsn),
  seq,
  tx,
  trade: t,
});
const del = (lsn: string, seq: number, id: string): Change => ({
  kind: 'trade_delete',
  lsn: parseLsn(lsn),
  seq,
  tx,
  tradeId: id,
});
const upd = (lsn: string, seq: number, t: Trade): Change => ins(lsn, seq, t, 'update');

interface Row {
  trade_id: string;
  time: string;
  price: string;
  quantity: string;
  volume: string;
  symbol: string | null;
  source_lsn: string;
  source_seq: number;
}
async function sinkRows(db: pg.Pool): Promise<Row[]> {
  const r = await db.query<Row>(
    `SELECT trade_id, extract(epoch FROM time)::bigint::text AS time, price::text, quantity::text,
            volume::text, symbol, source_lsn::text, source_seq
       FROM analytics_trades ORDER BY trade_id COLLATE "C", time`,
  );
  return r.rows;
}
const expected = (t: Trade, lsn: string, seq: number): Row => ({
  trade_id: t.tradeId,
  time: t.time,
  price: t.price,
  quantity: t.quantity,
  volume: (BigInt(t.price) * BigInt(t.quantity)).toString(),
  symbol: t.symbol,
  source_lsn: lsn,
  source_seq: seq,
});

const skip = timescaleSkip('COPY path tests');
const DEFAULT_NEWER_TOMBSTONES = copyTuning.newerTombstonesMax;

describe.skipIf(skip !== null)('the COPY path keeps the apply rule', () => {
  let ctx: TestContext;
  let sink: TimescaleSink;
  beforeEach(async () => {
    ctx = await createTestContext('copy_path');
    await createPonderTables(ctx.source);
    const env = ctx.env({ ...FAST, SLOTLINE_COLUMNSTORE_AFTER_SECONDS: String(50 * 366 * 86_400) });
    const setup = await runCommand(env, ['setup']);
    expect(setup.code, setup.output).toBe(0);
    sink = new TimescaleSink({
      url: ctx.sinkUrl,
      schema: 'public',
      slot: ctx.slot,
      log: createLogger({ level: 'silent' }),
    });
    await sink.open();
    await sink.claimEpoch({ holder: 'copy-path-test', address: null });
    await sink.beginGeneration({ systemId: '1', timeline: 1 }, 'public');
    await sink.completeSnapshot(parseLsn('0/100'), { sweep: false });
  });
  afterEach(async () => {
    copyTuning.newerTombstonesMax = DEFAULT_NEWER_TOMBSTONES;
    await sink?.close();
    await ctx?.[Symbol.asyncDispose]();
  });

  const counts = () => ({ ...hotPathCounts });

  it('copies a run of new inserts exactly, hostile text and uint256 amounts included', async () => {
    const trades = Array.from({ length: 3000 }, (_, i) => trade(i));
    trades[7] = trade(7, { tradeId: 'a\\b\tc\nd\re\\N', symbol: null, poolId: '\\.' });
    trades[9] = trade(9, { tradeId: `q'"{x,y}"\\'' NULL`, symbol: '\\"' });
    trades[8] = trade(8, {
      price: (2n ** 256n - 1n).toString(),
      quantity: (2n ** 255n).toString(),
    });
    const before = counts();
    await sink.write(
      batchOf(
        '0/200',
        trades.map((t, k) => ins('0/200', k, t)),
      ),
    );
    expect(hotPathCounts.copied - before.copied).toBe(3000);
    expect(hotPathCounts.fallbacks).toBe(before.fallbacks);
    const want = trades.map((t, k) => expected(t, '0/200', k));
    expect(await sinkRows(ctx.sink)).toEqual(
      want.sort((a, b) => Buffer.compare(Buffer.from(a.trade_id), Buffer.from(b.trade_id))),
    );
    expect((await sink.checkpoint())?.lsn).toBe(parseLsn('0/200'));
  });

  it('a replayed batch (rows already present) falls back and leaves each row once, the newer version kept', async () => {
    const trades = Array.from({ length: 100 }, (_, i) => trade(i));
    await sink.write(
      batchOf(
        '0/200',
        trades.slice(0, 60).map((t, k) => ins('0/200', k, t)),
      ),
    );
    // A later transaction updates trade 5 (same time): the sink holds a newer version of it.
    const t5 = { ...trades[5]!, price: '42' };
    await sink.write(batchOf('0/300', [upd('0/300', 0, t5)]));
    const before = counts();
    // Replay from an older checkpoint: the first 60 again, with 40 the sink has not seen.
    await sink.write(
      batchOf(
        '0/200',
        trades.map((t, k) => ins('0/200', k, t)),
      ),
    );
    expect(hotPathCounts.fallbacks - before.fallbacks).toBe(1);
    const rows = await sinkRows(ctx.sink);
    expect(rows).toHaveLength(100);
    expect(rows.find((r) => r.trade_id === 't-5')).toEqual(expected(t5, '0/300', 0));
    expect(rows.find((r) => r.trade_id === 't-77')).toEqual(expected(trades[77]!, '0/200', 77));
    // The copy rolled back to its savepoint; the batch's checkpoint still moved with its rows.
    expect((await sink.checkpoint())?.lsn).toBe(parseLsn('0/300'));
  });

  // 1000: the newer tombstones are read beside the copy; 0: past the limit, the copied ids' own.
  it.each([1000, 0])(
    'an insert whose id has a newer tombstone stays deleted; an older tombstone lets it in (newer-tombstone limit %i)',
    async (limit) => {
      copyTuning.newerTombstonesMax = limit;
      const odd = trade(4, { tradeId: `t-"{q'},\\` });
      await sink.write(
        batchOf('0/200', [
          ins('0/200', 0, trade(1)),
          ins('0/200', 1, trade(2)),
          ins('0/200', 3, odd),
        ]),
      );
      await sink.write(
        batchOf('0/300', [
          del('0/300', 0, 't-1'),
          del('0/300', 1, 't-2'),
          del('0/300', 3, odd.tradeId),
        ]),
      );
      expect(await sinkRows(ctx.sink)).toEqual([]);
      // A replay of the older inserts (one with a new id beside them) and a newer re-insert of t-2.
      let before = counts();
      await sink.write(
        batchOf('0/200', [
          ins('0/200', 0, trade(1)),
          ins('0/200', 2, trade(3)),
          ins('0/200', 3, odd),
        ]),
      );
      // The copy saw the newer tombstones, rolled back, and copied the rest again.
      expect(hotPathCounts.fallbacks - before.fallbacks).toBe(1);
      expect(hotPathCounts.copied - before.copied).toBe(1);
      // t-2's tombstone (0/300) is older than this insert: tradeInsert would write it, so the copy does.
      before = counts();
      await sink.write(batchOf('0/400', [ins('0/400', 0, trade(2))]));
      expect(hotPathCounts.fallbacks - before.fallbacks).toBe(0);
      expect(hotPathCounts.copied - before.copied).toBe(1);
      expect(await sinkRows(ctx.sink)).toEqual([
        expected(trade(2), '0/400', 0),
        expected(trade(3), '0/200', 2),
      ]);
    },
  );

  it('a batch of inserts after a write opens and commits its transaction in the COPY message: one round trip', async () => {
    const messages = vi.spyOn(pg.Client.prototype, 'query');
    // The writer's own: not the OHLCV refresher's, which may poll meanwhile.
    const sent = () =>
      messages.mock.contexts.filter(
        (c) =>
          (c as { connectionParameters?: { application_name?: string } }).connectionParameters
            ?.application_name === 'slotline-sink',
      ).length;
    let first: number;
    let second: number;
    try {
      await sink.write(batchOf('0/200', [ins('0/200', 0, trade(0)), ins('0/200', 1, trade(1))]));
      first = sent();
      messages.mockClear();
      await sink.write(batchOf('0/300', [ins('0/300', 0, trade(2))]));
      second = sent();
    } finally {
      messages.mockRestore();
    }
    // The first write reads the generation alone; the next assumes it, and commits with its COPY.
    expect(first).toBeGreaterThan(2);
    expect(second).toBe(1);
    expect(await sinkRows(ctx.sink)).toEqual([
      expected(trade(0), '0/200', 0),
      expected(trade(1), '0/200', 1),
      expected(trade(2), '0/300', 0),
    ]);
    expect((await sink.checkpoint())?.lsn).toBe(parseLsn('0/300'));
  });

  // New rows copy; a replay's COPY fails on its own rows, and the lost epoch must still win.
  it.each(['new rows', 'a replay'])(
    "a deposed leader's write opened in its COPY message (%s) fails with leadership_lost and changes nothing",
    async (what) => {
      await sink.write(batchOf('0/200', [ins('0/200', 0, trade(0))]));
      await ctx.sink.query(
        `UPDATE slotline.leaders SET epoch = epoch + 1, holder = 'another replica' WHERE slot = $1`,
        [ctx.slot],
      );
      const next =
        what === 'new rows'
          ? batchOf('0/300', [ins('0/300', 0, trade(1))])
          : batchOf('0/300', [
              ins('0/300', 0, trade(0, { price: '7' })),
              ins('0/300', 1, trade(1)),
            ]);
      const before = counts();
      await expect(sink.write(next)).rejects.toThrow(LeadershipLostError);
      expect(hotPathCounts.copied - before.copied).toBe(0);
      expect(await sinkRows(ctx.sink)).toEqual([expected(trade(0), '0/200', 0)]);
      expect((await sink.checkpoint())?.lsn).toBe(parseLsn('0/200'));
    },
  );

  it('a row the COPY cannot spell, in a write that would commit with its COPY, goes to the upsert; the rest are copied once', async () => {
    await sink.write(batchOf('0/200', [ins('0/200', 0, trade(0))]));
    const negative = trade(2, { quantity: '-1' });
    const before = counts();
    await sink.write(
      batchOf('0/300', [
        ins('0/300', 0, trade(1)),
        ins('0/300', 1, negative),
        ins('0/300', 2, trade(3)),
      ]),
    );
    expect(hotPathCounts.copied - before.copied).toBe(2);
    expect(hotPathCounts.fallbacks - before.fallbacks).toBe(0);
    expect(await sinkRows(ctx.sink)).toEqual([
      expected(trade(0), '0/200', 0),
      expected(trade(1), '0/300', 0),
      expected(negative, '0/300', 1),
      expected(trade(3), '0/300', 2),
    ]);
    expect((await sink.checkpoint())?.lsn).toBe(parseLsn('0/300'));
  });

  it('a write whose end fails in its COPY message fails whole, changing nothing; run again, it lands', async () => {
    await sink.write(batchOf('0/200', [ins('0/200', 0, trade(0))]));
    await ctx.sink.query(`
      CREATE FUNCTION refuse_checkpoint_for_test() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'checkpoint refused by the test'; END $$;
      CREATE TRIGGER refuse BEFORE UPDATE ON slotline.checkpoints
        FOR EACH ROW EXECUTE FUNCTION refuse_checkpoint_for_test()`);
    const before = counts();
    await expect(
      sink.write(batchOf('0/300', [ins('0/300', 0, trade(1)), ins('0/300', 1, trade(2))])),
    ).rejects.toThrow('checkpoint refused by the test');
    expect(await sinkRows(ctx.sink)).toEqual([expected(trade(0), '0/200', 0)]);
    expect((await sink.checkpoint())?.lsn).toBe(parseLsn('0/200'));
    await ctx.sink.query('DROP TRIGGER refuse ON slotline.checkpoints');
    await sink.write(batchOf('0/300', [ins('0/300', 0, trade(1)), ins('0/300', 1, trade(2))]));
    expect(hotPathCounts.copied - before.copied).toBe(2);
    expect((await sink.checkpoint())?.lsn).toBe(parseLsn('0/300'));
  });

  it('a generation changed since the last write: the write is rolled back and runs again under the new one', async () => {
    await sink.write(batchOf('0/200', [ins('0/200', 0, trade(0))]));
    await ctx.sink.query(
      `UPDATE slotline.checkpoints SET generation = generation + 1 WHERE slot = $1`,
      [ctx.slot],
    );
    const before = counts();
    await sink.write(batchOf('0/300', [ins('0/300', 0, trade(1))]));
    // Counted once: the rolled-back attempt's copy is not.
    expect(hotPathCounts.copied - before.copied).toBe(1);
    const r = await ctx.sink.query<{ trade_id: string; g: number }>(
      `SELECT trade_id, source_generation AS g FROM analytics_trades ORDER BY trade_id`,
    );
    const g = r.rows[0]!.g;
    expect(r.rows).toEqual([
      { trade_id: 't-0', g },
      { trade_id: 't-1', g: g + 1 },
    ]);
  });

  it('an input that throws fails its COPY with that error and leaves the connection usable', async () => {
    const client = await ctx.sink.connect();
    try {
      await client.query('BEGIN');
      const copy = copyIn(
        client,
        `SAVEPOINT s; COPY analytics_trades_tombstones (trade_id, source_generation, source_lsn, source_seq) FROM STDIN`,
        (send) => {
          send(Buffer.from('t-9\t1\t0/1\t0\n'));
          throw new Error('spelling broke');
        },
      );
      await expect(copy).rejects.toThrow('spelling broke');
      await client.query('ROLLBACK TO SAVEPOINT s');
      const n = await client.query('SELECT count(*)::int AS n FROM analytics_trades_tombstones');
      expect(n.rows[0].n).toBe(0);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
  });

  // The input goes out right behind the query, before the server asks for it.
  it.each([
    ['sends its rows', false],
    ['throws', true],
  ])(
    'a message that fails before its COPY, whose input %s, reports the failure that stopped it and leaves the connection usable',
    async (_what, throws) => {
      const client = await ctx.sink.connect();
      try {
        const copy = copyIn(
          client,
          `SELECT 1/0; COPY analytics_trades_tombstones (trade_id, source_generation, source_lsn, source_seq) FROM STDIN`,
          (send) => {
            send(Buffer.from('t-9\t1\t0/1\t0\n'));
            if (throws) throw new Error('spelling broke');
          },
        );
        await expect(copy).rejects.toThrow('division by zero');
        const n = await client.query('SELECT count(*)::int AS n FROM analytics_trades_tombstones');
        expect(n.rows[0].n).toBe(0);
      } finally {
        client.release();
      }
    },
  );

  it('a mixed batch: inserts, an update, a delete and a re-insert apply as the upserts would', async () => {
    await sink.write(
      batchOf(
        '0/200',
        [0, 1, 2, 3].map((i) => ins('0/200', i, trade(i))),
      ),
    );
    const moved = trade(1, { time: String(BASE + 9999) });
    const changes: Change[] = [
      ins('0/300', 0, trade(10)),
      upd('0/300', 1, moved),
      del('0/300', 2, 't-2'),
      ins('0/300', 3, trade(11)),
      del('0/300', 4, 't-11'),
      ins('0/300', 5, trade(11, { price: '7' })),
      ins('0/300', 6, trade(3)), // a replay of a row the sink holds, in a batch that copies others
    ];
    await sink.write(batchOf('0/300', changes));
    expect(await sinkRows(ctx.sink)).toEqual([
      expected(trade(0), '0/200', 0),
      expected(moved, '0/300', 1),
      expected(trade(10), '0/300', 0),
      expected(trade(11, { price: '7' }), '0/300', 5),
      expected(trade(3), '0/300', 6),
    ]);
  });

  it('a replayed insert into a compressed chunk fails the copy and leaves one row', async () => {
    const trades = Array.from({ length: 200 }, (_, i) => trade(i));
    await sink.write(
      batchOf(
        '0/200',
        trades.map((t, k) => ins('0/200', k, t)),
      ),
    );
    const compressed = await ctx.sink.query(
      `SELECT compress_chunk(c) FROM show_chunks('analytics_trades') c`,
    );
    expect(compressed.rowCount).toBeGreaterThan(0);
    const before = counts();
    await sink.write(
      batchOf('0/200', [ins('0/200', 150, trades[150]!), ins('0/200', 500, trade(500))]),
    );
    expect(hotPathCounts.fallbacks - before.fallbacks).toBe(1);
    const rows = await sinkRows(ctx.sink);
    expect(rows).toHaveLength(201);
    expect(rows.filter((r) => r.trade_id === 't-150')).toEqual([
      expected(trades[150]!, '0/200', 150),
    ]);
  });
});
