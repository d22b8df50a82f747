/**
 * A mapped source column renamed or dropped under a running connector (issue
 * 11.11): the affected changes become dead letters, the stream goes on, and
 * once the column is back later changes map again, with no restart.
 */
import { describe, expect, it } from 'vitest';
import { startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { expectSinkEqualsSource, expectSlotAtCheckpoint } from '../harness/compare.js';
import { FAST } from '../harness/settings.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
} from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';

describe('source columns', () => {
  it('a renamed price column dead-letters the trades in between and recovers once renamed back', async () => {
    await using ctx = await createTestContext('renamed_column');
    await createPonderTables(ctx.source);
    const pool = makePool(0);
    await insertPools(ctx.source, 'public', [pool]);
    await using c = startConnector(ctx.env(FAST));
    await expectSlotAtCheckpoint(ctx);
    await insertTrades(ctx.source, 'public', [makeTrade(0, pool)]);
    await expectSinkEqualsSource(ctx);

    await ctx.source.query('ALTER TABLE order_book_trades RENAME COLUMN price TO price_wei');
    const during = [makeTrade(1, pool), makeTrade(2, pool)];
    await ctx.source.query(
      `INSERT INTO order_book_trades (id, chain_id, price_wei, quantity, timestamp, transaction_id, side, pool_id)
       SELECT id, chain_id, price::numeric, quantity::numeric, timestamp, transaction_id, side, pool_id
         FROM json_populate_recordset(null::record, $1::json)
              AS r(id text, chain_id int, price text, quantity text, timestamp int, transaction_id text, side text, pool_id text)`,
      [JSON.stringify(during)],
    );
    const letters = await waitFor(
      async () => {
        const r = await ctx.sink.query<{ row_key: string; reason_code: string }>(
          'SELECT row_key, reason_code FROM slotline.dead_letters WHERE slot = $1 ORDER BY row_key',
          [ctx.slot],
        );
        return r.rows.length === 2 ? r.rows : undefined;
      },
      { timeoutMs: 30_000, what: 'two dead letters' },
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${c.output().slice(-3000)}`);
    });
    expect(letters).toEqual(
      during
        .map((t) => ({ row_key: t.id, reason_code: 'missing_column' }))
        .sort((a, b) => (a.row_key < b.row_key ? -1 : 1)),
    );

    await ctx.source.query('ALTER TABLE order_book_trades RENAME COLUMN price_wei TO price');
    await insertTrades(ctx.source, 'public', [makeTrade(3, pool), makeTrade(4, pool)]);
    const ids = during.map((t) => `'${t.id}'`).join(', ');
    await expectSinkEqualsSource(ctx, { where: `id NOT IN (${ids})` });
    await expectSlotAtCheckpoint(ctx);
    expect(c.proc.exitCode).toBeNull();
    expect((await c.stop()).code, c.output()).toBe(0);
  });
});
