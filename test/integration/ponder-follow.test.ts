/**
 * Follow mode (SLOTLINE_PONDER_VIEWS_SCHEMA): a Ponder redeploy indexes into a
 * new schema and, once ready, re-points the views schema. slotline notices,
 * moves its publication, copies the new deployment in a snapshot and
 * reconciles the sink in one transaction, then streams the new deployment,
 * with no restart and no operator.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { resolveViews } from '../../src/source/ponder.js';
import { runCommand, startWithHttp } from '../harness/connector.js';
import { createTestContext, type TestContext } from '../harness/context.js';
import { sinkTrades } from '../harness/compare.js';
import { call, waitReady } from '../harness/http.js';
import {
  makePool,
  makeTrade,
  PonderDeployment,
  type PonderPool,
  type PonderTrade,
} from '../harness/ponder.js';
import { asRole, psql, withClient } from '../harness/psql.js';
import { waitFor } from '../harness/wait.js';

const VIEWS = 'app_views';
const WEI = 10n ** 18n;

/**
 * Trade ids say which deployment a row can only come from: `h-` history both
 * deployments share; `hc-` shared but changed by B (B's price odd, A's always
 * even); `aonly-` removed in B; `bnew-` new in B; `alive-`/`blive-` written by
 * A/B in realtime.
 */
function trade(id: string, i: number, pool: PonderPool, price: bigint): PonderTrade {
  return { ...makeTrade(i, pool), id, price: price.toString() };
}

const evenPrice = (i: number) => 2500n * WEI + 2n * BigInt(i);

/** History of `n` trades as deployment A indexes it, and as B re-indexes it. */
function histories(n: number, pools: PonderPool[]) {
  const a: PonderTrade[] = [];
  const b: PonderTrade[] = [];
  for (let i = 0; i < n; i++) {
    const pool = pools[i % pools.length]!;
    const kind = i % 20 === 0 ? 'hc' : i % 20 === 1 ? 'aonly' : 'h';
    const t = trade(`${kind}-${i}`, i, pool, evenPrice(i));
    a.push(t);
    if (kind === 'h') b.push(t);
    if (kind === 'hc') b.push({ ...t, price: (evenPrice(i) + 1n).toString() });
    if (i % 20 === 2) b.push(trade(`bnew-${i}`, i, pool, evenPrice(i)));
  }
  return { a, b };
}

/**
 * One reader query (one statement: one snapshot for all its subqueries): how
 * many rows only A, and only B, can have produced. Prefix ranges of the
 * primary key (the test cluster's collation is C) keep it cheap, so readers
 * query back to back without slowing the switch they watch.
 */
async function deploymentMarks(ctx: TestContext): Promise<{ a: number; b: number }> {
  const n = (where: string) => `(SELECT count(*) FROM analytics_trades WHERE ${where})`;
  const { rows } = await ctx.sink.query<{ a: string; b: string }>(
    `SELECT (${n(`trade_id LIKE 'alive-%'`)} + ${n(`trade_id LIKE 'aonly-%'`)}
             + ${n(`trade_id LIKE 'hc-%' AND price % 2 = 0`)})::text AS a,
            (${n(`trade_id LIKE 'blive-%'`)} + ${n(`trade_id LIKE 'bnew-%'`)}
             + ${n(`trade_id LIKE 'hc-%' AND price % 2 = 1`)})::text AS b`,
  );
  return { a: Number(rows[0]?.a ?? 0), b: Number(rows[0]?.b ?? 0) };
}

/** A shared, unchanged history trade (`h-`) near position `x`. */
const shared = (x: number, n: number) => {
  const i = x % n;
  return i - (i % 20) + 3 + (i % 17);
};

/**
 * Realtime blocks of a deployment until stopped: new trades, updates of
 * shared history (price + 2 keeps its parity), deletes of shared history.
 */
function realtime(app: PonderDeployment, prefix: string, pools: PonderPool[], historyN: number) {
  let running = true;
  let blocks = 0;
  const seed = prefix === 'alive' ? 7 : 13;
  const done = (async () => {
    for (let k = 0; running; k++) {
      const fresh = Array.from({ length: 5 }, (_, j) =>
        trade(`${prefix}-${k}-${j}`, k * 5 + j, pools[(k + j) % pools.length]!, evenPrice(k)),
      );
      const updated = [1, 2, 3].map((d) => {
        const i = shared(k * 37 + seed + d * 1009, historyN);
        return trade(`h-${i}`, i, pools[i % pools.length]!, evenPrice(i) + 2n * BigInt(k + 1));
      });
      const gone = `h-${shared(k * 53 + seed * 101, historyN)}`;
      await app.writeBlock({ deleteTrades: [gone], trades: [...fresh, ...updated] });
      blocks += 1;
    }
  })();
  return {
    get blocks() {
      return blocks;
    },
    async stop() {
      running = false;
      await done;
    },
  };
}

