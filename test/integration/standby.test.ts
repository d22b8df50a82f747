/**
 * Two replicas, one leader and one hot standby, as the Deployment runs them:
 * calls about the deployment mean the same whichever replica receives them,
 * the operator's pause survives a failover, and a standby takes over after the
 * leader is killed or cut off from the source, without a trade lost or doubled.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startConnector, type ConnectorProcess } from '../harness/connector.js';
import { createTestContext, type TestContext } from '../harness/context.js';
import { expectSinkEqualsSource, expectSlotAtCheckpoint } from '../harness/compare.js';
import { type Answer, call, freePort, waitReady } from '../harness/http.js';
import { startProxy } from '../harness/proxy.js';
import { FAST } from '../harness/settings.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
  type PonderPool,
} from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';

/** docs/operations.md's bound for a standby to stream once the server has freed the slot. */
const TAKEOVER_BOUND_MS = 10_000;
const TOKEN = ADMIN_TOKEN;
const SERVED_BY = 'x-slotline-served-by';

const leaderGauge = async (port: number) =>
  Number(/^slotline_leader (\d+)/m.exec((await call(port, 'GET', '/metrics')).text)?.[1]);
const status = async (port: number) => (await call(port, 'GET', '/status', { token: TOKEN })).body;
/** Transactions the replica on `port` has streamed (it must lead: a standby passes the call on). */
const transactions = async (port: number) =>
  Number((await call(port, 'GET', '/api/sync/stats')).body.transactions);
const addressOf = (port: number) => `http://127.0.0.1:${port}`;

async function ponder(ctx: TestContext): Promise<PonderPool[]> {
  await createPonderTables(ctx.source);
  const pools = [makePool(0), makePool(1)];
  await insertPools(ctx.source, 'public', pools);
  await insertTrades(
    ctx.source,
    'public',
    Array.from({ length: 50 }, (_, i) => makeTrade(i, pools[i % 2]!)),
  );
  return pools;
}

/** One replica with its HTTP port, the admin token and its advertised address. */
function replica(
  ctx: TestContext,
  port: number,
  extra: Record<string, string> = {},
): ConnectorProcess {
  return startConnector(
    ctx.env({
      ...FAST,
      SLOTLINE_HTTP_PORT: String(port),
      SLOTLINE_ADMIN_TOKEN: TOKEN,
      SLOTLINE_ADVERTISE_URL: addressOf(port),
      SLOTLINE_STANDBY_POLL_MS: '250',
      SLOTLINE_VERIFY_LOOKBACK_SECONDS: '0',
      ...extra,
    }),
  );
}

/** Trades written to the source continuously (from k on) until stopped. */
function writer(ctx: TestContext, pools: PonderPool[], from: number) {
  let writing = true;
  let k = from;
  const done = (async () => {
    while (writing) {
      await insertTrades(
        ctx.source,
        'public',
        Array.from({ length: 10 }, () => makeTrade(k++, pools[k % 2]!)),
      );
      await sleep(10);
    }
  })();
  return {
    async stop() {
      writing = false;
      await done;
    },
  };
}

/** The server sessions of the leader that hold the slot and the leader lock. */
async function holders(ctx: TestContext): Promise<number[]> {
  const r = await ctx.source.query<{ pid: number }>(
    `SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL
     UNION
     SELECT pid FROM pg_locks
      WHERE locktype = 'advisory' AND granted
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [ctx.slot],
  );
  return r.rows.map((x) => x.pid);
}

/** Waits until the server has ended every one of `pids`; returns when it saw that. */
async function freedAt(ctx: TestContext, pids: number[], timeoutMs: number): Promise<number> {
  await waitFor(
    async () => {
      const r = await ctx.source.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ANY($1::int[])`,
        [pids],
      );
      return r.rows[0]!.n === 0;
    },
    {
      timeoutMs,
      intervalMs: 50,
      what: `the server to end the leader's sessions ${pids.join(', ')}`,
    },
  );
  return Date.now();
}

/** Waits until the replica on `port` streams; returns when it did. */
async function streamingAt(port: number, timeoutMs: number): Promise<number> {
  await waitFor(async () => (await status(port)).phase === 'streaming', {
    timeoutMs,
    intervalMs: 50,
    what: `the replica on ${port} to stream`,
  });
  return Date.now();
}

