import { describe, expect, it } from 'vitest';
import { startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { FAST } from '../harness/settings.js';
import { expectSinkEqualsSource, expectSlotAtCheckpoint } from '../harness/compare.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
  UINT256_MAX,
} from '../harness/ponder.js';

describe('core pipeline', () => {
  it('delivers many small and a few large transactions exactly once, values identical, symbols resolved', async () => {
    await using ctx = await createTestContext('pipeline');
    await createPonderTables(ctx.source);
    const pools = Array.from({ length: 5 }, (_, i) => makePool(i));
    await insertPools(ctx.source, 'public', pools);
    await using c = startConnector(ctx.env(FAST));

    // 300 small transactions, written by 3 concurrent writers.
    let i = 0;
    const writer = async () => {
      for (let n = 0; n < 100; n++) {
        const batch = Array.from({ length: 3 }, () => {
          const k = i++;
          return makeTrade(k, pools[k % pools.length]!, { uint256: k % 10 === 0 });
        });
        await insertTrades(ctx.source, 'public', batch);
      }
    };
    await Promise.all([writer(), writer(), writer()]);
    // A few large ones: 20,000 rows each in one transaction.
    for (let t = 0; t < 3; t++) {
      await ctx.source.query(
        `INSERT INTO order_book_trades (id, chain_id, price, quantity, timestamp, transaction_id, side, pool_id)
         SELECT 'big-' || $1 || '-' || g, 31337, ($2::numeric - g), g::numeric * 1000000000000000,
                1700000000 + g, '0x' || md5(g::text), CASE WHEN g % 2 = 0 THEN 'buy' ELSE 'sell' END, $3
           FROM generate_series(1, 20000) g`,
        [t, UINT256_MAX, pools[t]!.order_book],
      );
    }

    await expectSinkEqualsSource(ctx, { timeoutMs: 120_000 });

    // Symbols come from pools.coin via order_book; volume is the exact product.
    const bad = await ctx.sink.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM analytics_trades t
        WHERE t.volume <> t.price * t.quantity OR t.symbol IS DISTINCT FROM
              (SELECT coin FROM pools p WHERE p.order_book = t.pool_id)`,
    );
    expect(bad.rows[0]?.n).toBe('0');
    const max = await ctx.sink.query<{ price: string }>(
      `SELECT price::text FROM analytics_trades WHERE trade_id = 'big-0-1'`,
    );
    expect(max.rows[0]?.price).toBe((BigInt(UINT256_MAX) - 1n).toString());
    expect(max.rows[0]?.price).toHaveLength(78);

    await expectSlotAtCheckpoint(ctx);
    const exit = await c.stop();
    expect(exit.code, c.output()).toBe(0);
  });

  it('applies updates and deletes (reorgs) at the source', async () => {
    await using ctx = await createTestContext('upd_del');
    await createPonderTables(ctx.source);
    const pools = [makePool(0), makePool(1)];
    await insertPools(ctx.source, 'public', pools);
    await insertTrades(
      ctx.source,
      'public',
      Array.from({ length: 200 }, (_, k) => makeTrade(k, pools[k % 2]!)),
    );
    await using c = startConnector(ctx.env(FAST));
    await expectSinkEqualsSource(ctx);

    // Price corrections, a timestamp move (the sink key is (trade_id, time)), deletes, and a reorg:
    // delete + re-insert of the same ids with new values in one transaction.
    await ctx.source.query(
      `UPDATE order_book_trades SET price = price + 1 WHERE id IN (SELECT id FROM order_book_trades ORDER BY id LIMIT 20)`,
    );
    await ctx.source.query(
      `UPDATE order_book_trades SET timestamp = timestamp + 3600 WHERE id IN (SELECT id FROM order_book_trades ORDER BY id DESC LIMIT 5)`,
    );
    await ctx.source.query(
      `DELETE FROM order_book_trades WHERE id IN (SELECT id FROM order_book_trades ORDER BY id OFFSET 50 LIMIT 30)`,
    );
    const client = await ctx.source.connect();
    try {
      await client.query('BEGIN');
      const victims = await client.query<{ id: string }>(
        `SELECT id FROM order_book_trades ORDER BY id OFFSET 100 LIMIT 10`,
      );
      await client.query(`DELETE FROM order_book_trades WHERE id = ANY($1)`, [
        victims.rows.map((r) => r.id),
      ]);
      await client.query(
        `INSERT INTO order_book_trades (id, chain_id, price, quantity, timestamp, transaction_id, side, pool_id)
         SELECT id, 31337, 777, 3, 1800000000, 'reorg', 'sell', $2 FROM unnest($1::text[]) AS id`,
        [victims.rows.map((r) => r.id), pools[1]!.order_book],
      );
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    // A pool renamed: later trades carry the new symbol.
    await ctx.source.query(`UPDATE pools SET coin = 'RENAMED/MUSDC' WHERE id = $1`, [pools[0]!.id]);
    await insertTrades(ctx.source, 'public', [makeTrade(1000, pools[0]!)]);

    await expectSinkEqualsSource(ctx);
    const renamed = await ctx.sink.query<{ symbol: string }>(
      `SELECT symbol FROM analytics_trades WHERE trade_id = $1`,
      [makeTrade(1000, pools[0]!).id],
    );
    expect(renamed.rows[0]?.symbol).toBe('RENAMED/MUSDC');
    const mirror = await ctx.sink.query<{ coin: string }>('SELECT coin FROM pools WHERE id = $1', [
      pools[0]!.id,
    ]);
    expect(mirror.rows[0]?.coin).toBe('RENAMED/MUSDC');
    await expectSlotAtCheckpoint(ctx);
    expect((await c.stop()).code, c.output()).toBe(0);
  });
});
