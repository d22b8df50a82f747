/**
 * The connector as a user runs it: `node dist/cli.js <command>` in a child
 * process (the test command builds dist/ first), so tests can SIGTERM and
 * SIGKILL it like a Kubernetes node would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort, waitReady } from './http.js';
import { FAST } from './settings.js';

export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ConnectorProcess extends AsyncDisposable {
  readonly proc: ChildProcess;
  /** stdout and stderr lines so far (the last 5,000). */
  readonly lines: string[];
  readonly exited: Promise<Exit>;
  /** All output so far, for assertion messages. */
  output(): string;
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM and wait for the exit. */
  stop(timeoutMs?: number): Promise<Exit>;
}

const MAX_LINES = 5_000;

export function startConnector(
  env: Record<string, string>,
  args: string[] = ['run'],
): ConnectorProcess {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('SLOTLINE_')),
  );
  const proc = spawn(process.execPath, [CLI, ...args], {
    env: { ...base, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const collect = (buf: Buffer) => {
    for (const line of buf.toString('utf8').split('\n')) {
      if (line.length === 0) continue;
      lines.push(line);
      if (lines.length > MAX_LINES) lines.shift();
    }
  };
  proc.stdout?.on('data', collect);
  proc.stderr?.on('data', collect);
  const exited = new Promise<Exit>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  const handle: ConnectorProcess = {
    proc,
    lines,
    exited,
    output: () => lines.join('\n'),
    kill(signal = 'SIGKILL') {
      if (alive()) proc.kill(signal);
    },
    async stop(timeoutMs = 30_000) {
      if (alive()) proc.kill('SIGTERM');
      const timer = setTimeout(() => handle.kill('SIGKILL'), timeoutMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
    async [Symbol.asyncDispose]() {
      handle.kill('SIGKILL');
      await exited;
    },
  };
  return handle;
}

/** Runs a command to completion (setup, status, …). */
export async function runCommand(
  env: Record<string, string>,
  args: string[],
  timeoutMs = 60_000,
): Promise<Exit & { output: string }> {
  const c = startConnector(env, args);
  const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
  try {
    const exit = await c.exited;
    return { ...exit, output: c.output() };
  } finally {
    clearTimeout(timer);
  }
}

/** The admin token tests give the connector. */
export const ADMIN_TOKEN = 'test-admin-token-0123456789';

/**
 * A connector with its HTTP server on a free port and the admin token set,
 * returned once it streams.
 */
export async function startWithHttp(
  ctx: { env(extra?: Record<string, string>): Record<string, string> },
  extra: Record<string, string> = {},
): Promise<{ c: ConnectorProcess; port: number; env: Record<string, string> }> {
  const port = await freePort();
  const env = ctx.env({
    ...FAST,
    SLOTLINE_HTTP_PORT: String(port),
    SLOTLINE_ADMIN_TOKEN: ADMIN_TOKEN,
    ...extra,
  });
  const c = startConnector(env);
  try {
    await waitReady(port);
  } catch (err) {
    c.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\n${c.output().slice(-3000)}`, { cause: err });
  }
  return { c, port, env };
}
