import { timingSafeEqual, createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { RequestRefused } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from './metrics.js';
import { routes } from './routes.js';
import { HttpError, type AdminControl, type Route } from './api.js';

export { HttpError, type AdminControl, type Probe } from './api.js';

/** The one place where a refused request becomes an HTTP status. */
const REFUSAL_STATUS: Record<RequestRefused['kind'], number> = {
  invalid: 400,
  conflict: 409,
  not_found: 404,
};

export interface HttpServerOptions {
  port: number;
  /** SLOTLINE_HTTP_HOST; default all IPv4 interfaces (what a pod needs). */
  host?: string;
  /** SLOTLINE_ADMIN_TOKEN; null disables admin actions. */
  adminToken: string | null;
  /** Largest request body accepted (default 16 KiB). */
  maxBodyBytes?: number;
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

/**
 * One HTTP server: probes, metrics, status, the old analytics service's
 * endpoints, and token-gated admin actions. Errors are JSON with a message;
 * a bad request changes nothing.
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
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host ?? '0.0.0.0', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.opts.log.info(
      { host: this.opts.host ?? '0.0.0.0', port: this.port },
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
