/**
 * The connector's lifecycle seen from outside: a clean stop acknowledges
 * exactly its checkpoint, an operator's pause and resume cannot be lost behind
 * backpressure, and a sink that does not answer makes the connector wait, not
 * fail its liveness probe.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { expectSinkEqualsSource, expectSlotAtCheckpoint, positions } from '../harness/compare.js';
import { ADMIN_TOKEN, startWithHttp } from '../harness/connector.js';
import { createTestContext, type TestContext } from '../harness/context.js';
import { call } from '../harness/http.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
  type PonderPool,
} from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';

const STOPS = 20;

async function ponder(ctx: TestContext): Promise<PonderPool[]> {
  await createPonderTables(ctx.source);
  const pools = Array.from({ length: 3 }, (_, i) => makePool(i));
  await insertPools(ctx.source, 'public', pools);
  return pools;
}

/** Writes until stopped: trades while `trades()` says so, else rows of an unrelated table. */
function writer(ctx: TestContext, pools: PonderPool[], trades: () => boolean) {
  let writing = true;
  let next = 0;
  const done = (async () => {
    await ctx.source.query('CREATE TABLE IF NOT EXISTS unrelated (x integer)');
    while (writing) {
      if (trades()) {
        const rows = Array.from({ length: 10 }, () => makeTrade(next, pools[next++ % 3]!));
        await insertTrades(ctx.source, 'public', rows);
      } else {
        // WAL the slot does not publish: keepalives and idle acknowledgements go on.
        await ctx.source.query('INSERT INTO unrelated SELECT generate_series(1, 20)');
      }
      await sleep(5);
    }
  })();
  return {
    get trades() {
      return next;
    },
    async stop() {
      writing = false;
      await done;
    },
  };
}

/** A transaction on the sink holding analytics_trades: every sink write waits for it. */
async function blockSink(ctx: TestContext): Promise<pg.PoolClient> {
  const blocker = await ctx.sink.connect();
  await blocker.query('BEGIN');
  await blocker.query('LOCK TABLE analytics_trades IN ACCESS EXCLUSIVE MODE');
  return blocker;
}

async function pauseReasons(port: number): Promise<string[]> {
  const s = await call(port, 'GET', '/status');
  return (s.body.pauseReasons as string[] | undefined) ?? [];
}

