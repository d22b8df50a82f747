/**
 * The databases misbehave under a streaming connector: the sink restarted
 * (cleanly and by a crash), the source restarted (cleanly and by a crash, after
 * which its slot's confirmed flush may go back and transactions are streamed
 * again), and the sink frozen by SIGSTOP for longer than the source's
 * wal_sender_timeout. Source and sink are separate clusters, so the one that
 * is not under test keeps running. Each case ends with the sink equal to the
 * source, no duplicate, and verify clean.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { expectSinkEqualsSource, expectSlotAtCheckpoint, sinkCount } from '../harness/compare.js';
import { startConnector } from '../harness/connector.js';
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

const WAL_SENDER_TIMEOUT_S = 5;

let sourceCluster: Cluster;
let sinkCluster: Cluster;

beforeAll(async () => {
  [sourceCluster, sinkCluster] = await Promise.all([
    startCluster({ extraConf: { wal_sender_timeout: `${WAL_SENDER_TIMEOUT_S}s` } }),
    startCluster(),
  ]);
});

afterAll(async () => {
  await Promise.allSettled([
    sourceCluster?.[Symbol.asyncDispose](),
    sinkCluster?.[Symbol.asyncDispose](),
  ]);
});

async function prepared(name: string): Promise<{ ctx: TestContext; pools: PonderPool[] }> {
  const ctx = await createSplitContext(name, sourceCluster, sinkCluster);
  await createPonderTables(ctx.source);
  const pools = Array.from({ length: 3 }, (_, i) => makePool(i));
  await insertPools(ctx.source, 'public', pools);
  return { ctx, pools };
}

/**
 * Inserts (and now and then updates and deletes) trades until stopped; a
 * failed statement (the source is restarting) is retried after a pause.
 */
function startWriter(ctx: TestContext, pools: PonderPool[]) {
  let writing = true;
  let next = 0;
  let tx = 0;
  let failures = 0;
  const trade = (k: number) =>
    makeTrade(k, pools[k % pools.length]!, { timestamp: 1_700_000_000 + k * 5 });
  const done = (async () => {
    while (writing) {
      try {
        const rows = Array.from({ length: tx % 20 === 0 ? 100 : 5 }, (_, j) => trade(next + j));
        await insertTrades(ctx.source, 'public', rows);
        next += rows.length;
        tx++;
        if (tx % 9 === 0)
          await ctx.source.query('DELETE FROM order_book_trades WHERE id = $1', [
            trade(next - 17).id,
          ]);
        if (tx % 7 === 0)
          await ctx.source.query(
            'UPDATE order_book_trades SET quantity = quantity * 2 WHERE id = $1',
            [trade(next - 11).id],
          );
      } catch {
        failures++;
        await sleep(100);
      }
      await sleep(5);
    }
  })();
  return {
    get written() {
      return next;
    },
    get failures() {
      return failures;
    },
    async stop() {
      writing = false;
      await done;
    },
  };
}

/** pids of the cluster's postmaster and its children (the backends). */
function serverPids(cluster: Cluster): number[] {
  const postmaster = Number(
    readFileSync(join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0],
  );
  const children = readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === postmaster;
      } catch {
        return false;
      }
    })
    .map(Number);
  return [postmaster, ...children];
}

async function slotPid(ctx: TestContext): Promise<number | null> {
  const r = await ctx.source.query<{ pid: number | null }>(
    'SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1',
    [ctx.slot],
  );
  return r.rows[0]?.pid ?? null;
}

async function confirmedFlush(ctx: TestContext): Promise<string | null> {
  const r = await ctx.source.query<{ lsn: string | null }>(
    'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
    [ctx.slot],
  );
  return r.rows[0]?.lsn ?? null;
}

