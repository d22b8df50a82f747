import net from 'node:net';

/** A port that was free a moment ago (bind port 0, read it, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface Answer {
  status: number;
  body: Record<string, unknown>;
  text: string;
  headers: Headers;
}

/** One HTTP request to the connector; never throws on a status code. */
export async function call(
  port: number,
  method: string,
  path: string,
  opts: { token?: string; json?: unknown; body?: string; contentType?: string } = {},
): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  let body: string | undefined = opts.body;
  if (opts.json !== undefined) body = JSON.stringify(opts.json);
  if (body !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method, headers, body });
  const text = await res.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // Prometheus text, not JSON
  }
  return { status: res.status, body: parsed, text, headers: res.headers };
}

/**
 * Waits until the connector on `port` streams (/readyz 200 with reason
 * "streaming"); with `standby`, a healthy standby is enough.
 */
export async function waitReady(
  port: number,
  opts: { timeoutMs?: number; standby?: boolean } = {},
): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const a = await call(port, 'GET', '/readyz').catch(() => null);
    const reason = typeof a?.body.reason === 'string' ? a.body.reason : '';
    if (
      a?.status === 200 &&
      (reason.startsWith('streaming') || (opts.standby === true && reason === 'standby'))
    )
      return;
    if (Date.now() > deadline) {
      throw new Error(
        `connector on port ${port} not ready after ${timeoutMs} ms: ${a?.text ?? 'no answer'}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
