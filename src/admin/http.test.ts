import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../log.js';
import type { AdminControl, LeaderRoute } from './api.js';
import { FORWARDED_HEADER, SERVED_BY_HEADER } from './forward.js';
import { HttpServer } from './http.js';
import { createMetrics } from './metrics.js';

const TOKEN = 'unit-test-token-0123456789';
const log = createLogger({ level: 'silent' });

/** A replica's control surface: it records the calls it carries out itself. */
function control(name: string, leader: () => Promise<LeaderRoute>) {
  const calls: string[] = [];
  const done = (what: string) => async () => {
    calls.push(what);
    return { by: name, what };
  };
  const c: AdminControl = {
    self: `http://${name}`,
    liveness: () => ({ ok: true, reason: 'streaming' }),
    readiness: () => ({ ok: true, reason: name }),
    leader,
    status: async (authorized) => ({ by: name, authorized }),
    syncHealth: done('health'),
    syncStats: done('stats'),
    pause: done('pause'),
    resume: done('resume'),
    resetLsn: done('reset'),
    startBackfill: done('backfill'),
    cancelBackfill: done('cancel'),
    syncRun: done('run'),
    deadLetters: {
      list: done('dl-list'),
      show: done('dl-show'),
      retry: done('dl-retry'),
      discard: done('dl-discard'),
      purge: done('dl-purge'),
    },
  };
  return { c, calls };
}

const servers: HttpServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

async function serve(c: AdminControl, admin = true): Promise<number> {
  const s = new HttpServer({
    port: 0,
    host: '127.0.0.1',
    admin,
    adminToken: TOKEN,
    forwardTimeoutMs: 5000,
    control: c,
    metrics: createMetrics({ version: 'test', defaultMetrics: false }),
    log,
  });
  await s.start();
  servers.push(s);
  return s.port;
}

async function call(port: number, method: string, path: string, token?: string, json?: unknown) {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (json !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers,
    body: json === undefined ? undefined : JSON.stringify(json),
  });
  return {
    status: res.status,
    servedBy: res.headers.get(SERVED_BY_HEADER),
    body: (await res.json()) as Record<string, unknown>,
  };
}

/** A port where nothing listens. */
async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('HttpServer: calls about the deployment', () => {
  it('a standby forwards admin and sync calls to the leader, with the token, and passes its answer on', async () => {
    const leader = control('leader', async () => ({ at: 'here' }));
    const leaderPort = await serve(leader.c);
    const standby = control('standby', async () => ({
      at: 'leader',
      url: `http://127.0.0.1:${leaderPort}`,
    }));
    const port = await serve(standby.c);

    const pause = await call(port, 'POST', '/admin/pause', TOKEN);
    expect(pause).toEqual({
      status: 200,
      servedBy: 'http://leader',
      body: { by: 'leader', what: 'pause' },
    });
    const force = await call(port, 'POST', '/api/sync/force', TOKEN, { fromTimestamp: 5 });
    expect(force.status).toBe(202);
    expect(force.body.by).toBe('leader');
    expect((await call(port, 'GET', '/admin/dead-letters?reason=x', TOKEN)).body.by).toBe('leader');
    expect((await call(port, 'GET', '/api/sync/health')).body.by).toBe('leader');
    expect(leader.calls).toEqual(['pause', 'backfill', 'dl-list', 'health']);
    expect(standby.calls).toEqual([]);
    // What each replica is stays its own.
    expect((await call(port, 'GET', '/readyz')).body.reason).toBe('standby');
  });

  it('checks the token before forwarding anything', async () => {
    const leader = control('leader', async () => ({ at: 'here' }));
    const leaderPort = await serve(leader.c);
    const standby = control('standby', async () => ({
      at: 'leader',
      url: `http://127.0.0.1:${leaderPort}`,
    }));
    const port = await serve(standby.c);
    expect((await call(port, 'POST', '/admin/pause')).status).toBe(401);
    expect((await call(port, 'POST', '/admin/pause', 'wrong-token-0123456789')).status).toBe(401);
    expect(leader.calls).toEqual([]);
  });

  it('without a leader: an admin call is refused with 503 and a reason, an open one answered here', async () => {
    const standby = control('standby', async () => ({
      at: 'none',
      reason: 'no replica leads yet',
    }));
    const port = await serve(standby.c);
    expect(await call(port, 'POST', '/admin/pause', TOKEN)).toMatchObject({
      status: 503,
      body: { error: 'no replica leads yet' },
    });
    expect(await call(port, 'GET', '/api/sync/health')).toMatchObject({
      status: 200,
      servedBy: 'http://standby',
      body: { by: 'standby' },
    });
    expect(standby.calls).toEqual(['health']);
  });

  it('a leader that does not answer: 503 for an admin call, nothing done; an open one answered here', async () => {
    const dead = await closedPort();
    const standby = control('standby', async () => ({
      at: 'leader',
      url: `http://127.0.0.1:${dead}`,
    }));
    const port = await serve(standby.c);
    const a = await call(port, 'POST', '/admin/resume', TOKEN);
    expect(a.status).toBe(503);
    expect(a.body.error).toMatch(/did not answer \(ECONNREFUSED\); nothing was done/);
    expect((await call(port, 'GET', '/api/sync/stats')).body.by).toBe('standby');
    expect(standby.calls).toEqual(['stats']);
  });

  it('never passes a forwarded call on again (no loop between two replicas that each think the other leads)', async () => {
    const a = control('a', async () => ({ at: 'leader', url: 'http://127.0.0.1:1' }));
    const port = await serve(a.c);
    const res = await fetch(`http://127.0.0.1:${port}/admin/pause`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, [FORWARDED_HEADER]: 'http://b' },
    });
    expect(res.status).toBe(503);
    expect(a.calls).toEqual([]);
  });

  it('with an admin listener, the main port serves no admin route', async () => {
    const r = control('leader', async () => ({ at: 'here' }));
    const main = await serve(r.c, false);
    const admin = await serve(r.c, true);
    const refused = await call(main, 'POST', '/admin/pause', TOKEN);
    expect(refused.status).toBe(404);
    expect(refused.body.error).toMatch(/SLOTLINE_ADMIN_PORT/);
    expect((await call(main, 'GET', '/api/sync/health')).status).toBe(200);
    expect((await call(admin, 'POST', '/admin/pause', TOKEN)).status).toBe(200);
    expect(r.calls).toEqual(['health', 'pause']);
  });

  it('shows /status details only to a caller with the token', async () => {
    const r = control('leader', async () => ({ at: 'here' }));
    const port = await serve(r.c);
    expect((await call(port, 'GET', '/status')).body.authorized).toBe(false);
    expect((await call(port, 'GET', '/status', 'wrong-token-0123456789')).body.authorized).toBe(
      false,
    );
    expect((await call(port, 'GET', '/status', TOKEN)).body.authorized).toBe(true);
  });
});
