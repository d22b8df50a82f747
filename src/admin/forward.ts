import http from 'node:http';
import https from 'node:https';

/** Marks a call one replica passed to another: it is never passed on again. */
export const FORWARDED_HEADER = 'x-slotline-forwarded';
/** The address of the replica that carried a call out (its SLOTLINE_ADVERTISE_URL). */
export const SERVED_BY_HEADER = 'x-slotline-served-by';

export interface ForwardOptions {
  /** The leader's base URL, e.g. http://10.0.0.7:8081 */
  base: string;
  method: string;
  /** Path and query of the original call. */
  path: string;
  headers: Record<string, string>;
  body: string | undefined;
  /** The whole exchange (SLOTLINE_FORWARD_TIMEOUT_MS). */
  timeoutMs: number;
  /** Connecting alone (default 3 s or timeoutMs, the shorter): a dead pod's address drops SYNs. */
  connectTimeoutMs?: number;
  /** Largest answer passed back (default 16 MiB). */
  maxBytes?: number;
}

export interface ForwardAnswer {
  status: number;
  contentType: string;
  servedBy: string | null;
  body: Buffer;
}

/** Why a forward failed, as a short code for the caller ('timeout', 'ECONNREFUSED', …). */
export class ForwardError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * One call passed to the leader, its answer returned as it came. Bounded in
 * time (connect, then the whole exchange) and in size; it fails with a
 * ForwardError, never hangs.
 */
export function forward(o: ForwardOptions): Promise<ForwardAnswer> {
  const url = new URL(o.path, o.base);
  const client = url.protocol === 'https:' ? https : http;
  const connectMs = Math.min(o.connectTimeoutMs ?? 3000, o.timeoutMs);
  const maxBytes = o.maxBytes ?? 16 * 1024 * 1024;
  return new Promise<ForwardAnswer>((resolve, reject) => {
    const headers: Record<string, string> = { ...o.headers };
    if (o.body !== undefined) headers['content-length'] = String(Buffer.byteLength(o.body));
    const req = client.request(url, { method: o.method, headers, agent: false });
    const fail = (code: string, message: string) => {
      clearTimeout(whole);
      clearTimeout(connecting);
      req.destroy();
      reject(new ForwardError(code, message));
    };
    const whole = setTimeout(
      () => fail('timeout', `no answer within ${o.timeoutMs} ms`),
      o.timeoutMs,
    );
    const connecting = setTimeout(
      () => fail('connect_timeout', `could not connect within ${connectMs} ms`),
      connectMs,
    );
    req.once('socket', (socket) => {
      if (!socket.connecting) clearTimeout(connecting);
      else socket.once('connect', () => clearTimeout(connecting));
    });
    // `on`, not `once`: destroying the request after a failure may emit another.
    req.on('error', (err: NodeJS.ErrnoException) => fail(err.code ?? 'error', err.message));
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) fail('too_large', `answer over ${maxBytes} bytes`);
        else chunks.push(chunk);
      });
      res.on('error', (err: NodeJS.ErrnoException) => fail(err.code ?? 'error', err.message));
      res.once('end', () => {
        clearTimeout(whole);
        const servedBy = res.headers[SERVED_BY_HEADER];
        resolve({
          status: res.statusCode ?? 502,
          contentType: res.headers['content-type'] ?? 'application/json',
          servedBy: typeof servedBy === 'string' ? servedBy : null,
          body: Buffer.concat(chunks),
        });
      });
    });
    req.end(o.body);
  });
}
