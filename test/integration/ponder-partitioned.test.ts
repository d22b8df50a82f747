/**
 * Ponder's `ordering: "experimental_isolated"`: every table PARTITION BY LIST
 * (chain_id), one partition per chain. The publication publishes via the
 * partition root, so the trades of every chain arrive as order_book_trades,
 * from the snapshot (copied through the root) and from the stream alike; the
 * shadow tables never enter the publication.
 */
import { describe, expect, it } from 'vitest';
import { checkSource } from '../../src/source/checks.js';
import { checkPublication } from '../../src/source/publication-watch.js';
import { runCommand, startConnector } from '../harness/connector.js';
import { sinkTrades } from '../harness/compare.js';
import { createTestContext } from '../harness/context.js';
import { makePool, makeTrade, PonderDeployment, type PonderTrade } from '../harness/ponder.js';
import { FAST } from '../harness/settings.js';
import { waitFor } from '../harness/wait.js';

const CHAINS = [1, 137, 42161];
const SCHEMA = 'ponder_isolated';

describe('partitioned Ponder tables (isolated ordering)', () => {
  it('streams the trades of three chain partitions as order_book_trades, snapshot and stream', async () => {
    await using ctx = await createTestContext('ponder_partitioned');
    const app = await new PonderDeployment(ctx.source, {
      schema: SCHEMA,
      chains: CHAINS,
      isolated: true,
    }).create();
    const pools = CHAINS.flatMap((chain, c) =>
      [0, 1].map((i) => makePool(c * 10 + i, { chainId: chain })),
    );
    // Trade numbers never overlap between chains: a trade id is unique in the sink.
    const tradesOf = (from: number, n: number): PonderTrade[] =>
      Array.from({ length: n }, (_, k) => {
        const i = from + k;
        return makeTrade(i, pools[i % pools.length]!);
      });
    // History: COPY batches of at most 12,000 rows, one transaction each.
    await app.backfill(pools, tradesOf(0, 30_000));
    const env = ctx.env({ ...FAST, SLOTLINE_SOURCE_SCHEMA: SCHEMA });
    const setup = await runCommand(env, ['setup']);
    expect(setup.code, setup.output).toBe(0);

    const pub = await ctx.source.query<{ schemaname: string; tablename: string }>(
      'SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY tablename',
      [ctx.publication],
    );
    expect(pub.rows).toEqual([
      { schemaname: SCHEMA, tablename: 'order_book_trades' },
      { schemaname: SCHEMA, tablename: 'pools' },
    ]);
    const via = await ctx.source.query<{ pubviaroot: boolean }>(
      'SELECT pubviaroot FROM pg_publication WHERE pubname = $1',
      [ctx.publication],
    );
    expect(via.rows[0]?.pubviaroot).toBe(true);

    await using c = startConnector(env);
    await app.startRealtime();
    // Realtime blocks on every chain: inserts, pool updates, deletes of history.
    let next = 30_000;
    for (let b = 0; b < 20; b++) {
      const fresh = tradesOf(next, 30);
      next += 30;
      const moved = pools.map((p) => ({ ...p, volume: String(BigInt(b + 1) * 10n ** 18n) }));
      await app.writeBlock({
        deleteTrades: tradesOf(b * 7, 1).map((t) => t.id),
        trades: fresh,
        pools: moved,
      });
    }
    // A Ponder restart undoes the unfinalized blocks in one transaction, then indexes them again.
    const undone = await app.undoUnfinalized();
    expect(undone).toBeGreaterThan(0);
    await app.startRealtime();
    await app.writeBlock({ trades: tradesOf(30_000, 90) });
    await app.heartbeat();

    const want = await app.trades();
    await waitFor(async () => (await sinkTrades(ctx.sink)).length === want.length || undefined, {
      timeoutMs: 120_000,
      what: `${want.length} trades in the sink`,
    });
    expect(await sinkTrades(ctx.sink)).toEqual(want);
    const chains = await ctx.sink.query<{ chain_id: number; n: string }>(
      'SELECT chain_id, count(*)::text AS n FROM analytics_trades GROUP BY chain_id ORDER BY chain_id',
    );
    expect(chains.rows.map((r) => r.chain_id)).toEqual(CHAINS);
    const letters = await ctx.sink.query('SELECT reason_code FROM slotline.dead_letters');
    expect(letters.rows).toEqual([]);
    const symbols = await ctx.sink.query('SELECT 1 FROM analytics_trades WHERE symbol IS NULL');
    expect(symbols.rowCount).toBe(0);
    expect((await c.stop()).code, c.output()).toBe(0);
  });

  it('a partition without replica identity is refused; a publication not via the root is reported and repaired', async () => {
    await using ctx = await createTestContext('ponder_partition_checks');
    const app = await new PonderDeployment(ctx.source, {
      schema: SCHEMA,
      chains: CHAINS,
      isolated: true,
    }).create();
    const opts = { schema: SCHEMA, publication: ctx.publication };
    const preflight = { ...opts, slot: ctx.slot, create: false };
    const failures = async () =>
      (await checkSource(ctx.source, preflight)).flatMap((r) =>
        r.status === 'fail' ? [{ name: r.name, error: r.error }] : [],
      );
    // The publication does not exist yet: that is the only failure.
    expect((await failures()).map((f) => f.error.code)).toEqual(['publication_missing']);
    await ctx.source.query(`ALTER TABLE ${SCHEMA}.order_book_trades_137 REPLICA IDENTITY NOTHING`);
    const identity = (await failures()).find((f) => f.name === 'table order_book_trades');
    expect(identity?.error).toMatchObject({
      code: 'replica_identity',
      remedy: { side: 'source', fix: expect.stringMatching(/REPLICA IDENTITY FULL/) },
    });
    expect(identity?.error.message).toMatch(
      /partition\(s\) ponder_isolated\.order_book_trades_137 of ponder_isolated\.order_book_trades have no replica identity/,
    );
    await ctx.source.query(`ALTER TABLE ${SCHEMA}.order_book_trades_137 REPLICA IDENTITY DEFAULT`);

    // What the role script made before partitioned tables were known: no publish_via_partition_root.
    await ctx.source.query(
      `CREATE PUBLICATION ${ctx.publication} FOR TABLE ${SCHEMA}.order_book_trades, ${SCHEMA}.pools`,
    );
    // The preflight (`slotline check`, and setup before it changes anything) names it…
    const [viaRoot, ...rest] = await failures();
    expect(rest).toEqual([]);
    expect(viaRoot?.error).toMatchObject({
      code: 'publication_missing',
      remedy: {
        side: 'source',
        variable: 'SLOTLINE_PUBLICATION',
        fix: expect.stringMatching(/publish_via_partition_root = true/),
      },
    });
    // …and setup, which may change it, would.
    const bySetup = await checkSource(ctx.source, { ...preflight, create: true });
    expect(bySetup.find((r) => r.name === 'publication')).toMatchObject({
      status: 'ok',
      detail: expect.stringMatching(/setup sets publish_via_partition_root/),
    });
    const problem = await checkPublication(ctx.source, opts);
    expect(problem).toMatchObject({ code: 'publication_incomplete', repaired: false });
    expect(problem?.message).toMatch(/publish_via_partition_root = true/);
    const repaired = await checkPublication(ctx.source, { ...opts, repair: true });
    expect(repaired).toMatchObject({ code: 'publication_incomplete', repaired: true });
    expect(await checkPublication(ctx.source, opts)).toBeNull();
    expect(app.schema).toBe(SCHEMA);
  });
});