async function ponderStatus(port: number): Promise<Record<string, unknown> | null> {
  const s = await call(port, 'GET', '/status');
  return (s.body.ponder as Record<string, unknown> | null) ?? null;
}

describe('following Ponder redeploys', () => {
  it('switches from deployment A to B under writes: the sink ends equal to B, no reader sees both', async () => {
    await using ctx = await createTestContext('ponder_follow');
    const historyN = Number(process.env.SLOTLINE_TEST_SWITCH_TRADES ?? 100_000);
    const pools = Array.from({ length: 5 }, (_, i) => makePool(i));
    const { a: historyA, b: historyB } = histories(historyN, pools);

    const A = await new PonderDeployment(ctx.source, { schema: 'app_a' }).create();
    await A.backfill(pools, historyA);
    await A.markReady();
    await A.startRealtime();
    await A.publishViews(VIEWS);

    const { c, port } = await startWithHttp(ctx, {
      SLOTLINE_PONDER_VIEWS_SCHEMA: VIEWS,
      SLOTLINE_PONDER_POLL_MS: '200',
      SLOTLINE_LOG_LEVEL: 'info',
    });
    await using _c = c;
    const aWriter = realtime(A, 'alive', pools, historyN);
    await waitFor(async () => (await deploymentMarks(ctx)).a > historyN / 20 || undefined, {
      timeoutMs: 120_000,
      what: "deployment A's history in the sink",
    });
    expect((await ponderStatus(port))?.schema).toBe('app_a');

    // Deployment B: a new schema, re-indexed from scratch while A keeps streaming.
    const B = await new PonderDeployment(ctx.source, { schema: 'app_b' }).create();
    const poolsB = pools.map((p) => ({ ...p, volume: String(7n * WEI) }));
    await B.backfill(poolsB, historyB);
    expect((await deploymentMarks(ctx)).b).toBe(0);

    // Every reader query from here on sees one deployment or the other, never both.
    let reading = true;
    const seen = { a: 0, b: 0, mixed: 0, queries: 0 };
    const reader = (async () => {
      while (reading) {
        const m = await deploymentMarks(ctx);
        seen.queries += 1;
        if (m.a > 0 && m.b > 0) seen.mixed += 1;
        else if (m.a > 0) seen.a += 1;
        else if (m.b > 0) seen.b += 1;
      }
    })();

    await B.markReady();
    await B.startRealtime();
    const bWriter = realtime(B, 'blive', poolsB, historyN);
    const movedAt = Date.now();
    await B.publishViews(VIEWS);
    await waitFor(async () => (await deploymentMarks(ctx)).b > 0 || undefined, {
      timeoutMs: 180_000,
      what: "deployment B's rows in the sink",
    });
    const visibleMs = Date.now() - movedAt;
    // A keeps writing a little after the switch, then stops (its changes are not B's).
    const aBlocks = aWriter.blocks;
    await waitFor(async () => aWriter.blocks > aBlocks + 5 || undefined, {
      timeoutMs: 30_000,
      what: 'A writing after the switch',
    });
    await aWriter.stop();
    const bBlocks = bWriter.blocks;
    await waitFor(async () => bWriter.blocks > bBlocks + 5 || undefined, {
      timeoutMs: 30_000,
      what: 'B writing after the switch',
    });
    await bWriter.stop();
    reading = false;
    await reader;

    const want = await B.trades();
    await waitFor(async () => (await sinkTrades(ctx.sink)).length === want.length || undefined, {
      timeoutMs: 60_000,
      what: `B's ${want.length} trades in the sink`,
    });
    expect(await sinkTrades(ctx.sink)).toEqual(want);
    expect(seen.mixed).toBe(0);
    expect(seen.a).toBeGreaterThan(0);
    expect(seen.b).toBeGreaterThan(0);

    await waitReady(port);
    const status = await ponderStatus(port);
    expect(status).toMatchObject({
      viewsSchema: VIEWS,
      schema: 'app_b',
      viewsPointAt: 'app_b',
      switching: false,
    });
    const last = status?.lastSwitch as Record<string, number | string>;
    expect(last).toMatchObject({ from: 'app_a', to: 'app_b' });
    // B's realtime writes took both paths: before the switch's snapshot in the copy, after it in the stream.
    const paths = await ctx.sink.query<{ copied: string; streamed: string }>(
      `SELECT count(*) FILTER (WHERE source_lsn = $1::pg_lsn)::text AS copied,
              count(*) FILTER (WHERE source_lsn > $1::pg_lsn)::text AS streamed
         FROM analytics_trades WHERE trade_id LIKE 'blive-%'`,
      [last.lsn],
    );
    expect(Number(paths.rows[0]?.copied)).toBeGreaterThan(0);
    expect(Number(paths.rows[0]?.streamed)).toBeGreaterThan(0);
    // Rows equal in both deployments were not rewritten: they keep A's generation.
    const gens = await ctx.sink.query<{ g: number; n: string; changed: string }>(
      `SELECT source_generation AS g, count(*)::text AS n,
              count(*) FILTER (WHERE trade_id NOT LIKE 'h-%')::text AS changed
         FROM analytics_trades GROUP BY 1 ORDER BY 1`,
    );
    expect(gens.rows.length).toBe(2);
    expect(gens.rows[0]?.changed).toBe('0');
    expect(Number(gens.rows[0]?.n)).toBeGreaterThan(historyN / 2);
    const pub = await ctx.source.query<{ schemaname: string }>(
      'SELECT DISTINCT schemaname FROM pg_publication_tables WHERE pubname = $1',
      [ctx.publication],
    );
    expect(pub.rows).toEqual([{ schemaname: 'app_b' }]);
    const metrics = (await call(port, 'GET', '/metrics')).text;
    expect(metrics).toMatch(/slotline_ponder_deployment_info\{schema="app_b"\} 1/);
    expect(metrics).toMatch(/slotline_ponder_views_mismatch 0/);
    expect(metrics).toMatch(/slotline_ponder_switches_total 1/);
    console.log(
      `[ponder-follow] switch of ${historyN} trades: ${String(last.durationMs)} ms in the connector ` +
        `(${String(last.rowsCopied)} rows copied, ${String(last.tradesWritten)} written, ${String(last.tradesRemoved)} removed, ` +
        `${String(last.tradesKept)} kept); B visible to readers ${visibleMs} ms after the views moved; ` +
        `${seen.queries} reader queries (${seen.a} saw A, ${seen.b} saw B, ${seen.mixed} mixed)`,
    );
    // The phases of the switch (prepare, copy, reconcile), from the connector's log.
    console.log(c.lines.filter((l) => l.includes('deployment switch: committed')).join('\n'));
    expect((await c.stop()).code, c.output()).toBe(0);
  });

  it('follows redeploys as the roles of sql/roles, with no superuser after the first install, also one made while it was down', async () => {
    const suffix = randomBytes(4).toString('hex');
    const [ponderRole, sourceRole, sinkRole] = ['ponder', 'slotline_src', 'slotline_snk'].map(
      (r) => `${r}_${suffix}`,
    ) as [string, string, string];
    const password = randomBytes(18).toString('hex');
    const ctx = await createTestContext('ponder_follow_roles');
    const ponder = new pg.Pool({ connectionString: asRole(ctx.sourceUrl, ponderRole, password) });
    ponder.on('error', () => undefined);
    try {
      await ctx.source.query(`CREATE ROLE "${ponderRole}" LOGIN PASSWORD '${password}'`);
      await ctx.source.query(`GRANT CREATE ON DATABASE "${ctx.sourceDb}" TO "${ponderRole}"`);
      const pools = Array.from({ length: 3 }, (_, i) => makePool(i));
      const deploy = async (schema: string, n: number, changed: bigint) => {
        const app = await new PonderDeployment(ponder, { schema }).create();
        const trades = Array.from({ length: n }, (_, i) =>
          trade(`h-${i}`, i, pools[i % 3]!, evenPrice(i) + (i % 10 === 0 ? changed : 0n)),
        );
        await app.backfill(pools, trades);
        await app.markReady();
        await app.startRealtime();
        await app.publishViews(VIEWS);
        return app;
      };
      const A = await deploy('app_a', 500, 0n);

      // The first install, by a superuser: without follow=on, setup says what a redeploy needs.
      await psql(ctx.sourceUrl, 'sql/roles/source_role.sql', {
        role: sourceRole,
        password,
        publication: ctx.publication,
        schema: 'app_a',
      });
      await psql(ctx.sinkUrl, 'sql/roles/sink_role.sql', { role: sinkRole, password });
      const roles = {
        SLOTLINE_SOURCE_URL: asRole(ctx.sourceUrl, sourceRole, password),
        SLOTLINE_SINK_URL: asRole(ctx.sinkUrl, sinkRole, password),
        SLOTLINE_PONDER_VIEWS_SCHEMA: VIEWS,
        SLOTLINE_PONDER_POLL_MS: '200',
      };
      const refused = await runCommand(ctx.env(roles), ['setup']);
      expect(refused.code, refused.output).not.toBe(0);
      expect(refused.output).toMatch(/a redeploy cannot be followed/);
      expect(refused.output).toMatch(/sql\/roles\/source_role\.sql again with -v follow=on/);
      expect(refused.output).toMatch(/ALTER DEFAULT PRIVILEGES/);
      // Readable by hand, the deployment still cannot be left: setup names both grants.
      await ctx.source.query(`GRANT SELECT ON app_a._ponder_meta TO "${sourceRole}"`);
      const still = await runCommand(ctx.env(roles), ['setup']);
      expect(still.code, still.output).not.toBe(0);
      expect(still.output).toMatch(/a Ponder redeploy could not be followed without a superuser/);
      expect(still.output).toMatch(/EXECUTE on slotline\.follow_deployment/);
      expect(still.output).toMatch(/ALTER DEFAULT PRIVILEGES FOR ROLE/);
      await psql(ctx.sourceUrl, 'sql/roles/source_role.sql', {
        role: sourceRole,
        password,
        publication: ctx.publication,
        schema: 'app_a',
        follow: 'on',
      });
      const setup = await runCommand(ctx.env(roles), ['setup']);
      expect(setup.code, setup.output).toBe(0);

      const sinkIs = async (app: PonderDeployment, what: string) => {
        const want = await app.trades();
        await waitFor(
          async () =>
            JSON.stringify(await sinkTrades(ctx.sink)) === JSON.stringify(want) || undefined,
          { timeoutMs: 90_000, what },
        );
      };
      let run = await startWithHttp(ctx, roles);
      await sinkIs(A, 'deployment A in the sink');
      // From here on only Ponder's role acts: a redeploy into a new schema.
      const B = await deploy('app_b', 600, 1n);
      await sinkIs(B, 'deployment B in the sink, followed by the running connector');
      await waitFor(async () => (await ponderStatus(run.port))?.schema === 'app_b' || undefined, {
        timeoutMs: 10_000,
        what: '/status to name app_b',
      });
      expect((await run.c.stop()).code, run.c.output()).toBe(0);

      // Redeployed while the connector was down: it switches before it streams.
      const C = await deploy('app_c', 400, 3n);
      run = await startWithHttp(ctx, roles);
      await sinkIs(C, 'deployment C in the sink after a restart');
      await waitReady(run.port);
      const status = await ponderStatus(run.port);
      expect(status).toMatchObject({ schema: 'app_c', lastSwitch: { from: 'app_b', to: 'app_c' } });
      await C.writeBlock({ trades: [trade('h-live', 9, pools[0]!, evenPrice(9))] });
      await sinkIs(C, 'a live change of C');
      const facts = await ctx.source.query<{ rolsuper: boolean; owner: string }>(
        `SELECT r.rolsuper, p.pubowner::regrole::text AS owner
           FROM pg_roles r, pg_publication p WHERE r.rolname = $1 AND p.pubname = $2`,
        [sourceRole, ctx.publication],
      );
      expect(facts.rows[0]).toEqual({ rolsuper: false, owner: ponderRole });
      expect((await run.c.stop()).code, run.c.output()).toBe(0);
    } finally {
      await ponder.end().catch(() => undefined);
      await ctx[Symbol.asyncDispose]();
      await withClient(ctx.adminUrl, async (c) => {
        for (const role of [sourceRole, sinkRole, ponderRole])
          await c.query(`DROP ROLE IF EXISTS "${role}"`);
      });
    }
  });

  it('reads where the views point from the catalog, and says when they name no one deployment', async () => {
    await using ctx = await createTestContext('ponder_views');
    expect(await resolveViews(ctx.source, VIEWS)).toMatchObject({ kind: 'unresolved' });
    const A = await new PonderDeployment(ctx.source, { schema: 'app_a' }).create();
    await A.publishViews(VIEWS);
    expect(await resolveViews(ctx.source, VIEWS)).toEqual({
      kind: 'deployment',
      schema: 'app_a',
      ready: false,
    });
    await A.markReady();
    expect(await resolveViews(ctx.source, VIEWS)).toMatchObject({ schema: 'app_a', ready: true });
    // A view that selects from a table of another name, or two schemas at once, is no deployment.
    await new PonderDeployment(ctx.source, { schema: 'app_b' }).create();
    await ctx.source.query(`CREATE OR REPLACE VIEW ${VIEWS}.pools AS SELECT * FROM app_b.pools`);
    const mixed = await resolveViews(ctx.source, VIEWS);
    expect(mixed).toMatchObject({ kind: 'unresolved' });
    expect(mixed.kind === 'unresolved' && mixed.reason).toMatch(
      /do not select from one deployment/,
    );
  });
});
