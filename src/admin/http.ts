import { timingSafeEqual, createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { RequestRefused } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from './metrics.js';

/** An answer other than 200, with a message for the caller. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The one place where a refused request becomes an HTTP status. */
const REFUSAL_STATUS: Record<RequestRefused['kind'], number> = {
  invalid: 400,
  conflict: 409,
  not_found: 404,
};

export interface Probe {
  ok: boolean;
  reason: string;
}

/** What the running connector offers the HTTP surface. */
export interface AdminControl {
  liveness(): Probe;
  readiness(): Probe;
  status(): Promise<unknown>;
  syncHealth(): Promise<unknown>;
  syncStats(): Promise<unknown>;
  pause(): unknown;
  resume(): unknown;
  resetLsn(lsn: string, force: boolean): Promise<unknown>;
  startBackfill(body: Record<string, unknown>): Promise<unknown>;
  cancelBackfill(): Promise<unknown>;
  /** POST /api/sync/run: a verify-and-repair pass. */
  syncRun(body: Record<string, unknown>): Promise<unknown>;
  deadLetters: {
    list(query: Record<string, string>): Promise<unknown>;
    show(id: number): Promise<unknown>;
    retry(body: Record<string, unknown>): Promise<unknown>;
    discard(body: Record<string, unknown>): Promise<unknown>;
    purge(body: Record<string, unknown>): Promise<unknown>;
  };
}

export interface HttpServerOptions {
  port: number;
  /** Loopback by default in tests; all interfaces in a pod. */
  host?: string;
  /** SLOTLINE_ADMIN_TOKEN; null disables admin actions. */
  adminToken: string | null;
  /** Largest request body accepted (default 16 KiB). */
  maxBodyBytes?: number;
  control: AdminControl;
  metrics: Metrics;
  log: Logger;
}

type Handler = (
  req: http.IncomingMessage,
  body: Record<string, unknown>,
  url: URL,
  params: string[],
) => Promise<[number, unknown] | string>;
interface Route {
  method: string;
  /** A path, or a pattern whose groups become `params`. */
  path: string | RegExp;
  admin: boolean;
  handler: Handler;
}

const hash = (s: string) => createHash('sha256').update(s).digest();

/** Bearer token check in constant time (both sides hashed to equal length first). */
export function tokenMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer (.+)$/.exec(header ?? '');
  if (!m) return false;
  return timingSafeEqual(hash(m[1] as string), hash(token));
}

/**
 * One HTTP server: probes, metrics, status, the old analytics service's
 * endpoints, and token-gated admin actions. Errors are JSON with a message;
 * a bad request changes nothing.
 */
export class HttpServer {
  private server: http.Server | null = null;
  private readonly routes: Route[];

