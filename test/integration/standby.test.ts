import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { expectSinkEqualsSource, expectSlotAtCheckpoint } from '../harness/compare.js';
import { call, freePort, waitReady } from '../harness/http.js';
import { FAST } from '../harness/settings.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
} from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';

/** docs/operations.md's stated bound for a standby to take over after the leader dies. */
const TAKEOVER_BOUND_MS = 10_000;

const leaderGauge = async (port: number) =>
  Number(/^slotline_leader (\d+)/m.exec((await call(port, 'GET', '/metrics')).text)?.[1]);

describe('hot standby', () => {
  it('two replicas: one leads, the other takes over after SIGKILL; no trade lost or doubled', async () => {
    await using ctx = await createTestContext('standby');
    await createPonderTables(ctx.source);
    const pools = [makePool(0), makePool(1)];
    await insertPools(ctx.source, 'public', pools);
    const [pa, pb] = [await freePort(), await freePort()];
    const env = (port: number) =>
      ctx.env({ ...FAST, SLOTLINE_HTTP_PORT: String(port), SLOTLINE_STANDBY_POLL_MS: '250' });
    await using a = startConnector(env(pa));
    await waitReady(pa);
    await expectSlotAtCheckpoint(ctx);
    await using b = startConnector(env(pb));
    const standby = await waitFor(
      async () => (await call(pb, 'GET', '/readyz').catch(() => null)) ?? undefined,
      {
        timeoutMs: 30_000,
        what: 'the standby to answer',
      },
    );
    expect(standby.status).toBe(200);
    expect(standby.body.reason).toBe('standby');
    await waitFor(async () => (await leaderGauge(pa)) === 1 || undefined, {
      timeoutMs: 5000,
      what: 'leader gauge 1',
    });
    expect(await leaderGauge(pb)).toBe(0);

    let writing = true;
    let k = 0;
    const writer = (async () => {
      while (writing) {
        await insertTrades(
          ctx.source,
          'public',
          Array.from({ length: 10 }, () => makeTrade(k++, pools[k % 2]!)),
        );
        await sleep(10);
      }
    })();
    try {
      await sleep(1000);
      a.kill('SIGKILL');
      const killedAt = Date.now();
      await waitFor(async () => (await leaderGauge(pb)) === 1 || undefined, {
        timeoutMs: TAKEOVER_BOUND_MS * 2,
        intervalMs: 100,
        what: 'the standby to lead',
      });
      const tookOver = Date.now() - killedAt;
      console.log(`standby took over ${tookOver} ms after the leader was killed`);
      expect(tookOver).toBeLessThan(TAKEOVER_BOUND_MS);
      await sleep(1000);
    } finally {
      writing = false;
      await writer;
    }
    await expectSinkEqualsSource(ctx, { timeoutMs: 30_000 });
    await expectSlotAtCheckpoint(ctx);
    expect((await b.stop()).code, b.output()).toBe(0);
  });
});
