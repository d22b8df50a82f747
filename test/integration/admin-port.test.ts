/**
 * The HTTP surface as a cluster sees it: with SLOTLINE_ADMIN_PORT the admin
 * actions are off the port Prometheus scrapes, and what callers without the
 * token read never names hosts, ports or other internals.
 */
import { describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, runCommand, startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { expectSinkEqualsSource } from '../harness/compare.js';
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

const TOKEN = ADMIN_TOKEN;

describe('the HTTP surface in a cluster', () => {
  it('serves the admin actions only on SLOTLINE_ADMIN_PORT, and the scraped port still serves the rest', async () => {
    await using ctx = await createTestContext('admin_port');
    await createPonderTables(ctx.source);
    const pools = [makePool(0), makePool(1)];
    await insertPools(ctx.source, 'public', pools);
    await insertTrades(
      ctx.source,
      'public',
      Array.from({ length: 20 }, (_, i) => makeTrade(i, pools[i % 2]!)),
    );
    const [main, admin] = [await freePort(), await freePort()];
    const env = ctx.env({
      ...FAST,
      SLOTLINE_HTTP_PORT: String(main),
      SLOTLINE_ADMIN_PORT: String(admin),
      SLOTLINE_ADMIN_TOKEN: TOKEN,
    });
    await using c = startConnector(env);
    await waitReady(main);
    await expectSinkEqualsSource(ctx);

    expect((await call(main, 'GET', '/metrics')).text).toMatch(/^slotline_leader 1/m);
    expect((await call(main, 'GET', '/api/sync/health')).body).toMatchObject({ isHealthy: true });
    for (const [method, path] of [
      ['POST', '/admin/pause'],
      ['POST', '/api/sync/force'],
      ['POST', '/api/sync/run'],
      ['GET', '/admin/dead-letters'],
    ] as const) {
      const json = method === 'POST' ? { fromTimestamp: 0 } : undefined;
      const refused = await call(main, method, path, { token: TOKEN, json });
      expect(refused.status, `${method} ${path}`).toBe(404);
      expect(String(refused.body.error)).toMatch(/SLOTLINE_ADMIN_PORT/);
    }
    expect((await call(main, 'GET', '/status')).body.paused).toBe(false);

    expect((await call(admin, 'POST', '/admin/pause', { token: TOKEN })).status).toBe(200);
    expect((await call(main, 'GET', '/status')).body.paused).toBe(true);
    expect((await call(admin, 'POST', '/admin/resume', { token: TOKEN })).status).toBe(200);
    expect((await call(admin, 'POST', '/admin/pause')).status).toBe(401);
    // `slotline status` in the pod finds the admin listener by itself.
    const status = await runCommand(env, ['status']);
    expect(status.code, status.output).toBe(0);
    expect(status.output).toMatch(/"phase": "streaming"/);
    expect((await c.stop()).code, c.output()).toBe(0);
  });

  it('shows an error without the token as its code and fix, never the host and port it names', async () => {
    await using ctx = await createTestContext('error_exposure');
    await createPonderTables(ctx.source);
    const closed = await freePort();
    const sink = new URL(ctx.sinkUrl);
    sink.port = String(closed);
    const port = await freePort();
    await using c = startConnector(
      ctx.env({
        ...FAST,
        SLOTLINE_SINK_URL: sink.toString(),
        SLOTLINE_HTTP_PORT: String(port),
        SLOTLINE_ADMIN_TOKEN: TOKEN,
      }),
    );
    const internal = new RegExp(`ECONNREFUSED|${closed}`);
    const ready = await waitFor(
      async () => {
        const r = await call(port, 'GET', '/readyz').catch(() => null);
        return r?.status === 503 && /connection/.test(String(r.body.reason)) ? r : undefined;
      },
      { timeoutMs: 30_000, what: '/readyz to say a connection fails' },
    );
    expect(ready.body.reason).toBe('starting: connection: a database connection failed; retrying');
    for (const path of ['/readyz', '/status', '/api/sync/stats']) {
      const open = await call(port, 'GET', path);
      expect(open.text, path).not.toMatch(internal);
    }
    expect((await call(port, 'GET', '/status')).body.lastError).toBe(
      'connection: a database connection failed; retrying',
    );
    // The operator with the token sees what failed, as does the log.
    for (const path of ['/status', '/api/sync/stats']) {
      const detail = await call(port, 'GET', path, { token: TOKEN });
      expect(String(detail.body.lastError), path).toMatch(internal);
    }
    expect(c.output()).toMatch(internal);
  });
});
