/**
 * The publication changing under a running connector (issue 11.13): a source
 * table renamed and recreated, and DROP PUBLICATION, are noticed by
 * checkPublication instead of losing inserts silently.
 */
import { describe, expect, it } from 'vitest';
import { checkPublication } from '../../src/source/publication-watch.js';
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

describe('publication watch', () => {
  it('a recreated order_book_trades is reported, added back, and its inserts stream again', async () => {
    await using ctx = await createTestContext('pub_recreated');
    await createPonderTables(ctx.source);
    const pool = makePool(0);
    await insertPools(ctx.source, 'public', [pool]);
    await using c = startConnector(ctx.env(FAST));
    await expectSlotAtCheckpoint(ctx);
    const opts = { schema: 'public', publication: ctx.publication };
    expect(await checkPublication(ctx.source, opts)).toBeNull();

    // Ponder-style redeploy: the old table moves away, a new one takes its name. All in one
    // transaction, checks included: the running connector's own watch repairs the publication
    // every 10 s, and must not see the recreated table before these checks have (it did once,
    // on a loaded machine, between the CREATE and the first check).
    const tx = await ctx.source.connect();
    try {
      await tx.query('BEGIN');
      await tx.query('ALTER TABLE order_book_trades RENAME TO order_book_trades_old');
      await tx.query(
        'ALTER TABLE order_book_trades_old RENAME CONSTRAINT order_book_trades_pkey TO obt_old_pkey',
      );
      await tx.query('CREATE TABLE order_book_trades (LIKE order_book_trades_old INCLUDING ALL)');
      const problem = await checkPublication(tx, opts);
      expect(problem).toMatchObject({
        code: 'publication_incomplete',
        tables: ['public.order_book_trades'],
        repaired: false,
      });
      expect(problem?.message).toMatch(/ALTER PUBLICATION .* ADD TABLE public\.order_book_trades/);

      const repaired = await checkPublication(tx, { ...opts, repair: true });
      expect(repaired).toMatchObject({ code: 'publication_incomplete', repaired: true });
      expect(repaired?.message).toMatch(/slotline backfill/);
      expect(await checkPublication(tx, opts)).toBeNull();
      await tx.query('COMMIT');
    } finally {
      tx.release();
    }
    expect(await checkPublication(ctx.source, opts)).toBeNull();

    await insertTrades(ctx.source, 'public', [makeTrade(0, pool), makeTrade(1, pool)]);
    await expectSinkEqualsSource(ctx, { timeoutMs: 30_000 });
    expect((await c.stop()).code, c.output()).toBe(0);
  });

  it('DROP PUBLICATION is reported with the recovery', async () => {
    await using ctx = await createTestContext('pub_dropped');
    await createPonderTables(ctx.source);
    await ctx.source.query(
      `CREATE PUBLICATION ${ctx.publication} FOR TABLE order_book_trades, pools`,
    );
    const opts = { schema: 'public', publication: ctx.publication };
    expect(await checkPublication(ctx.source, opts)).toBeNull();
    await ctx.source.query(`DROP PUBLICATION ${ctx.publication}`);
    const problem = await checkPublication(ctx.source, { ...opts, repair: true });
    expect(problem).toMatchObject({ code: 'publication_missing', repaired: false });
    expect(problem?.message).toMatch(/slotline setup --resnapshot/);
  });

  it('a source table renamed away is reported as missing', async () => {
    await using ctx = await createTestContext('pub_table_gone');
    await createPonderTables(ctx.source);
    await ctx.source.query(
      `CREATE PUBLICATION ${ctx.publication} FOR TABLE order_book_trades, pools`,
    );
    await ctx.source.query('ALTER TABLE pools RENAME TO pools_old');
    const problem = await checkPublication(ctx.source, {
      schema: 'public',
      publication: ctx.publication,
    });
    expect(problem).toMatchObject({ code: 'source_table_missing', tables: ['public.pools'] });
  });
});
