/**
 * TimescaleDB on the sink in the states users meet (issue 11, items 10 and 13):
 * installed but not preloaded, and a second deployment in another sink schema.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand, startConnector } from '../harness/connector.js';
import { startCluster, timescaleAvailable, type Cluster } from '../harness/cluster.js';
import { expectSinkEqualsSource, expectSlotAtCheckpoint } from '../harness/compare.js';
import { FAST } from '../harness/settings.js';
import { createSplitContext } from '../harness/split-context.js';
import { createTestContext } from '../harness/context.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
} from '../harness/ponder.js';

const withTimescale = timescaleAvailable();
if (!withTimescale) console.warn('TimescaleDB is not installed here: sink-timescale tests skipped');

describe.skipIf(!withTimescale)('TimescaleDB installed but not preloaded (11.10)', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    // The extension files are present (the harness checked), the library is not preloaded.
    cluster = await startCluster({ extraConf: { shared_preload_libraries: '' } });
  });
  afterAll(async () => {
    await cluster?.[Symbol.asyncDispose]();
  });

  it('setup and run fall back to plain tables with a warning naming the fix, never crash', async () => {
    await using ctx = await createSplitContext('no_preload', cluster, cluster);
    await createPonderTables(ctx.source);
    const pool = makePool(0);
    await insertPools(ctx.source, 'public', [pool]);
    const env = ctx.env({ ...FAST, SLOTLINE_LOG_LEVEL: 'info' });
    const setup = await runCommand(env, ['setup']);
    expect(setup.code, setup.output).toBe(0);
    expect(setup.output).toMatch(/shared_preload_libraries/);
    expect(setup.output).not.toMatch(/Unhandled 'error' event/);
    const kind = await ctx.sink.query<{ relkind: string }>(
      `SELECT relkind FROM pg_class WHERE relname = 'analytics_trades'`,
    );
    expect(kind.rows).toEqual([{ relkind: 'r' }]);

    await using c = startConnector(env);
    await insertTrades(ctx.source, 'public', [makeTrade(0, pool), makeTrade(1, pool)]);
    await expectSinkEqualsSource(ctx, { timeoutMs: 30_000 });
    await expectSlotAtCheckpoint(ctx);
    expect((await c.stop()).code, c.output()).toBe(0);
  });

  it('a sink role that may not read shared_preload_libraries falls back too (CREATE EXTENSION fails FATAL)', async () => {
    await using ctx = await createSplitContext('no_preload_role', cluster, cluster);
    await createPonderTables(ctx.source);
    const role = `sink_owner_${ctx.slot.slice(-8)}`;
    await ctx.sink.query(`CREATE ROLE ${role} LOGIN PASSWORD 'pw'`);
    await ctx.sink.query(`ALTER DATABASE ${ctx.sinkDb} OWNER TO ${role}`);
    const sinkUrl = new URL(ctx.sinkUrl);
    sinkUrl.username = role;
    sinkUrl.password = 'pw';
    const env = ctx.env({ ...FAST, SLOTLINE_LOG_LEVEL: 'info', SLOTLINE_SINK_URL: sinkUrl.href });
    const setup = await runCommand(env, ['setup']);
    expect(setup.code, setup.output).toBe(0);
    expect(setup.output).toMatch(/CREATE EXTENSION failed.*shared_preload_libraries/);
    const ext = await ctx.sink.query(`SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'`);
    expect(ext.rowCount).toBe(0);
    await ctx.sink.query(`ALTER DATABASE ${ctx.sinkDb} OWNER TO CURRENT_USER`);
    await ctx.sink.query(`REASSIGN OWNED BY ${role} TO CURRENT_USER`);
    await ctx.sink.query(`DROP OWNED BY ${role}`);
  });
});

describe.skipIf(!withTimescale)('TimescaleDB and custom sink schemas (11.13)', () => {
  const hypertable = async (db: pg.Pool, schema: string) =>
    (
      await db.query(
        `SELECT 1 FROM timescaledb_information.hypertables
          WHERE hypertable_schema = $1 AND hypertable_name = 'analytics_trades'`,
        [schema],
      )
    ).rowCount;

  it('two deployments with different sink schemas on one sink database both get hypertables', async () => {
    await using a = await createTestContext('schema_a');
    await using b = await createTestContext('schema_b');
    for (const ctx of [a, b]) await createPonderTables(ctx.source);
    const first = await runCommand(a.env({ ...FAST, SLOTLINE_SINK_SCHEMA: 'alpha' }), ['setup']);
    expect(first.code, first.output).toBe(0);
    const envB = b.env({ ...FAST, SLOTLINE_SINK_URL: a.sinkUrl, SLOTLINE_SINK_SCHEMA: 'beta' });
    const second = await runCommand(envB, ['setup']);
    expect(second.code, second.output).toBe(0);
    expect(await hypertable(a.sink, 'alpha')).toBe(1);
    expect(await hypertable(a.sink, 'beta')).toBe(1);
  });

  it('an extension an earlier version installed into a custom sink schema is found from another', async () => {
    await using ctx = await createTestContext('schema_ext');
    await createPonderTables(ctx.source);
    await ctx.sink.query('CREATE SCHEMA alpha');
    await ctx.sink.query('CREATE EXTENSION timescaledb SCHEMA alpha');
    const r = await runCommand(ctx.env({ ...FAST, SLOTLINE_SINK_SCHEMA: 'beta' }), ['setup']);
    expect(r.code, r.output).toBe(0);
    expect(await hypertable(ctx.sink, 'beta')).toBe(1);
  });
});