  constructor(private readonly opts: HttpServerOptions) {
    const c = opts.control;
    const probe = (p: Probe): [number, unknown] => [
      p.ok ? 200 : 503,
      { status: p.ok ? 'ok' : 'unavailable', reason: p.reason },
    ];
    const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
    this.routes = [
      { method: 'GET', path: '/healthz', admin: false, handler: async () => probe(c.liveness()) },
      { method: 'GET', path: '/readyz', admin: false, handler: async () => probe(c.readiness()) },
      {
        method: 'GET',
        path: '/metrics',
        admin: false,
        handler: async () => opts.metrics.registry.metrics(),
      },
      {
        method: 'GET',
        path: '/status',
        admin: false,
        handler: async () => [200, await c.status()],
      },
      {
        method: 'GET',
        path: '/api/sync/health',
        admin: false,
        handler: async () => [200, await c.syncHealth()],
      },
      {
        method: 'GET',
        path: '/api/sync/stats',
        admin: false,
        handler: async () => [200, await c.syncStats()],
      },
      {
        method: 'POST',
        path: '/api/sync/run',
        admin: true,
        handler: async (_r, b) => [200, await c.syncRun(b)],
      },
      {
        method: 'POST',
        path: '/api/sync/force',
        admin: true,
        handler: async (_r, b) => {
          if (
            typeof b.fromTimestamp !== 'number' ||
            !Number.isInteger(b.fromTimestamp) ||
            b.fromTimestamp < 0
          ) {
            throw new HttpError(400, 'fromTimestamp must be unix seconds (a non-negative integer)');
          }
          return [202, await c.startBackfill({ from: b.fromTimestamp })];
        },
      },
      {
        method: 'POST',
        path: '/admin/lsn-reset',
        admin: true,
        handler: async (_r, b) => {
          const lsn = str(b.lsn);
          if (lsn === undefined)
            throw new HttpError(400, 'lsn is required, as X/Y in hex (e.g. "0/16B3748")');
          if (b.force !== undefined && typeof b.force !== 'boolean')
            throw new HttpError(400, 'force must be a boolean');
          return [200, await c.resetLsn(lsn, b.force === true)];
        },
      },
      {
        method: 'POST',
        path: '/admin/backfill',
        admin: true,
        handler: async (_r, b) => [202, await c.startBackfill(b)],
      },
      {
        method: 'DELETE',
        path: '/admin/backfill',
        admin: true,
        handler: async () => [200, await c.cancelBackfill()],
      },
      { method: 'POST', path: '/admin/pause', admin: true, handler: async () => [200, c.pause()] },
      {
        method: 'GET',
        path: '/admin/dead-letters',
        admin: true,
        handler: async (_r, _b, url) => [
          200,
          await c.deadLetters.list(Object.fromEntries(url.searchParams)),
        ],
      },
      {
        method: 'GET',
        path: /^\/admin\/dead-letters\/(\d{1,15})$/,
        admin: true,
        handler: async (_r, _b, _u, p) => [200, await c.deadLetters.show(Number(p[0]))],
      },
      {
        method: 'POST',
        path: '/admin/dead-letters/retry',
        admin: true,
        handler: async (_r, b) => [200, await c.deadLetters.retry(b)],
      },
      {
        method: 'POST',
        path: '/admin/dead-letters/discard',
        admin: true,
        handler: async (_r, b) => [200, await c.deadLetters.discard(b)],
      },
      {
        method: 'POST',
        path: '/admin/dead-letters/purge',
        admin: true,
        handler: async (_r, b) => [200, await c.deadLetters.purge(b)],
      },
      {
        method: 'POST',
        path: '/admin/resume',
        admin: true,
        handler: async () => [200, c.resume()],
      },
    ];
  }

  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  async start(): Promise<void> {
    const server = http.createServer((req, res) => void this.handle(req, res));
    server.keepAliveTimeout = 5000;
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host ?? '0.0.0.0', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.opts.log.info({ port: this.port }, 'HTTP server listening');
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections?.();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const send = (status: number, body: unknown) => {
      if (res.headersSent) return;
      if (typeof body === 'string') {
        res.writeHead(status, { 'content-type': this.opts.metrics.registry.contentType });
        res.end(body);
      } else {
        const text = JSON.stringify(body, (_k, v: unknown) =>
          typeof v === 'bigint' ? v.toString() : v,
        );
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(text);
      }
    };
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      let params: string[] = [];
      const candidates = this.routes.filter((r) => {
        if (typeof r.path === 'string') return r.path === url.pathname;
        const m = r.path.exec(url.pathname);
        if (m) params = m.slice(1);
        return m !== null;
      });
      if (candidates.length === 0) throw new HttpError(404, `no such endpoint: ${url.pathname}`);
      const route = candidates.find((r) => r.method === req.method);
      if (!route) {
        res.setHeader('allow', candidates.map((r) => r.method).join(', '));
        throw new HttpError(405, `${req.method} is not allowed on ${url.pathname}`);
      }
      if (route.admin) this.authorize(req);
      const body = await this.readBody(req);
      const out = await route.handler(req, body, url, params);
      if (typeof out === 'string') send(200, out);
      else send(out[0], out[1]);
    } catch (err) {
      if (err instanceof HttpError) {
        send(err.status, { error: err.message });
      } else if (err instanceof RequestRefused) {
        send(REFUSAL_STATUS[err.kind], { error: err.message });
      } else {
        this.opts.log.error({ err }, 'HTTP handler failed');
        send(500, { error: 'internal error' });
      }
      // Drain what the client still sends, so the connection closes cleanly.
      req.resume();
    }
  }

  private authorize(req: http.IncomingMessage): void {
    const token = this.opts.adminToken;
    if (token === null)
      throw new HttpError(403, 'admin actions are disabled: SLOTLINE_ADMIN_TOKEN is not set');
    if (!tokenMatches(req.headers.authorization, token)) {
      throw new HttpError(
        401,
        'missing or wrong bearer token (Authorization: Bearer $SLOTLINE_ADMIN_TOKEN)',
      );
    }
  }

  /** The JSON object body of a request (empty object when there is none). */
  private async readBody(req: http.IncomingMessage): Promise<Record<string, unknown>> {
    const max = this.opts.maxBodyBytes ?? 16 * 1024;
    const declared = Number(req.headers['content-length'] ?? '0');
    if (declared > max) throw new HttpError(413, `request body over ${max} bytes`);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > max) throw new HttpError(413, `request body over ${max} bytes`);
      chunks.push(chunk);
    }
    if (size === 0) return {};
    const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
    if (type !== 'application/json')
      throw new HttpError(415, 'request body must be application/json');
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (err) {
      throw new HttpError(400, `malformed JSON: ${(err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new HttpError(400, 'request body must be a JSON object');
    }
    return parsed as Record<string, unknown>;
  }
}
