/**
 * A real Prometheus server (Debian's `prometheus` binary) for a test: its own config and
 * TSDB in a temporary directory, a free loopback port, a 1 s scrape and rule interval, and
 * no process left behind however the test ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from './http.js';
import { waitFor } from './wait.js';

export interface PrometheusOptions {
  binary: string;
  /** host:port of each target, scraped as job "slotline". */
  targets: string[];
  /** Absolute paths of rule files to load. */
  ruleFiles?: string[];
  /** How long to wait for /-/ready (default 15 s). */
  readyTimeoutMs?: number;
}

export interface QueryAnswer {
  status: 'success' | 'error';
  data?: {
    resultType: string;
    result: { metric: Record<string, string>; value?: [number, string] }[];
  };
  errorType?: string;
  error?: string;
}

export interface PrometheusServer extends AsyncDisposable {
  readonly url: string;
  /** An instant query through the HTTP API. */
  query(promql: string): Promise<QueryAnswer>;
  /** GET a path of the HTTP API, parsed as JSON. */
  api<T>(path: string): Promise<T>;
  /** The server's log so far. */
  output(): string;
}

export async function startPrometheus(opts: PrometheusOptions): Promise<PrometheusServer> {
  const dir = await mkdtemp(join(tmpdir(), 'slotline-prometheus-'));
  const config = join(dir, 'prometheus.yml');
  await writeFile(
    config,
    stringify({
      global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
      rule_files: opts.ruleFiles ?? [],
      scrape_configs: [{ job_name: 'slotline', static_configs: [{ targets: opts.targets }] }],
    }),
  );
  let lastError: unknown;
  // A port that was free a moment ago may be taken by the time Prometheus binds it.
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    const log: string[] = [];
    const child = spawn(
      opts.binary,
      [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--storage.tsdb.retention.time=1h',
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    guard(child);
    const collect = (b: Buffer) => log.push(b.toString('utf8'));
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitFor(
        async () => {
          if (child.exitCode !== null || child.signalCode !== null)
            throw new Error(`prometheus exited: ${log.join('').slice(-2000)}`);
          const r = await fetch(`${url}/-/ready`).catch(() => null);
          return r?.status === 200 || undefined;
        },
        {
          timeoutMs: opts.readyTimeoutMs ?? 15_000,
          intervalMs: 100,
          what: `Prometheus ready on ${url}`,
        },
      );
    } catch (err) {
      lastError = err;
      child.kill('SIGKILL');
      await exited;
      if (/address already in use/i.test(log.join(''))) continue;
      break;
    }
    const api = async <T>(path: string): Promise<T> => {
      const r = await fetch(`${url}${path}`);
      return (await r.json()) as T;
    };
    return {
      url,
      api,
      query: (promql) => api<QueryAnswer>(`/api/v1/query?query=${encodeURIComponent(promql)}`),
      output: () => log.join(''),
      async [Symbol.asyncDispose]() {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
          await exited;
          clearTimeout(timer);
        }
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  await rm(dir, { recursive: true, force: true });
  throw lastError instanceof Error ? lastError : new Error(String(lastError));
}

const live = new Set<ChildProcess>();
let exitHook = false;

/** Kills the server when this process exits, even by a signal or a crash of the worker. */
function guard(child: ChildProcess): void {
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  live.add(child);
  // `read` returns once every write end of its stdin is closed, i.e. when this process is
  // gone, however it died; then the watchdog kills the server.
  const watchdog = spawn(
    'sh',
    [
      '-c',
      'read -r _line; kill -KILL "$1" 2>/dev/null',
      'slotline-prometheus-watchdog',
      String(child.pid),
    ],
    { stdio: ['pipe', 'ignore', 'ignore'] },
  );
  watchdog.on('error', () => undefined);
  watchdog.stdin?.on('error', () => undefined);
  watchdog.unref();
  (watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  child.once('exit', () => {
    live.delete(child);
    watchdog.kill('SIGKILL');
  });
}
