/**
 * Replica identities other than the default (issue 11.6): FULL, which setup's
 * own message recommends, and USING INDEX on an index without `id`.
 */
import { describe, expect, it } from 'vitest';
import { runCommand, startConnector } from '../harness/connector.js';
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

describe('replica identity', () => {
  it('FULL: an UPDATE that changes a trade id leaves no old row in the sink', async () => {
    await using ctx = await createTestContext('identity_full');
    await createPonderTables(ctx.source);
    await ctx.source.query('ALTER TABLE order_book_trades REPLICA IDENTITY FULL');
    await ctx.source.query('ALTER TABLE pools REPLICA IDENTITY FULL');
    const pool = makePool(0);
    await insertPools(ctx.source, 'public', [pool]);
    await using c = startConnector(ctx.env(FAST));
    await expectSlotAtCheckpoint(ctx);
    const [a, b] = [makeTrade(0, pool), makeTrade(1, pool)];
    await insertTrades(ctx.source, 'public', [a, b]);
    await expectSinkEqualsSource(ctx);
    await ctx.source.query(`UPDATE order_book_trades SET id = id || '-moved' WHERE id = $1`, [
      a.id,
    ]);
    await ctx.source.query(
      `UPDATE order_book_trades SET id = id || '-moved', timestamp = timestamp + 3600 WHERE id = $1`,
      [b.id],
    );
    await insertTrades(ctx.source, 'public', [makeTrade(2, pool)]);
    await expectSinkEqualsSource(ctx);
    await expectSlotAtCheckpoint(ctx);
    expect((await c.stop()).code, c.output()).toBe(0);
  });

  it('USING INDEX on an index without id: setup refuses and names the fix', async () => {
    await using ctx = await createTestContext('identity_index');
    await createPonderTables(ctx.source);
    await ctx.source.query('ALTER TABLE order_book_trades ALTER transaction_id SET NOT NULL');
    await ctx.source.query('CREATE UNIQUE INDEX obt_tx ON order_book_trades (transaction_id)');
    await ctx.source.query('ALTER TABLE order_book_trades REPLICA IDENTITY USING INDEX obt_tx');
    const r = await runCommand(ctx.env(FAST), ['setup']);
    expect(r.code, r.output).not.toBe(0);
    expect(r.output).toMatch(/obt_tx/);
    expect(r.output).toMatch(/REPLICA IDENTITY DEFAULT/);
  });
});
