/**
 * The connector runs as the roles that sql/roles/source_role.sql and sql/roles/sink_role.sql create
 * (applied with psql, as an operator would): no superuser on either side, and every trade
 * arrives exactly once.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { expectSinkEqualsSource, expectSlotAtCheckpoint } from '../harness/compare.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
} from '../harness/ponder.js';
import { asRole, psql, withClient } from '../harness/psql.js';
import { FAST } from '../harness/settings.js';
import { waitFor } from '../harness/wait.js';

describe('least-privilege roles', () => {
  it('stream every trade exactly once as the source and sink roles of sql/', async () => {
    const suffix = randomBytes(4).toString('hex');
    const sourceRole = `slotline_src_${suffix}`;
    const sinkRole = `slotline_snk_${suffix}`;
    const password = randomBytes(18).toString('hex');
    const ctx = await createTestContext('least_privilege');
    let connector: ReturnType<typeof startConnector> | undefined;
    try {
      await createPonderTables(ctx.source);
      const pools = [makePool(0), makePool(1)];
      await insertPools(ctx.source, 'public', pools);
      await insertTrades(
        ctx.source,
        'public',
        Array.from({ length: 60 }, (_, i) => makeTrade(i, pools[i % 2]!)),
      );
      // Twice each: the files are idempotent.
      for (let i = 0; i < 2; i++) {
        await psql(ctx.sourceUrl, 'sql/roles/source_role.sql', {
          role: sourceRole,
          password,
          publication: ctx.publication,
        });
        await psql(ctx.sinkUrl, 'sql/roles/sink_role.sql', { role: sinkRole, password });
      }
      const sourceUrl = asRole(ctx.sourceUrl, sourceRole, password);
      const sinkUrl = asRole(ctx.sinkUrl, sinkRole, password);

      // What the source role is, and is not.
      const facts = await ctx.source.query<{
        rolsuper: boolean;
        rolreplication: boolean;
        rolcreatedb: boolean;
        rolcreaterole: boolean;
      }>(
        'SELECT rolsuper, rolreplication, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1',
        [sourceRole],
      );
      expect(facts.rows[0]).toEqual({
        rolsuper: false,
        rolreplication: true,
        rolcreatedb: false,
        rolcreaterole: false,
      });
      await withClient(sourceUrl, async (c) => {
        await expect(c.query(`DELETE FROM order_book_trades`)).rejects.toThrow(/permission denied/);
        await expect(c.query(`CREATE TABLE t (x int)`)).rejects.toThrow(/permission denied/);
        // Heartbeats and backfill watermarks: PUBLIC may call it on PostgreSQL 15.
        await c.query(`SELECT pg_logical_emit_message(true, 'slotline-test', 'role check')`);
      });

      connector = startConnector(
        ctx.env({ ...FAST, SLOTLINE_SOURCE_URL: sourceUrl, SLOTLINE_SINK_URL: sinkUrl }),
      );
      await expectSinkEqualsSource(ctx).catch((err: unknown) => {
        throw new Error(`${(err as Error).message}\n${connector?.output().slice(-3000)}`);
      });

      // Live changes too: inserts, an update, a delete.
      await insertTrades(
        ctx.source,
        'public',
        Array.from({ length: 40 }, (_, i) => makeTrade(1000 + i, pools[i % 2]!)),
      );
      await ctx.source.query(
        `UPDATE order_book_trades SET side = 'sell' WHERE id = (SELECT min(id) FROM order_book_trades)`,
      );
      await ctx.source.query(
        `DELETE FROM order_book_trades WHERE id = (SELECT max(id) FROM order_book_trades)`,
      );
      await expectSinkEqualsSource(ctx);
      await expectSlotAtCheckpoint(ctx);

      // The stream ran as the source role; the sink tables belong to the sink role.
      const walsender = await waitFor(
        async () => {
          const r = await ctx.source.query<{ usename: string }>(
            `SELECT a.usename FROM pg_replication_slots s JOIN pg_stat_activity a ON a.pid = s.active_pid
              WHERE s.slot_name = $1`,
            [ctx.slot],
          );
          return r.rows[0]?.usename;
        },
        { timeoutMs: 10_000, what: 'the walsender of the slot' },
      );
      expect(walsender).toBe(sourceRole);
      const owner = await ctx.sink.query<{ tableowner: string }>(
        `SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = 'analytics_trades'`,
      );
      expect(owner.rows[0]?.tableowner).toBe(sinkRole);

      const exit = await connector.stop();
      expect(exit.code, connector.output().slice(-3000)).toBe(0);
    } finally {
      await connector?.[Symbol.asyncDispose]();
      await ctx[Symbol.asyncDispose]();
      await withClient(ctx.adminUrl, async (c) => {
        for (const role of [sourceRole, sinkRole]) await c.query(`DROP ROLE IF EXISTS "${role}"`);
      });
    }
  });
});
