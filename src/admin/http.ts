import { timingSafeEqual, createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { classifyError, RequestRefused, SlotlineError, Unavailable } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from './metrics.js';
import { routes } from './routes.js';
import { HttpError, type AdminControl, type Route } from './api.js';
import { forward, ForwardError, FORWARDED_HEADER, SERVED_BY_HEADER } from './forward.js';

export { HttpError, type AdminControl, type Probe } from './api.js';

/** The one place where a refused request becomes an HTTP status. */
const REFUSAL_STATUS: Record<RequestRefused['kind'], number> = {
  invalid: 400,
  conflict: 409,
  not_found: 404,
  unavailable: 503,
};

export interface HttpServerOptions {
  port: number;
  /** SLOTLINE_HTTP_HOST; default all IPv4 interfaces (what a pod needs). */
  host?: string;
  /** SLOTLINE_ADMIN_TOKEN; null disables admin actions. */
  adminToken: string | null;
  /** Largest request body accepted (default 16 KiB). */
  maxBodyBytes?: number;
  /**
   * Whether this listener serves the admin routes (default true). False on the
   * main port when SLOTLINE_ADMIN_PORT gives them a listener of their own.
   */
  admin?: boolean;
  /** SLOTLINE_FORWARD_TIMEOUT_MS: longest wait for the leader's answer to a forwarded call. */
  forwardTimeoutMs: number;
  /** The setting a listen failure names (default SLOTLINE_HTTP_PORT). */
  portVariable?: PortVariable;
  control: AdminControl;
  metrics: Metrics;
  log: Logger;
}

const hash = (s: string) => createHash('sha256').update(s).digest();

/** Bearer token check in constant time (both sides hashed to equal length first). */
export function tokenMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer (.+)$/.exec(header ?? '');
  if (!m) return false;
  return timingSafeEqual(hash(m[1] as string), hash(token));
}

/** An answer: JSON, Prometheus text, or a forwarded answer passed on as it came. */
type Reply = { status: number; servedBy?: string | null; headers?: Record<string, string> } & (
  { json: unknown } | { raw: Buffer | string; contentType: string }
);

/**
 * One HTTP listener: probes, metrics, status, the old analytics service's
 * endpoints, and token-gated admin actions. Errors are JSON with a message;
 * a bad request changes nothing. A call about the deployment (admin actions,
 * /api/sync/*) received by a standby is forwarded to the leader, so that every
 * replica gives it the same meaning.
 */
export class HttpServer {
  private server: http.Server | null = null;
  private readonly routes: Route[];

