import { describe, expect, it } from 'vitest';
import { runCommand, startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { expectSinkEqualsSource, expectSlotAtCheckpoint, sinkCount } from '../harness/compare.js';
import { FAST } from '../harness/settings.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
} from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';

describe('initial snapshot', () => {
  it('copies history in the slot snapshot; rows written during the copy are neither lost nor doubled', async () => {
    await using ctx = await createTestContext('snapshot');
    await createPonderTables(ctx.source);
    const pools = Array.from({ length: 3 }, (_, i) => makePool(i));
    await insertPools(ctx.source, 'public', pools);
    // History large enough that the copy takes a while.
    await ctx.source.query(
      `INSERT INTO order_book_trades (id, chain_id, price, quantity, timestamp, transaction_id, side, pool_id)
       SELECT 'hist-' || g, 31337, 2500000000000000000000 + g, 10000000000000000 * (1 + g % 50),
              1690000000 + g, '0x' || md5(g::text), CASE WHEN g % 2 = 0 THEN 'buy' ELSE 'sell' END,
              (ARRAY[$1, $2, $3])[1 + g % 3]
         FROM generate_series(1, 150000) g`,
      pools.map((p) => p.order_book),
    );
    // `setup` first, as an operator would: it creates the slot, which `run` replaces by one with a snapshot.
    const setup = await runCommand(ctx.env(FAST), ['setup']);
    expect(setup.code, setup.output).toBe(0);

    let writing = true;
    let k = 0;
    const writer = (async () => {
      while (writing) {
        const rows = Array.from({ length: 20 }, () => makeTrade(k++, pools[k % 3]!));
        await insertTrades(ctx.source, 'public', rows);
        // Updates and deletes of historical rows while they are being copied.
        await ctx.source.query(
          `UPDATE order_book_trades SET price = price + 1 WHERE id = 'hist-' || $1`,
          [k * 7],
        );
        await ctx.source.query(`DELETE FROM order_book_trades WHERE id = 'hist-' || $1`, [
          k * 11 + 3,
        ]);
      }
    })();
    await using c = startConnector(
      ctx.env({ ...FAST, SLOTLINE_BATCH_MAX_ROWS: '2000', SLOTLINE_INFLIGHT_MAX_ROWS: '10000' }),
    );
    try {
      await waitFor(async () => (await sinkCount(ctx.sink)) > 150_000 || undefined, {
        timeoutMs: 90_000,
        what: 'the snapshot in the sink',
      });
    } finally {
      writing = false;
      await writer;
    }
    expect(k).toBeGreaterThan(0);
    await expectSinkEqualsSource(ctx, { timeoutMs: 60_000 });
    await expectSlotAtCheckpoint(ctx);
    const snap = await ctx.sink.query<{ state: string; snapshot_lsn: string | null }>(
      `SELECT state, snapshot_lsn::text FROM slotline.checkpoints WHERE slot = $1`,
      [ctx.slot],
    );
    expect(snap.rows[0]?.state).toBe('streaming');
    expect(snap.rows[0]?.snapshot_lsn).not.toBeNull();
    expect((await c.stop()).code, c.output()).toBe(0);
  });

  it('restarts an interrupted snapshot safely, removing rows deleted at the source meanwhile', async () => {
    await using ctx = await createTestContext('snap_interrupt');
    await createPonderTables(ctx.source);
    const pools = [makePool(0)];
    await insertPools(ctx.source, 'public', pools);
    await ctx.source.query(
      `INSERT INTO order_book_trades (id, chain_id, price, quantity, timestamp, transaction_id, side, pool_id)
       SELECT 'h-' || g, 31337, 1000 + g, 5, 1690000000 + g, 'tx', 'buy', $1 FROM generate_series(1, 200000) g`,
      [pools[0]!.order_book],
    );
    const env = ctx.env({
      ...FAST,
      SLOTLINE_BATCH_MAX_ROWS: '1000',
      SLOTLINE_INFLIGHT_MAX_ROWS: '5000',
    });
    const first = startConnector(env);
    await waitFor(async () => (await sinkCount(ctx.sink)) > 20_000 || undefined, {
      timeoutMs: 60_000,
      what: 'part of the copy',
    });
    first.kill('SIGKILL');
    await first.exited;
    const state = await ctx.sink.query<{ state: string }>(
      `SELECT state FROM slotline.checkpoints WHERE slot = $1`,
      [ctx.slot],
    );
    expect(state.rows[0]?.state).toBe('snapshotting');
    // Rows the interrupted copy wrote are deleted at the source before the restart.
    await ctx.source.query(`DELETE FROM order_book_trades WHERE id IN ('h-1', 'h-2', 'h-3')`);
    await using second = startConnector(env);
    await expectSinkEqualsSource(ctx, { timeoutMs: 90_000 });
    await expectSlotAtCheckpoint(ctx);
    expect((await second.stop()).code, second.output()).toBe(0);
  });

  it('SLOTLINE_SNAPSHOT=never keeps the sink, the slot setup made and the pools', async () => {
    await using ctx = await createTestContext('snapshot_never');
    await createPonderTables(ctx.source);
    const pools = Array.from({ length: 2 }, (_, i) => makePool(i));
    await insertPools(ctx.source, 'public', pools);
    const history = Array.from({ length: 5 }, (_, i) => makeTrade(i, pools[0]!));
    await insertTrades(ctx.source, 'public', history);
    const env = ctx.env({ ...FAST, SLOTLINE_SNAPSHOT: 'never' });
    const setup = await runCommand(env, ['setup']);
    expect(setup.code, setup.output).toBe(0);
    // What the old polling service left in the sink: slotline must not remove it.
    await ctx.sink.query(
      `INSERT INTO analytics_trades (trade_id, time, chain_id, pool_id, symbol, side, price, quantity, volume, source_lsn)
       VALUES ('migrated-1', to_timestamp(1600000000), 1, 'p', 'MWETH/MUSDC', 'buy', 1, 2, 2, '0/0')`,
    );
    // Written between setup and the first run: the slot setup made holds them.
    const early = Array.from({ length: 5 }, (_, i) => makeTrade(100 + i, pools[1]!));
    await insertTrades(ctx.source, 'public', early);
    await using c = startConnector(env);
    const late = Array.from({ length: 5 }, (_, i) => makeTrade(200 + i, pools[0]!));
    await insertTrades(ctx.source, 'public', late);
    const ids = (rows: { id: string }[]) => rows.map((t) => t.id);
    await waitFor(async () => (await sinkCount(ctx.sink)) === 11 || undefined, {
      timeoutMs: 30_000,
      what: 'the migrated row and the ten trades written after setup',
    });
    const { rows } = await ctx.sink.query<{ trade_id: string; symbol: string | null }>(
      'SELECT trade_id, symbol FROM analytics_trades ORDER BY trade_id',
    );
    expect(rows.map((r) => r.trade_id).sort()).toEqual(
      ['migrated-1', ...ids(early), ...ids(late)].sort(),
    );
    expect(rows.every((r) => r.symbol !== null)).toBe(true);
    const letters = await ctx.sink.query('SELECT 1 FROM slotline.dead_letters');
    expect(letters.rowCount).toBe(0);
    await expectSlotAtCheckpoint(ctx);
    expect((await c.stop()).code, c.output()).toBe(0);
  });
});
