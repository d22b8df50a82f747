import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { expectSinkEqualsSource, expectSlotAtCheckpoint, sinkCount } from '../harness/compare.js';
import { call, freePort, waitReady } from '../harness/http.js';
import { FAST } from '../harness/settings.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
} from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';

const TOKEN = 'test-admin-token-0123456789';

describe('backfill', () => {
  it('restores rows lost from the sink while streaming goes on, and never resurrects rows deleted at the source', async () => {
    await using ctx = await createTestContext('backfill');
    await createPonderTables(ctx.source);
    const pools = [makePool(0), makePool(1)];
    await insertPools(ctx.source, 'public', pools);
    // 6,000 trades spread over 6,000 seconds.
    await ctx.source.query(
      `INSERT INTO order_book_trades (id, chain_id, price, quantity, timestamp, transaction_id, side, pool_id)
       SELECT 'old-' || lpad(g::text, 5, '0'), 31337, 1000 + g, 7, 1700000000 + g, 'tx', 'buy', $1
         FROM generate_series(1, 6000) g`,
      [pools[0]!.order_book],
    );
    const port = await freePort();
    await using c = startConnector(
      ctx.env({ ...FAST, SLOTLINE_HTTP_PORT: String(port), SLOTLINE_ADMIN_TOKEN: TOKEN }),
    );
    await expectSinkEqualsSource(ctx);
    await expectSlotAtCheckpoint(ctx);

    // Rows lost from the sink (an operator's mistake, a restore from an old backup…).
    await ctx.sink.query(
      `DELETE FROM analytics_trades WHERE time >= to_timestamp(1700001000) AND time < to_timestamp(1700004000)`,
    );
    expect(await sinkCount(ctx.sink)).toBe(3000);

    // The live stream goes on: new trades, updates and deletes inside the backfilled range.
    let writing = true;
    let k = 0;
    const deleted: string[] = [];
    const writer = (async () => {
      while (writing) {
        await insertTrades(ctx.source, 'public', [makeTrade(k++, pools[1]!)]);
        const victim = `old-${String(1000 + ((k * 37) % 3000)).padStart(5, '0')}`;
        await ctx.source.query('DELETE FROM order_book_trades WHERE id = $1', [victim]);
        deleted.push(victim);
        await ctx.source.query(
          `UPDATE order_book_trades SET price = price + 1 WHERE id = 'old-' || lpad($1::text, 5, '0')`,
          [2000 + ((k * 13) % 1000)],
        );
        await sleep(1);
      }
    })();

    const started = await call(port, 'POST', '/admin/backfill', {
      token: TOKEN,
      json: { from: 1700001000, to: 1700004000, chunkSize: 100 },
    });
    expect(started.status, started.text).toBe(202);
    const again = await call(port, 'POST', '/admin/backfill', {
      token: TOKEN,
      json: { from: 1700001000 },
    });
    expect(again.status).toBe(409);
    try {
      await waitFor(
        async () => {
          const s = await call(port, 'GET', '/status');
          const b = s.body.backfill as { state: string } | null;
          return b?.state === 'done' ? b : undefined;
        },
        { timeoutMs: 60_000, what: 'the backfill to finish' },
      );
    } finally {
      writing = false;
      await writer;
    }
    expect(deleted.length).toBeGreaterThan(0);
    await expectSinkEqualsSource(ctx);
    const resurrected = await ctx.sink.query(
      'SELECT trade_id FROM analytics_trades WHERE trade_id = ANY($1)',
      [deleted],
    );
    expect(resurrected.rowCount).toBe(0);
    const row = await ctx.sink.query<{ state: string; rows: string }>(
      `SELECT state, rows::text FROM slotline.backfills WHERE slot = $1`,
      [ctx.slot],
    );
    expect(row.rows[0]?.state).toBe('done');
    const metrics = await call(port, 'GET', '/metrics');
    expect(metrics.text).toMatch(/slotline_backfill_rows_total [1-9]/);
    expect((await c.stop()).code, c.output()).toBe(0);
  });

  it('refuses bad backfill requests', async () => {
    await using ctx = await createTestContext('backfill_4xx');
    await createPonderTables(ctx.source);
    await insertPools(ctx.source, 'public', [makePool(0)]);
    const port = await freePort();
    await using c = startConnector(
      ctx.env({ ...FAST, SLOTLINE_HTTP_PORT: String(port), SLOTLINE_ADMIN_TOKEN: TOKEN }),
    );
    await waitReady(port);
    for (const body of [
      {},
      { from: 'yesterday-ish' },
      { from: 10, to: 5 },
      { from: 1, chunkSize: 0 },
      { from: 1, bogus: true },
    ]) {
      const a = await call(port, 'POST', '/admin/backfill', { token: TOKEN, json: body });
      expect(a.status, JSON.stringify(body)).toBe(400);
    }
    expect((await call(port, 'DELETE', '/admin/backfill', { token: TOKEN })).status).toBe(404);
    expect((await call(port, 'POST', '/admin/backfill', { json: { from: 1 } })).status).toBe(401);
    const none = await ctx.sink.query('SELECT 1 FROM slotline.backfills');
    expect(none.rowCount).toBe(0);
    expect((await c.stop()).code).toBe(0);
  });
});