describe('lifecycle', () => {
  it(`${STOPS} clean stops at random moments, idle and under load: confirmed_flush equals the checkpoint after each`, async () => {
    await using ctx = await createTestContext('stops');
    const pools = await ponder(ctx);
    let load = false;
    const w = writer(ctx, pools, () => load);
    const ends: string[] = [];
    try {
      for (let k = 0; k < STOPS; k++) {
        load = k % 2 === 1;
        const { c } = await startWithHttp(ctx, {
          SLOTLINE_BATCH_MAX_ROWS: '50',
          SLOTLINE_INFLIGHT_MAX_ROWS: '500',
        });
        await sleep(Math.floor(Math.random() * 600));
        const exit = await c.stop();
        expect(exit.code, c.output().slice(-3000)).toBe(0);
        const p = await positions(ctx);
        expect(p.checkpoint, `stop ${k + 1} (${load ? 'under load' : 'idle'})`).not.toBeNull();
        expect(p.confirmedFlush, `stop ${k + 1} (${load ? 'under load' : 'idle'})`).toBe(
          p.checkpoint,
        );
        ends.push(p.checkpoint!);
      }
    } finally {
      await w.stop();
    }
    // The last life streams what is left; nothing was lost or doubled by the stops.
    const { c } = await startWithHttp(ctx);
    await expectSinkEqualsSource(ctx);
    await expectSlotAtCheckpoint(ctx);
    expect((await c.stop()).code).toBe(0);
    console.info(
      `clean stops: ${STOPS}, each with confirmed_flush = checkpoint (last ${ends.at(-1)}); ${w.trades} trades`,
    );
  });

  it('an operator resume while the queue is full resumes once the sink drains', async () => {
    await using ctx = await createTestContext('resume_full');
    const pools = await ponder(ctx);
    const { c, port } = await startWithHttp(ctx, {
      SLOTLINE_BATCH_MAX_ROWS: '50',
      SLOTLINE_INFLIGHT_MAX_ROWS: '200',
    });
    const blocker = await blockSink(ctx);
    try {
      for (let t = 0; t < 20; t++)
        await insertTrades(
          ctx.source,
          'public',
          Array.from({ length: 50 }, (_, i) => makeTrade(t * 50 + i, pools[i % 3]!)),
        );
      await waitFor(async () => (await pauseReasons(port)).includes('backpressure'), {
        timeoutMs: 30_000,
        what: 'backpressure to pause the stream',
      });
      const auth = { token: ADMIN_TOKEN };
      expect((await call(port, 'POST', '/admin/pause', auth)).status).toBe(200);
      expect(await pauseReasons(port)).toEqual(['backpressure', 'operator']);
      expect((await call(port, 'POST', '/admin/resume', auth)).status).toBe(200);
      expect(await pauseReasons(port)).toEqual(['backpressure']);
    } finally {
      await blocker.query('COMMIT');
      blocker.release();
    }
    await expectSinkEqualsSource(ctx);
    await waitFor(async () => (await pauseReasons(port)).length === 0, {
      timeoutMs: 30_000,
      what: 'the stream to read again',
    });
    await insertTrades(ctx.source, 'public', [makeTrade(5000, pools[0]!)]);
    await expectSinkEqualsSource(ctx);
    expect((await call(port, 'GET', '/status')).body.paused).toBe(false);
    expect((await c.stop()).code).toBe(0);
  });

  it('liveness stays healthy while the sink does not answer under load, for twice its timeout', async () => {
    await using ctx = await createTestContext('live_sink_down');
    const pools = await ponder(ctx);
    const timeoutMs = 2000;
    const { c, port } = await startWithHttp(ctx, {
      SLOTLINE_LIVENESS_TIMEOUT_MS: String(timeoutMs),
      SLOTLINE_BATCH_MAX_ROWS: '50',
      SLOTLINE_INFLIGHT_MAX_ROWS: '200',
    });
    const w = writer(ctx, pools, () => true);
    const blocker = await blockSink(ctx);
    let probes = 0;
    try {
      await waitFor(async () => (await pauseReasons(port)).includes('backpressure'), {
        timeoutMs: 30_000,
        what: 'backpressure to pause the stream',
      });
      const until = Date.now() + 2 * timeoutMs + 500;
      while (Date.now() < until) {
        const live = await call(port, 'GET', '/healthz');
        expect(live.status, live.text).toBe(200);
        probes++;
        await sleep(100);
      }
    } finally {
      await blocker.query('COMMIT');
      blocker.release();
      await w.stop();
    }
    await expectSinkEqualsSource(ctx);
    expect((await call(port, 'GET', '/healthz')).status).toBe(200);
    expect(probes).toBeGreaterThan(10);
    expect((await c.stop()).code).toBe(0);
  });

  it('a publication dropped under the running connector: not ready, naming the fix, alerting, no crash loop', async () => {
    await using ctx = await createTestContext('pub_dropped');
    const pools = await ponder(ctx);
    const { c, port } = await startWithHttp(ctx);
    await ctx.source.query(`DROP PUBLICATION ${ctx.publication}`);
    await insertTrades(ctx.source, 'public', [makeTrade(1, pools[0]!)]);
    await waitFor(
      async () => {
        const r = await call(port, 'GET', '/readyz');
        return r.status === 503 && /publication/.test(String(r.body.reason));
      },
      { timeoutMs: 30_000, what: '/readyz to say the publication is gone' },
    );
    await waitFor(
      async () => /slotline_publication_problem 1/.test((await call(port, 'GET', '/metrics')).text),
      { timeoutMs: 30_000, what: 'slotline_publication_problem 1' },
    );
    // Still alive and answering after a few retries: it waits for an operator.
    await sleep(3000);
    expect(c.proc.exitCode).toBeNull();
    expect((await call(port, 'GET', '/healthz')).status).toBe(200);
    expect((await c.stop()).code).toBe(0);
  });
});
