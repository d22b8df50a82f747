import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { expectSinkEqualsSource, expectSlotAtCheckpoint, positions } from '../harness/compare.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
} from '../harness/ponder.js';
import { FAST } from '../harness/settings.js';

describe('crash safety', () => {
  it('survives SIGKILL at random moments while a writer inserts: no gap, no duplicate', async () => {
    await using ctx = await createTestContext('kill9');
    await createPonderTables(ctx.source);
    const pools = Array.from({ length: 4 }, (_, i) => makePool(i));
    await insertPools(ctx.source, 'public', pools);
    // Small batches so a kill lands between sink transactions as well as inside them.
    const env = ctx.env({
      ...FAST,
      SLOTLINE_BATCH_MAX_ROWS: '200',
      SLOTLINE_INFLIGHT_MAX_ROWS: '2000',
    });

    let writing = true;
    let next = 0;
    const writer = (async () => {
      while (writing) {
        const size = next % 7 === 0 ? 500 : 5; // now and then a larger transaction
        const rows = Array.from({ length: size }, () => {
          const k = next++;
          return makeTrade(k, pools[k % pools.length]!);
        });
        await insertTrades(ctx.source, 'public', rows);
        if (next % 50 === 0) {
          await ctx.source.query(`DELETE FROM order_book_trades WHERE id = $1`, [
            makeTrade(next - 40, pools[0]!).id,
          ]);
        }
      }
    })();

    const kills = 6;
    try {
      for (let k = 0; k < kills; k++) {
        const c = startConnector(env);
        await sleep(300 + Math.floor(Math.random() * 1200));
        c.kill('SIGKILL');
        const exit = await c.exited;
        expect(exit.signal, c.output()).toBe('SIGKILL');
      }
    } finally {
      writing = false;
      await writer;
    }
    const c = startConnector(env);
    try {
      await expectSinkEqualsSource(ctx, { timeoutMs: 90_000 });
      const p = await expectSlotAtCheckpoint(ctx);
      expect(p.checkpoint).not.toBeNull();
      expect((await c.stop()).code, c.output()).toBe(0);
    } finally {
      c.kill('SIGKILL');
    }
    // After a clean stop the acknowledged position is still the checkpoint.
    const after = await positions(ctx);
    expect(after.confirmedFlush).toBe(after.checkpoint);
  });

  it('moves the slot past writes to unrelated tables (an idle slot holds no WAL)', async () => {
    await using ctx = await createTestContext('idle');
    await createPonderTables(ctx.source);
    await insertPools(ctx.source, 'public', [makePool(0)]);
    await ctx.source.query('CREATE TABLE unrelated (id serial primary key, payload text)');
    await using c = startConnector(ctx.env(FAST));
    await expectSlotAtCheckpoint(ctx);
    const before = await positions(ctx);
    await ctx.source.query(
      `INSERT INTO unrelated (payload) SELECT repeat('x', 1000) FROM generate_series(1, 5000)`,
    );
    const target = (
      await ctx.source.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')
    ).rows[0]!.lsn;
    await expectSlotAtCheckpoint(ctx);
    const moved = await ctx.source.query<{ ok: boolean }>(
      `SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $2`,
      [target, ctx.slot],
    );
    // Poll: the keepalive that carries the new WAL end may take a moment.
    for (let i = 0; i < 100 && !moved.rows[0]?.ok; i++) {
      await sleep(100);
      const r = await ctx.source.query<{ ok: boolean }>(
        `SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $2`,
        [target, ctx.slot],
      );
      moved.rows[0] = r.rows[0]!;
    }
    expect(moved.rows[0]?.ok, `slot stayed at ${before.confirmedFlush}, WAL is at ${target}`).toBe(
      true,
    );
    const p = await expectSlotAtCheckpoint(ctx);
    expect(p.checkpoint).not.toBe(before.checkpoint);
    expect((await c.stop()).code).toBe(0);
  });
});
