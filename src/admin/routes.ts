import type { AdminControl, Handler, Probe, Route } from './api.js';
import { HttpError } from './api.js';
import type { Metrics } from './metrics.js';

const get = (path: Route['path'], handler: Handler, admin = false): Route => ({
  method: 'GET',
  path,
  admin,
  handler,
});
const post = (path: Route['path'], handler: Handler): Route => ({
  method: 'POST',
  path,
  admin: true,
  handler,
});
/** A call about the deployment: the leader answers it, whichever replica receives it. */
const leader = (r: Route): Route => ({ ...r, leader: true });

function probe(p: Probe): [number, unknown] {
  return [p.ok ? 200 : 503, { status: p.ok ? 'ok' : 'unavailable', reason: p.reason }];
}

/** Every endpoint: the open ones, the old service's, and the admin actions (token required). */
export function routes(c: AdminControl, metrics: Metrics): Route[] {
  return [...openRoutes(c, metrics), ...syncRoutes(c), ...adminRoutes(c), ...deadLetterRoutes(c)];
}

function openRoutes(c: AdminControl, metrics: Metrics): Route[] {
  return [
    get('/healthz', async () => probe(c.liveness())),
    get('/readyz', async () => probe(c.readiness())),
    get('/metrics', async () => metrics.registry.metrics()),
    get('/status', async (_r, _b, _u, _p, authorized) => [200, await c.status(authorized)]),
  ];
}

/** The old analytics service's endpoints, kept for its cron jobs and dashboards. */
function syncRoutes(c: AdminControl): Route[] {
  return [
    get('/api/sync/health', async () => [200, await c.syncHealth()]),
    get('/api/sync/stats', async (_r, _b, _u, _p, authorized) => [
      200,
      await c.syncStats(authorized),
    ]),
    post('/api/sync/run', async (_r, b) => [200, await c.syncRun(b)]),
    post('/api/sync/force', async (_r, b) => {
      const from = b.fromTimestamp;
      if (typeof from !== 'number' || !Number.isInteger(from) || from < 0)
        throw new HttpError(400, 'fromTimestamp must be unix seconds (a non-negative integer)');
      return [202, await c.startBackfill({ from })];
    }),
  ].map(leader);
}

function adminRoutes(c: AdminControl): Route[] {
  return [
    post('/admin/lsn-reset', async (_r, b) => {
      if (typeof b.lsn !== 'string')
        throw new HttpError(400, 'lsn is required, as X/Y in hex (e.g. "0/16B3748")');
      if (b.force !== undefined && typeof b.force !== 'boolean')
        throw new HttpError(400, 'force must be a boolean');
      return [200, await c.resetLsn(b.lsn, b.force === true)];
    }),
    post('/admin/backfill', async (_r, b) => [202, await c.startBackfill(b)]),
    { ...post('/admin/backfill', async () => [200, await c.cancelBackfill()]), method: 'DELETE' },
    post('/admin/pause', async () => [200, await c.pause()]),
    post('/admin/resume', async () => [200, await c.resume()]),
  ].map(leader);
}

function deadLetterRoutes(c: AdminControl): Route[] {
  const d = c.deadLetters;
  return [
    get(
      '/admin/dead-letters',
      async (_r, _b, url) => [200, await d.list(Object.fromEntries(url.searchParams))],
      true,
    ),
    get(
      /^\/admin\/dead-letters\/(\d{1,15})$/,
      async (_r, _b, _u, p) => [200, await d.show(Number(p[0]))],
      true,
    ),
    post('/admin/dead-letters/retry', async (_r, b) => [200, await d.retry(b)]),
    post('/admin/dead-letters/discard', async (_r, b) => [200, await d.discard(b)]),
    post('/admin/dead-letters/purge', async (_r, b) => [200, await d.purge(b)]),
  ].map(leader);
}
