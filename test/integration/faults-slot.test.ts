/**
 * The slot taken away: dropped by someone else, and invalidated because it
 * fell behind max_slot_wal_keep_size (wal_status 'lost'). The connector says
 * so clearly, naming the recovery, and shows it in its metrics; the documented
 * recovery (`slotline setup --resnapshot`, then `run`) ends with the sink equal
 * to the source and verify clean. Own cluster: a small max_slot_wal_keep_size
 * would endanger other tests' slots.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { expectSinkEqualsSource, expectSlotAtCheckpoint } from '../harness/compare.js';
import { runCommand, startConnector, type ConnectorProcess } from '../harness/connector.js';
import type { TestContext } from '../harness/context.js';
import { call, freePort, waitReady } from '../harness/http.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
  type PonderPool,
} from '../harness/ponder.js';
import { FAST } from '../harness/settings.js';
import { createSplitContext } from '../harness/split-context.js';
import { expectVerifyClean } from '../harness/verify.js';
import { waitFor } from '../harness/wait.js';

let cluster: Cluster;

beforeAll(async () => {
  cluster = await startCluster({ extraConf: { max_slot_wal_keep_size: '32MB' } });
});

afterAll(async () => {
  await cluster?.[Symbol.asyncDispose]();
});

const trade = (pools: PonderPool[], k: number) =>
  makeTrade(k, pools[k % pools.length]!, { timestamp: 1_700_000_000 + k * 11 });

async function streaming(name: string) {
  const ctx = await createSplitContext(name, cluster, cluster);
  await createPonderTables(ctx.source);
  const pools = [makePool(0), makePool(1)];
  await insertPools(ctx.source, 'public', pools);
  await insertTrades(
    ctx.source,
    'public',
    Array.from({ length: 300 }, (_, k) => trade(pools, k)),
  );
  const port = await freePort();
  const env = ctx.env({ ...FAST, SLOTLINE_HTTP_PORT: String(port) });
  const c = startConnector(env);
  await waitReady(port);
  await expectSinkEqualsSource(ctx);
  return { ctx, pools, port, env, c };
}

const metric = async (port: number, line: RegExp) =>
  line.test((await call(port, 'GET', '/metrics').catch(() => ({ text: '' }))).text);

/** `slotline setup --resnapshot`, then `run`: the documented recovery, ending with verify clean. */
async function recover(ctx: TestContext, env: Record<string, string>, port: number) {
  const setup = await runCommand(env, ['setup', '--resnapshot']);
  expect(setup.code, setup.output).toBe(0);
  const c = startConnector(env);
  await waitReady(port);
  await expectSinkEqualsSource(ctx);
  await expectSlotAtCheckpoint(ctx);
  const r = await expectVerifyClean(ctx, { minRows: 300 });
  expect((await c.stop()).code, c.output()).toBe(0);
  return r;
}

async function exitOf(c: ConnectorProcess, timeoutMs = 30_000) {
  const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
  try {
    return await c.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** A connector waiting for the operator: not ready, the reason names the recovery, the metric shows why. */
async function expectWaiting(port: number, metricLine: RegExp) {
  await waitFor(() => metric(port, metricLine), { timeoutMs: 20_000, what: String(metricLine) });
  const ready = await waitFor(
    async () => {
      const a = await call(port, 'GET', '/readyz');
      return /slotline setup --resnapshot/.test(String(a.body.reason)) ? a : undefined;
    },
    { timeoutMs: 20_000, what: '/readyz to name the recovery' },
  );
  expect(ready.status).toBe(503);
  expect((await call(port, 'GET', '/healthz')).status).toBe(200);
  const status = await call(port, 'GET', '/status');
  expect(status.body.lastError).toMatch(/slotline setup --resnapshot/);
}

describe('faults: the slot', () => {
  it('dropped by someone else under a running connector: it stops naming the recovery; setup --resnapshot, run', async () => {
    const { ctx, pools, port, env, c } = await streaming('slot_dropped');
    await using _ctx = ctx;
    await using _c = c;
    // Someone ends the walsender and drops the slot before the connector reconnects.
    await waitFor(
      async () => {
        await ctx.source.query(
          `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active`,
          [ctx.slot],
        );
        const r = await ctx.source.query(
          `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active`,
          [ctx.slot],
        );
        return r.rowCount === 1 || undefined;
      },
      { timeoutMs: 20_000, intervalMs: 10, what: 'the slot to be dropped' },
    );
    // Trades the dropped slot will never deliver: the snapshot of the recovery must.
    await insertTrades(
      ctx.source,
      'public',
      Array.from({ length: 50 }, (_, k) => trade(pools, 300 + k)),
    );
    const exit = await exitOf(c);
    expect(exit.code, c.output()).toBe(1);
    expect(c.output()).toMatch(
      /"code":"slot_missing".*does not exist.*slotline setup --resnapshot/,
    );

    // Restarted (by its supervisor), it waits for the operator instead of crash-looping.
    const waiting = startConnector(env);
    await using _waiting = waiting;
    await expectWaiting(port, /^slotline_slot_exists 0$/m);
    expect(waiting.proc.exitCode).toBeNull();
    expect((await waiting.stop()).code, waiting.output()).toBe(0);

    // The documented recovery with the connector stopped: setup --resnapshot, then run.
    const r = await recover(ctx, env, port);
    console.info(
      `slot dropped: recovered by setup --resnapshot + run; verify clean over ${r.rows.source} trades`,
    );
  });

  it('invalidated (wal_status lost): the connector waits naming the recovery; setup --resnapshot heals it in place', async () => {
    const { ctx, pools, port, env, c } = await streaming('slot_lost');
    await using _ctx = ctx;
    expect((await c.stop()).code, c.output()).toBe(0);
    // While the connector is away, trades arrive and the server writes more WAL than
    // max_slot_wal_keep_size lets the slot hold; the next checkpoint invalidates it.
    await insertTrades(
      ctx.source,
      'public',
      Array.from({ length: 50 }, (_, k) => trade(pools, 300 + k)),
    );
    await ctx.source.query('CREATE TABLE filler (x int)');
    for (let i = 0; i < 4; i++) {
      await ctx.source.query('INSERT INTO filler VALUES (1)');
      await ctx.source.query('SELECT pg_switch_wal()');
    }
    await ctx.source.query('CHECKPOINT');
    const status = await ctx.source.query<{ wal_status: string }>(
      'SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1',
      [ctx.slot],
    );
    expect(status.rows[0]?.wal_status).toBe('lost');

    await using waiting = startConnector(env);
    await expectWaiting(port, /^slotline_slot_wal_status\{status="lost"\} 1$/m);
    expect(waiting.output()).toMatch(/"code":"slot_invalidated".*slotline setup --resnapshot/);
    expect(waiting.proc.exitCode).toBeNull();

    // The operator runs the recovery; the waiting connector takes the new slot's snapshot itself.
    const setup = await runCommand(env, ['setup', '--resnapshot']);
    expect(setup.code, setup.output).toBe(0);
    await waitReady(port);
    await expectSinkEqualsSource(ctx);
    await expectSlotAtCheckpoint(ctx);
    const r = await expectVerifyClean(ctx, { minRows: 350 });
    await waitFor(() => metric(port, /^slotline_slot_wal_status\{status="reserved"\} 1$/m), {
      timeoutMs: 20_000,
      what: 'wal_status reserved again',
    });
    console.info(
      `slot invalidated: healed in place by setup --resnapshot; verify clean over ${r.rows.source} trades`,
    );
    expect((await waiting.stop()).code, waiting.output()).toBe(0);
  });
});
