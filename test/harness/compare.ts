/**
 * What a user checks: every source trade is in the sink exactly once, with
 * identical values; the slot's confirmed flush equals the sink checkpoint.
 */
import type pg from 'pg';
import { expect } from 'vitest';
import type { TestContext } from './context.js';
import { waitFor } from './wait.js';

export interface TradeRow {
  id: string;
  price: string;
  quantity: string;
  ts: string;
  side: string;
  pool_id: string;
  transaction_id: string | null;
}

export async function sourceTrades(db: pg.Pool, where = 'true'): Promise<TradeRow[]> {
  const r = await db.query<TradeRow>(
    `SELECT id, price::text, quantity::text, timestamp::text AS ts, side, pool_id, transaction_id
       FROM order_book_trades WHERE ${where} ORDER BY id COLLATE "C"`,
  );
  return r.rows;
}

export async function sinkTrades(db: pg.Pool): Promise<TradeRow[]> {
  const r = await db.query<TradeRow>(
    `SELECT trade_id AS id, price::text, quantity::text, extract(epoch FROM time)::bigint::text AS ts, side, pool_id,
            transaction_id
       FROM analytics_trades ORDER BY trade_id COLLATE "C"`,
  );
  return r.rows;
}

export async function sinkCount(db: pg.Pool): Promise<number> {
  const r = await db.query<{ n: string }>('SELECT count(*)::text AS n FROM analytics_trades');
  return Number(r.rows[0]?.n ?? 0);
}

/** No trade id twice in the sink (the key is (trade_id, time)). */
export async function sinkDuplicates(db: pg.Pool): Promise<number> {
  const r = await db.query<{ n: string }>(
    'SELECT count(*)::text AS n FROM (SELECT trade_id FROM analytics_trades GROUP BY trade_id HAVING count(*) > 1) d',
  );
  return Number(r.rows[0]?.n ?? 0);
}

/** Waits until the sink holds exactly the source's trades, then asserts equality row by row. */
export async function expectSinkEqualsSource(
  ctx: TestContext,
  opts: { timeoutMs?: number; where?: string } = {},
) {
  const want = await sourceTrades(ctx.source, opts.where);
  await waitFor(async () => (await sinkCount(ctx.sink)) === want.length || undefined, {
    timeoutMs: opts.timeoutMs ?? 60_000,
    what: `${want.length} trades in the sink`,
  }).catch(async (err: unknown) => {
    throw new Error(`${(err as Error).message}; sink has ${await sinkCount(ctx.sink)}`);
  });
  const got = await sinkTrades(ctx.sink);
  expect(got.length).toBe(want.length);
  expect(got).toEqual(want);
  expect(await sinkDuplicates(ctx.sink)).toBe(0);
}

export interface Positions {
  confirmedFlush: string | null;
  checkpoint: string | null;
}

export async function positions(ctx: TestContext): Promise<Positions> {
  const s = await ctx.source.query<{ lsn: string | null }>(
    'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
    [ctx.slot],
  );
  const c = await ctx.sink.query<{ lsn: string | null }>(
    `SELECT lsn::text FROM slotline.checkpoints WHERE slot = $1 AND sink = 'timescale'`,
    [ctx.slot],
  );
  return { confirmedFlush: s.rows[0]?.lsn ?? null, checkpoint: c.rows[0]?.lsn ?? null };
}

/** Once drained, the slot's confirmed flush LSN equals the sink's checkpoint. */
export async function expectSlotAtCheckpoint(
  ctx: TestContext,
  timeoutMs = 30_000,
): Promise<Positions> {
  let last: Positions = { confirmedFlush: null, checkpoint: null };
  await waitFor(
    async () => {
      last = await positions(ctx);
      return last.checkpoint !== null && last.confirmedFlush === last.checkpoint;
    },
    { timeoutMs, what: 'slot confirmed_flush_lsn = sink checkpoint' },
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}: ${JSON.stringify(last)}`);
  });
  return last;
}
