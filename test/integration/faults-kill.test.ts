/**
 * SIGKILL of the connector, 20 times at short random intervals, while a writer
 * inserts, updates and deletes trades: afterwards the sink equals the source,
 * no trade is there twice, and verify finds no bucket that differs.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { expectSinkEqualsSource, expectSlotAtCheckpoint, positions } from '../harness/compare.js';
import { startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
} from '../harness/ponder.js';
import { FAST } from '../harness/settings.js';
import { expectVerifyClean } from '../harness/verify.js';
import { waitFor } from '../harness/wait.js';

const KILLS = 20;

describe('faults: SIGKILL', () => {
  it(`survives ${KILLS} SIGKILLs under continuous load: sink = source, no duplicate, verify clean`, async () => {
    await using ctx = await createTestContext('kill20');
    await createPonderTables(ctx.source);
    const pools = Array.from({ length: 4 }, (_, i) => makePool(i));
    await insertPools(ctx.source, 'public', pools);
    // Small batches, so that kills land between sink transactions as well as inside them.
    const env = ctx.env({
      ...FAST,
      SLOTLINE_BATCH_MAX_ROWS: '100',
      SLOTLINE_INFLIGHT_MAX_ROWS: '1000',
    });
    const trade = (k: number) =>
      makeTrade(k, pools[k % pools.length]!, { timestamp: 1_700_000_000 + k * 7 });

    // First start: the initial snapshot, then streaming; the kills below hit a streaming connector.
    const first = startConnector(env);
    await expectSlotAtCheckpoint(ctx);
    first.kill('SIGKILL');
    await first.exited;

    let writing = true;
    let next = 0;
    let txs = 0;
    let deletes = 0;
    let updates = 0;
    const writer = (async () => {
      while (writing) {
        const size = txs++ % 25 === 0 ? 300 : 5; // now and then a larger transaction
        const rows = Array.from({ length: size }, () => trade(next++));
        await insertTrades(ctx.source, 'public', rows);
        if (txs % 8 === 0) {
          await ctx.source.query('DELETE FROM order_book_trades WHERE id = $1', [
            trade(next - 30).id,
          ]);
          deletes++;
        }
        if (txs % 5 === 0) {
          await ctx.source.query(
            `UPDATE order_book_trades SET price = price + 1, side = 'SELL' WHERE id = $1`,
            [trade(next - 20).id],
          );
          updates++;
        }
        await sleep(5);
      }
    })();

    const t0 = Date.now();
    let kills = 0;
    try {
      for (let k = 0; k < KILLS; k++) {
        const before = (await positions(ctx)).checkpoint;
        const c = startConnector(env);
        // Mid-stream: once this life has committed a sink transaction, at a random moment after.
        await waitFor(async () => (await positions(ctx)).checkpoint !== before, {
          timeoutMs: 20_000,
          intervalMs: 20,
          what: `the checkpoint to move after start ${k + 1}`,
        });
        await sleep(Math.floor(Math.random() * 400));
        c.kill('SIGKILL');
        const exit = await c.exited;
        expect(exit.signal, c.output()).toBe('SIGKILL');
        kills++;
      }
    } finally {
      writing = false;
      await writer;
    }
    const c = startConnector(env);
    try {
      await expectSinkEqualsSource(ctx, { timeoutMs: 90_000 });
      await expectSlotAtCheckpoint(ctx);
      const r = await expectVerifyClean(ctx, { minRows: next - deletes });
      console.info(
        `SIGKILL: ${kills} kills mid-stream in ${Date.now() - t0} ms; ${next} trades written, ${updates} updates, ` +
          `${deletes} deletes; verify: ${r.buckets.checked} buckets, ${r.rows.source} trades, 0 mismatched`,
      );
      expect((await c.stop()).code, c.output()).toBe(0);
    } finally {
      c.kill('SIGKILL');
    }
    const after = await positions(ctx);
    expect(after.confirmedFlush).toBe(after.checkpoint);
    expect(kills).toBe(KILLS);
  });
});
