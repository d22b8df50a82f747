/**
 * Schema changes of the source table while trades stream in: a column added
 * (and dropped again), `side` varchar → text, `price` numeric(78,0) → numeric,
 * and `timestamp` integer → bigint (a table rewrite). pgoutput sends a new
 * Relation message before the next change; the connector maps columns by name
 * and goes on. Ends with the sink equal to the source and verify clean.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { expectSinkEqualsSource, expectSlotAtCheckpoint } from '../harness/compare.js';
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

const DDL = [
  `ALTER TABLE order_book_trades ADD COLUMN block_number bigint DEFAULT 42`,
  `ALTER TABLE order_book_trades ALTER COLUMN side TYPE text`,
  `ALTER TABLE order_book_trades ALTER COLUMN price TYPE numeric`,
  `ALTER TABLE order_book_trades ALTER COLUMN "timestamp" TYPE bigint`,
  `ALTER TABLE order_book_trades ALTER COLUMN transaction_id TYPE varchar(80)`,
  `ALTER TABLE order_book_trades DROP COLUMN block_number`,
];

describe('faults: source DDL mid-stream', () => {
  it('ADD/DROP COLUMN and column type changes while trades stream: nothing lost, verify clean', async () => {
    await using ctx = await createTestContext('ddl');
    await createPonderTables(ctx.source);
    const pools = [makePool(0), makePool(1)];
    await insertPools(ctx.source, 'public', pools);
    await using c = startConnector(ctx.env(FAST));
    await expectSlotAtCheckpoint(ctx);

    let writing = true;
    let next = 0;
    const writer = (async () => {
      while (writing) {
        const rows = Array.from({ length: 5 }, () =>
          makeTrade(next, pools[next % 2]!, { timestamp: 1_700_000_000 + next++ * 13 }),
        );
        await insertTrades(ctx.source, 'public', rows);
        if (next % 50 === 0)
          await ctx.source.query(`UPDATE order_book_trades SET side = 'sell' WHERE id = $1`, [
            rows[0]!.id,
          ]);
        await sleep(5);
      }
    })();
    try {
      for (const ddl of DDL) {
        await sleep(300);
        await ctx.source.query(ddl);
      }
      await sleep(300);
    } finally {
      writing = false;
      await writer;
    }
    // After the changes: a timestamp past 2038 (it needs the bigint) is stored.
    await ctx.source.query(
      `INSERT INTO order_book_trades (id, chain_id, price, quantity, "timestamp", transaction_id, side, pool_id)
       VALUES ('after-ddl', 31337, 5, 7, 2200000000, 'tx', 'buy', $1)`,
      [pools[0]!.order_book],
    );
    await expectSinkEqualsSource(ctx);
    await expectSlotAtCheckpoint(ctx);
    const r = await expectVerifyClean(ctx, { minRows: next });
    console.info(`DDL: ${DDL.length} statements mid-stream; ${r.rows.source} trades, verify clean`);
    expect(c.proc.exitCode, c.output()).toBeNull();
    expect((await c.stop()).code, c.output()).toBe(0);
  });
});