describe('hot standby', () => {
  it('takes over within the bound after the leader is SIGKILLed; no trade lost or doubled', async () => {
    await using ctx = await createTestContext('standby');
    const pools = await ponder(ctx);
    const [pa, pb] = [await freePort(), await freePort()];
    await using a = replica(ctx, pa);
    await waitReady(pa);
    await expectSlotAtCheckpoint(ctx);
    await using b = replica(ctx, pb);
    await waitReady(pb, { standby: true });
    expect((await call(pb, 'GET', '/readyz')).body.reason).toBe('standby');
    await waitFor(async () => (await leaderGauge(pa)) === 1 || undefined, {
      timeoutMs: 5000,
      what: 'leader gauge 1',
    });
    expect(await leaderGauge(pb)).toBe(0);

    const w = writer(ctx, pools, 1000);
    try {
      await waitFor(async () => (await transactions(pa)) > 5, {
        timeoutMs: 30_000,
        what: 'the leader to stream the writer’s trades',
      });
      const pids = await holders(ctx);
      expect(pids).toHaveLength(2);
      a.kill('SIGKILL');
      const killed = Date.now();
      const freed = await freedAt(ctx, pids, 30_000);
      const streams = await streamingAt(pb, TAKEOVER_BOUND_MS * 3);
      console.log(
        `SIGKILL: the server freed the slot and the lock ${freed - killed} ms after the kill; ` +
          `the standby streamed ${streams - freed} ms later (${streams - killed} ms in all)`,
      );
      expect(streams - freed).toBeLessThan(TAKEOVER_BOUND_MS);
      await waitFor(async () => (await transactions(pb)) > 5, {
        timeoutMs: 30_000,
        what: 'the new leader to stream the writer’s trades',
      });
    } finally {
      await w.stop();
    }
    await expectSinkEqualsSource(ctx, { timeoutMs: 30_000 });
    await expectSlotAtCheckpoint(ctx);
    expect((await b.stop()).code, b.output()).toBe(0);
  });

  it('answers the same admin and sync calls through either replica: the leader carries them out', async () => {
    await using ctx = await createTestContext('standby_calls');
    await ponder(ctx);
    const [pa, pb] = [await freePort(), await freePort()];
    await using _a = replica(ctx, pa);
    await waitReady(pa);
    await using _b = replica(ctx, pb);
    await waitReady(pb, { standby: true });
    await expectSinkEqualsSource(ctx);
    const leader = addressOf(pa);
    const ok = (a: Answer, want: number, what: string) => {
      expect(a.status, `${what}: ${a.text}`).toBe(want);
      expect(a.headers.get(SERVED_BY), what).toBe(leader);
      return a.body;
    };

    for (const port of [pa, pb]) {
      const via = port === pa ? 'the leader' : 'the standby';
      const health = ok(await call(port, 'GET', '/api/sync/health'), 200, `health via ${via}`);
      expect(health).toMatchObject({
        isHealthy: true,
        status: 'healthy',
        recommendation: 'HEALTHY',
      });
      const stats = ok(await call(port, 'GET', '/api/sync/stats'), 200, `stats via ${via}`);
      expect(stats.changes).toBeGreaterThan(0);

      const run = ok(
        await call(port, 'POST', '/api/sync/run', { token: TOKEN, json: {} }),
        200,
        `sync run via ${via}`,
      );
      expect(run).toMatchObject({ success: true, errors: 0, total: 50 });

      const force = ok(
        await call(port, 'POST', '/api/sync/force', { token: TOKEN, json: { fromTimestamp: 0 } }),
        202,
        `sync force via ${via}`,
      );
      await waitFor(
        async () => {
          const b = (await status(pa)).backfill as { id: number; state: string } | null;
          return b !== null && b.id === force.id && b.state === 'done';
        },
        { timeoutMs: 30_000, what: `the backfill started via ${via} to finish` },
      );

      ok(await call(port, 'GET', '/admin/dead-letters', { token: TOKEN }), 200, `list via ${via}`);
      ok(
        await call(port, 'POST', '/admin/dead-letters/retry', {
          token: TOKEN,
          json: { reason: 'unknown_pool' },
        }),
        200,
        `dead-letter retry via ${via}`,
      );
      ok(
        await call(port, 'POST', '/admin/dead-letters/purge', { token: TOKEN, json: {} }),
        200,
        `purge via ${via}`,
      );
      const paused = ok(
        await call(port, 'POST', '/admin/pause', { token: TOKEN }),
        200,
        `pause via ${via}`,
      );
      expect(paused.paused).toBe(true);
      expect(await status(pa)).toMatchObject({ paused: true });
      // Paused, the slot settles at the checkpoint; a reset there is a no-op (or a short replay,
      // had an acknowledgement read just before the pause moved it on since).
      const checkpoint = (await expectSlotAtCheckpoint(ctx)).checkpoint as string;
      const reset = ok(
        await call(port, 'POST', '/admin/lsn-reset', { token: TOKEN, json: { lsn: checkpoint } }),
        200,
        `lsn reset via ${via}`,
      );
      expect(reset).toMatchObject({ to: checkpoint });
      expect(['noop', 'replay']).toContain(reset.mode);
      await waitFor(async () => (await status(pa)).phase === 'streaming', {
        timeoutMs: 30_000,
        what: 'the leader to stream again after the reset',
      });
      ok(await call(port, 'POST', '/admin/resume', { token: TOKEN }), 200, `resume via ${via}`);
      expect(await status(pa)).toMatchObject({ paused: false });
    }
    // The token is checked by the replica that receives the call, before anything is forwarded.
    expect((await call(pb, 'POST', '/admin/pause')).status).toBe(401);
    expect(await status(pa)).toMatchObject({ paused: false, phase: 'streaming' });
    // What each replica is stays its own.
    expect(await status(pb)).toMatchObject({ phase: 'standby', leading: false, paused: false });
    expect((await call(pb, 'GET', '/readyz')).body.reason).toBe('standby');
    await expectSinkEqualsSource(ctx);
  });

  it('keeps a pause given to either replica across failovers, until a resume through either', async () => {
    await using ctx = await createTestContext('standby_pause');
    const pools = await ponder(ctx);
    const [pa, pb] = [await freePort(), await freePort()];
    await using a = replica(ctx, pa);
    await waitReady(pa);
    await using b = replica(ctx, pb);
    await waitReady(pb, { standby: true });
    await expectSinkEqualsSource(ctx);

    // Paused through the standby: the leader pauses, and so does the deployment.
    expect((await call(pb, 'POST', '/admin/pause', { token: TOKEN })).status).toBe(200);
    expect(await status(pa)).toMatchObject({ paused: true });
    await insertTrades(
      ctx.source,
      'public',
      Array.from({ length: 20 }, (_, i) => makeTrade(100 + i, pools[i % 2]!)),
    );
    a.kill('SIGKILL');
    await streamingAt(pb, 60_000);
    expect(await status(pb)).toMatchObject({ paused: true, pauseReasons: ['operator'] });
    expect((await call(pb, 'GET', '/readyz')).body.reason).toBe(
      'streaming (paused by an operator)',
    );

    // Resumed through the new standby (the old leader, restarted).
    await using a2 = replica(ctx, pa);
    await waitReady(pa, { standby: true });
    const resumed = await call(pa, 'POST', '/admin/resume', { token: TOKEN });
    expect(resumed.status, resumed.text).toBe(200);
    expect(resumed.headers.get(SERVED_BY)).toBe(addressOf(pb));
    await expectSinkEqualsSource(ctx);

    // Paused through the leader, which then stops cleanly: the next leader starts paused.
    expect((await call(pb, 'POST', '/admin/pause', { token: TOKEN })).status).toBe(200);
    await insertTrades(
      ctx.source,
      'public',
      Array.from({ length: 20 }, (_, i) => makeTrade(200 + i, pools[i % 2]!)),
    );
    expect((await b.stop()).code, b.output()).toBe(0);
    await streamingAt(pa, 60_000);
    expect(await status(pa)).toMatchObject({ paused: true, pauseReasons: ['operator'] });
    expect((await call(pa, 'POST', '/admin/resume', { token: TOKEN })).status).toBe(200);
    await expectSinkEqualsSource(ctx);
    await expectSlotAtCheckpoint(ctx);
    expect((await a2.stop()).code, a2.output()).toBe(0);
  });

  it('takes over within the bound after the leader is cut off from the source; the old leader is fenced', async () => {
    await using ctx = await createTestContext('standby_partition');
    const pools = await ponder(ctx);
    const target = new URL(ctx.sourceUrl);
    await using proxy = await startProxy({ host: target.hostname, port: Number(target.port) });
    const viaProxy = new URL(ctx.sourceUrl);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    const [pa, pb] = [await freePort(), await freePort()];
    // The default SLOTLINE_DEAD_PEER_TIMEOUT_MS (10 s) is what is measured.
    await using a = replica(ctx, pa, { SLOTLINE_SOURCE_URL: viaProxy.toString() });
    await waitReady(pa);
    await using b = replica(ctx, pb);
    await waitReady(pb, { standby: true });
    await expectSinkEqualsSource(ctx);

    const w = writer(ctx, pools, 1000);
    try {
      await waitFor(async () => (await transactions(pa)) > 5, {
        timeoutMs: 30_000,
        what: 'the leader to stream the writer’s trades',
      });
      const pids = await holders(ctx);
      expect(pids).toHaveLength(2);
      proxy.freeze();
      const cut = Date.now();
      const freed = await freedAt(ctx, pids, 60_000);
      const streams = await streamingAt(pb, TAKEOVER_BOUND_MS * 3);
      console.log(
        `partition: the server ended the cut-off leader's sessions ${freed - cut} ms after the cut; ` +
          `the standby streamed ${streams - freed} ms later (${streams - cut} ms in all)`,
      );
      expect(streams - freed).toBeLessThan(TAKEOVER_BOUND_MS);
      // The cut-off leader no longer says it streams (it hears nothing from the server).
      await waitFor(async () => (await status(pa)).phase !== 'streaming', {
        timeoutMs: 30_000,
        what: 'the cut-off leader to stop saying it streams',
      });
      await waitFor(async () => (await transactions(pb)) > 5, {
        timeoutMs: 30_000,
        what: 'the new leader to stream the writer’s trades',
      });
    } finally {
      await w.stop();
    }
    // The partition heals: the old leader finds another replica leads, and exits.
    proxy.thaw();
    const exit = await waitFor(async () => a.proc.exitCode !== null && (await a.exited), {
      timeoutMs: 60_000,
      what: 'the old leader to exit',
    });
    expect(exit.code, a.output()).toBe(1);
    expect(a.output()).toMatch(/"code":"leadership_lost"/);
    await expectSinkEqualsSource(ctx, { timeoutMs: 30_000 });
    await expectSlotAtCheckpoint(ctx);
    expect((await b.stop()).code, b.output()).toBe(0);
  });
});
