/**
 * The demo as a new user runs it: `node dist/cli.js demo` (what `npm run demo`
 * runs after building), then Ctrl-C. Trades must reach the sink, and the
 * SIGINT must stop everything: exit 0, no PostgreSQL process, no directory.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { expect, it } from 'vitest';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Processes that are the postmaster, its children, or anything naming the data directory. */
function leftovers(pid: number, dataDir: string): string[] {
  const ps = execFileSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' });
  return ps
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => {
      const [p, pp] = line.split(/\s+/, 2).map(Number);
      return p === pid || pp === pid || line.includes(dataDir);
    });
}

/** stdout lines as they come, and a way to wait for one that matches. */
function lines(stream: NodeJS.ReadableStream) {
  const seen: string[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: stream }).on('line', (line) => {
    seen.push(line);
    for (const w of waiters) w();
  });
  return {
    seen,
    async waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        for (const line of seen) {
          const m = re.exec(line);
          if (m) return m;
        }
        if (Date.now() > deadline)
          throw new Error(
            `no line matching ${re} within ${timeoutMs} ms; got:\n${seen.join('\n')}`,
          );
        await new Promise<void>((resolve) => {
          const done = () => {
            waiters.delete(done);
            resolve();
          };
          waiters.add(done);
          setTimeout(done, 200);
        });
      }
    },
  };
}

it('demo: trades reach the sink, and Ctrl-C stops everything, leaving no process behind', async () => {
  expect(existsSync(CLI), `${CLI} is missing: run \`npm run build\``).toBe(true);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // The HTTP server (when there is one) must not collide with anything on 8080.
    SLOTLINE_HTTP_PORT: String(await freePort()),
    SLOTLINE_DEMO_REORG_SECONDS: '2',
  };
  delete env['SLOTLINE_DEMO_SECONDS'];
  const child = spawn(process.execPath, [CLI, 'demo'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const out = lines(child.stdout);
  let pid = 0;
  try {
    const [, sinkUrl] = await out.waitFor(/^demo: source \S+ sink (\S+)$/, 60_000);
    const [, pidText, dataDir] = await out.waitFor(/^demo: postgres pid (\d+) data (\S+)$/, 1000);
    pid = Number(pidText);
    expect(alive(pid)).toBe(true);

    // The initial snapshot, then the live stream: the sink keeps growing.
    const sink = new pg.Client({ connectionString: sinkUrl });
    await sink.connect();
    const counts: number[] = [];
    try {
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        const r = await sink
          .query<{ n: string }>('SELECT count(*) AS n FROM analytics_trades')
          .catch(() => null); // the connector has not created it yet
        const n = Number(r?.rows[0]?.n ?? 0);
        if (n > 0 && (counts.length === 0 || n > (counts.at(-1) as number))) counts.push(n);
        if (counts.length >= 3) break;
        await sleep(500);
      }
      expect(counts.length, `sink counts seen: ${counts.join(', ')}`).toBeGreaterThanOrEqual(3);
      const mapped = await sink.query<{ symbols: string[]; unmapped: string }>(
        `SELECT array_agg(DISTINCT symbol) AS symbols,
                count(*) FILTER (WHERE symbol IS NULL OR volume <> price * quantity) AS unmapped
           FROM analytics_trades`,
      );
      expect(mapped.rows[0]?.unmapped).toBe('0');
      expect(mapped.rows[0]?.symbols).toContain('MWETH/MUSDC');
    } finally {
      await sink.end();
    }

    const stopAt = Date.now();
    child.kill('SIGINT');
    const code = await Promise.race([exited, sleep(20_000).then(() => 'timeout' as const)]);
    expect(code, `stderr:\n${stderr}`).toBe(0);
    expect(Date.now() - stopAt).toBeLessThan(20_000);
    expect(out.seen.join('\n')).toMatch(/^demo: source and sink agree: [\d,]+ trades/m);

    expect(alive(pid)).toBe(false);
    expect(leftovers(pid, dataDir as string)).toEqual([]);
    expect(existsSync(dirname(dataDir as string))).toBe(false);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    if (pid > 0 && alive(pid)) process.kill(pid, 'SIGQUIT');
  }
}, 90_000);