  constructor(private readonly opts: HttpServerOptions) {
    this.routes = routes(opts.control, opts.metrics);
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
      const refused = (err: Error) =>
        reject(listenError(err, this.opts.port, this.opts.portVariable));
      server.once('error', refused);
      server.listen(this.opts.port, this.opts.host ?? '0.0.0.0', () => {
        server.off('error', refused);
        resolve();
      });
    });
    this.opts.log.info(
      { host: this.opts.host ?? '0.0.0.0', port: this.port, admin: this.opts.admin !== false },
      'HTTP server listening',
    );
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections?.();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let reply: Reply;
    try {
      reply = await this.dispatch(req);
    } catch (err) {
      reply = this.failure(err);
      // Drain what the client still sends, so the connection closes cleanly.
      req.resume();
    }
    if (res.headersSent) return;
    const headers: Record<string, string> = { ...reply.headers };
    if (reply.servedBy) headers[SERVED_BY_HEADER] = reply.servedBy;
    if ('json' in reply) {
      const text = JSON.stringify(reply.json, (_k, v: unknown) =>
        typeof v === 'bigint' ? v.toString() : v,
      );
      res.writeHead(reply.status, { ...headers, 'content-type': 'application/json' });
      res.end(text);
    } else {
      res.writeHead(reply.status, { ...headers, 'content-type': reply.contentType });
      res.end(reply.raw);
    }
  }

  private failure(err: unknown): Reply {
    if (err instanceof HttpError) return { status: err.status, json: { error: err.message } };
    if (err instanceof RequestRefused)
      return { status: REFUSAL_STATUS[err.kind], json: { error: err.message } };
    this.opts.log.error({ err }, 'HTTP handler failed');
    return { status: 500, json: { error: 'internal error' } };
  }

  /** Finds the route, checks the token, reads the body, and answers here or through the leader. */
  private async dispatch(req: http.IncomingMessage): Promise<Reply> {
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
      req.resume();
      return {
        status: 405,
        json: { error: `${req.method} is not allowed on ${url.pathname}` },
        headers: { allow: candidates.map((r) => r.method).join(', ') },
      };
    }
    if (route.admin && this.opts.admin === false)
      throw new HttpError(
        404,
        `${url.pathname} is served on the admin port (SLOTLINE_ADMIN_PORT), not on this one`,
      );
    const token = this.opts.adminToken;
    if (route.admin) this.authorize(req);
    const authorized =
      route.admin || (token !== null && tokenMatches(req.headers.authorization, token));
    const body = await this.readBody(req);
    if (route.leader) {
      const passed = await this.viaLeader(route, req, body, url);
      if (passed) return passed;
    }
    const out = await route.handler(req, body, url, params, authorized);
    const servedBy = route.leader ? this.opts.control.self : null;
    if (typeof out === 'string')
      return {
        status: 200,
        raw: out,
        contentType: this.opts.metrics.registry.contentType,
        servedBy,
      };
    return { status: out[0], json: out[1], servedBy };
  }

  /**
   * A call about the deployment, received by a replica that does not lead:
   * the leader's answer, or null to answer here. An admin call is never answered
   * by a standby (a pause it kept for itself would be lost, or lead paused
   * later): without a reachable leader it is refused with 503. An open one
   * (/api/sync/health, /api/sync/stats) is answered here then, in its usual shape.
   */
  private async viaLeader(
    route: Route,
    req: http.IncomingMessage,
    body: Record<string, unknown>,
    url: URL,
  ): Promise<Reply | null> {
    const where = await this.opts.control.leader();
    if (where.at === 'here') return null;
    const forwarded = req.headers[FORWARDED_HEADER] !== undefined;
    if (where.at === 'none' || forwarded) {
      if (!route.admin) return null;
      throw new Unavailable(
        forwarded
          ? 'this replica was named as the leader but does not lead (any more); retry shortly'
          : where.at === 'none'
            ? where.reason
            : 'no leader',
      );
    }
    try {
      const a = await forward({
        base: where.url,
        method: req.method ?? 'GET',
        path: `${url.pathname}${url.search}`,
        headers: this.forwardHeaders(req),
        body: Object.keys(body).length > 0 ? JSON.stringify(body) : undefined,
        timeoutMs: this.opts.forwardTimeoutMs,
      });
      return { status: a.status, raw: a.body, contentType: a.contentType, servedBy: a.servedBy };
    } catch (err) {
      const code = err instanceof ForwardError ? err.code : 'error';
      this.opts.log.warn(
        { code, leader: where.url, path: url.pathname },
        `forwarding to the leader failed: ${(err as Error).message}`,
      );
      if (!route.admin) return null;
      throw new Unavailable(
        `the leader at ${where.url} did not answer (${code}); nothing was done, retry shortly`,
      );
    }
  }

  private forwardHeaders(req: http.IncomingMessage): Record<string, string> {
    const h: Record<string, string> = {
      [FORWARDED_HEADER]: this.opts.control.self ?? 'unknown',
      accept: 'application/json',
    };
    if (req.headers.authorization) h.authorization = req.headers.authorization;
    h['content-type'] = 'application/json';
    return h;
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

/** The setting that names a listener's port. */
export type PortVariable = 'SLOTLINE_HTTP_PORT' | 'SLOTLINE_ADMIN_PORT';

/**
 * Why an HTTP listener could not listen, as an operator's error naming the
 * variable of its port; the one place a listen failure is mapped.
 */
export function listenError(
  err: unknown,
  port: number,
  variable: PortVariable = 'SLOTLINE_HTTP_PORT',
): SlotlineError {
  const code = (err as { code?: string } | null)?.code;
  const other = port === 8080 ? 8081 : 8080;
  const remedy = {
    side: 'http' as const,
    variable,
    fix:
      variable === 'SLOTLINE_ADMIN_PORT'
        ? 'set SLOTLINE_ADMIN_PORT to a free port, or to 0 to serve the admin actions on SLOTLINE_HTTP_PORT'
        : `set SLOTLINE_HTTP_PORT to a free port (e.g. SLOTLINE_HTTP_PORT=${other} slotline run, or SLOTLINE_HTTP_PORT=${other} slotline demo), or to 0 to run without the HTTP server (no probes, metrics or admin actions)`,
  };
  if (code === 'EADDRINUSE')
    return new SlotlineError(
      'http_port_in_use',
      `http: port ${port} is in use by another process`,
      {
        cause: err,
        remedy,
      },
    );
  if (code === 'EACCES')
    return new SlotlineError(
      'http_port_denied',
      `http: this process may not listen on port ${port} (ports below 1024 need privileges)`,
      { cause: err, remedy },
    );
  return classifyError(err, 'http');
}

/** Whether the HTTP server could listen on `port` now: null, or why not. Binds and lets go at once. */
export function probePort(
  port: number,
  host = '0.0.0.0',
  variable: PortVariable = 'SLOTLINE_HTTP_PORT',
): Promise<SlotlineError | null> {
  return new Promise((resolve) => {
    const server = http.createServer();
    server.once('error', (err) => resolve(listenError(err, port, variable)));
    server.listen(port, host, () => server.close(() => resolve(null)));
  });
}