describe('faults: database servers', () => {
  it('the sink restarted mid-stream, cleanly and by a crash', async () => {
    const { ctx, pools } = await prepared('sink_restart');
    await using _ctx = ctx;
    await using c = startConnector(ctx.env(FAST));
    await expectSlotAtCheckpoint(ctx);
    const writer = startWriter(ctx, pools);
    const restarts: string[] = [];
    try {
      for (const mode of ['fast', 'immediate'] as const) {
        const had = await sinkCount(ctx.sink);
        await waitFor(async () => (await sinkCount(ctx.sink)) > had + 200, {
          timeoutMs: 20_000,
          what: 'trades streaming into the sink',
        }).catch((err: unknown) => {
          throw new Error(`${(err as Error).message}\n${c.output().slice(-4000)}`);
        });
        await sinkCluster.stop(mode);
        await sleep(1_000); // writes go on at the source meanwhile
        await sinkCluster.start();
        restarts.push(mode);
      }
      await sleep(1_000);
    } finally {
      await writer.stop();
    }
    await expectSinkEqualsSource(ctx, { timeoutMs: 60_000 });
    await expectSlotAtCheckpoint(ctx);
    const r = await expectVerifyClean(ctx, { minRows: 1 });
    console.info(
      `sink restarts: ${restarts.join(', ')}; ${writer.written} trades written, ${r.rows.source} at the end, verify clean`,
    );
    expect(c.proc.exitCode, c.output()).toBeNull();
    expect((await c.stop()).code, c.output()).toBe(0);
  });

  it('the source restarted mid-stream, cleanly and by a crash: replays are harmless', async () => {
    const { ctx, pools } = await prepared('source_restart');
    await using _ctx = ctx;
    await using c = startConnector(ctx.env(FAST));
    await expectSlotAtCheckpoint(ctx);
    const writer = startWriter(ctx, pools);
    const notes: string[] = [];
    try {
      for (const mode of ['fast', 'immediate'] as const) {
        const at = writer.written;
        await waitFor(async () => writer.written > at + 500 && (await sinkCount(ctx.sink)) > 0, {
          timeoutMs: 20_000,
          what: 'trades streaming',
        });
        const before = await confirmedFlush(ctx);
        await sourceCluster.stop(mode);
        await sourceCluster.start();
        // Read before the connector reconnects (it backs off at least 100 ms): a crash may
        // have lost the slot's latest confirmed flush, and the server then streams again from an older one.
        const after = await confirmedFlush(ctx).catch(() => null);
        notes.push(`${mode}: confirmed flush ${before} before, ${after} after restart`);
      }
      await sleep(1_000);
    } finally {
      await writer.stop();
    }
    await expectSinkEqualsSource(ctx, { timeoutMs: 60_000 });
    await expectSlotAtCheckpoint(ctx);
    const r = await expectVerifyClean(ctx, { minRows: 1 });
    console.info(
      `source restarts: ${notes.join('; ')}; ${writer.written} trades written (${writer.failures} writes failed during restarts), verify clean over ${r.rows.source}`,
    );
    expect(c.proc.exitCode, c.output()).toBeNull();
    expect((await c.stop()).code, c.output()).toBe(0);
  });

  it(`the sink frozen (SIGSTOP) for longer than wal_sender_timeout (${WAL_SENDER_TIMEOUT_S} s): the replication connection survives or recovers, nothing lost`, async () => {
    const { ctx, pools } = await prepared('sink_frozen');
    await using _ctx = ctx;
    const port = await freePort();
    // A small in-flight bound: the stream is paused (backpressure) during the freeze.
    await using c = startConnector(
      ctx.env({
        ...FAST,
        SLOTLINE_HTTP_PORT: String(port),
        SLOTLINE_BATCH_MAX_ROWS: '200',
        SLOTLINE_INFLIGHT_MAX_ROWS: '1000',
      }),
    );
    await waitReady(port);
    await expectSlotAtCheckpoint(ctx);
    const writer = startWriter(ctx, pools);
    let pidBefore: number | null;
    let pidAfter: number | null;
    const frozenMs = (WAL_SENDER_TIMEOUT_S + 3) * 1000;
    let pausedSeen = false;
    try {
      await waitFor(async () => (await sinkCount(ctx.sink)) > 300, {
        timeoutMs: 20_000,
        what: 'trades streaming into the sink',
      });
      pidBefore = await slotPid(ctx);
      const pids = serverPids(sinkCluster);
      for (const pid of pids) process.kill(pid, 'SIGSTOP');
      try {
        const until = Date.now() + frozenMs;
        while (Date.now() < until) {
          // The process is not wedged because a database is: liveness holds.
          expect((await call(port, 'GET', '/healthz')).status).toBe(200);
          const m = (await call(port, 'GET', '/metrics')).text;
          if (/^slotline_stream_paused 1$/m.test(m)) pausedSeen = true;
          await sleep(500);
        }
      } finally {
        for (const pid of pids) process.kill(pid, 'SIGCONT');
      }
      await sleep(1_000);
      pidAfter = await slotPid(ctx);
    } finally {
      await writer.stop();
    }
    await expectSinkEqualsSource(ctx, { timeoutMs: 60_000 });
    await expectSlotAtCheckpoint(ctx);
    const r = await expectVerifyClean(ctx, { minRows: 1 });
    const survived = pidBefore !== null && pidBefore === pidAfter;
    console.info(
      `sink frozen ${frozenMs} ms (wal_sender_timeout ${WAL_SENDER_TIMEOUT_S} s): replication connection ` +
        `${survived ? `survived (walsender pid ${pidBefore})` : `recovered (walsender pid ${pidBefore} → ${pidAfter})`}; ` +
        `${writer.written} trades written, verify clean over ${r.rows.source}`,
    );
    expect(pidAfter).not.toBeNull();
    // The in-flight queue filled: the stream was paused (backpressure) while the sink was stuck.
    expect(pausedSeen).toBe(true);
    expect(c.proc.exitCode, c.output()).toBeNull();
    expect((await c.stop()).code, c.output()).toBe(0);
  });
});
