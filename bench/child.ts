/**
 * Child processes of the benchmark: the connector as a user runs it
 * (`node dist/cli.js run`) and the PostgreSQL client tools. Every child is
 * killed if the benchmark exits early.
 */
import { spawn, type ChildProcess } from 'node:child_process';

const live = new Set<ChildProcess>();
let hooked = false;

function track(child: ChildProcess): void {
  if (!hooked) {
    hooked = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  live.add(child);
  child.once('exit', () => live.delete(child));
}

/** One pino line of the connector, as far as the benchmark cares. */
export interface LogLine {
  msg?: string;
  level?: number;
  time?: number;
  [k: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class Child {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly exited: Promise<Exit>;
  /** The last lines of output, for error messages. */
  private readonly tail: string[] = [];
  private readonly waiters: { msg: string; resolve: (l: LogLine) => void }[] = [];
  private readonly listeners: ((l: LogLine) => void)[] = [];
  private readonly textListeners: ((line: string) => void)[] = [];
  exit: Exit | null = null;

  constructor(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd: string) {
    this.proc = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    if (this.proc.pid === undefined) throw new Error(`could not start ${cmd}`);
    this.pid = this.proc.pid;
    track(this.proc);
    let partial = '';
    const onData = (buf: Buffer) => {
      const parts = (partial + buf.toString('utf8')).split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) this.onLine(line);
    };
    this.proc.stdout?.on('data', onData);
    this.proc.stderr?.on('data', onData);
    this.exited = new Promise((resolve) =>
      this.proc.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      }),
    );
  }

  private onLine(line: string): void {
    if (line.length === 0) return;
    this.tail.push(line);
    if (this.tail.length > 60) this.tail.shift();
    for (const l of this.textListeners) l(line);
    if ((this.waiters.length === 0 && this.listeners.length === 0) || line[0] !== '{') return;
    let parsed: LogLine;
    try {
      parsed = JSON.parse(line) as LogLine;
    } catch {
      return;
    }
    for (const l of this.listeners) l(parsed);
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i];
      if (w && parsed.msg === w.msg) {
        this.waiters.splice(i, 1);
        w.resolve(parsed);
      }
    }
  }

  /** Called with every JSON log line from now on. */
  onLog(listener: (l: LogLine) => void): void {
    this.listeners.push(listener);
  }

  /** Called with every line of output (JSON or not) from now on. */
  onText(listener: (line: string) => void): void {
    this.textListeners.push(listener);
  }

  output(): string {
    return this.tail.join('\n');
  }

  get alive(): boolean {
    return this.exit === null;
  }

  /** Resolves with the first log line whose `msg` is `msg`; rejects if the process exits first. */
  waitForLog(msg: string, timeoutMs: number): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no "${msg}" within ${timeoutMs} ms; output:\n${this.output()}`)),
        timeoutMs,
      );
      this.waiters.push({
        msg,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      void this.exited.then((e) => {
        clearTimeout(timer);
        reject(
          new Error(
            `exited (${e.signal ?? `code ${e.code}`}) before "${msg}"; output:\n${this.output()}`,
          ),
        );
      });
    });
  }

  /** Runs to completion; rejects on a non-zero exit. */
  async done(what: string): Promise<void> {
    const e = await this.exited;
    if (e.code !== 0) {
      throw new Error(`${what} failed (${e.signal ?? `exit ${e.code}`}):\n${this.output()}`);
    }
  }

  /** SIGTERM (the connector's graceful stop), SIGKILL after `timeoutMs`. */
  async stop(timeoutMs = 30_000): Promise<Exit> {
    if (this.alive) this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** The environment without PG* and SLOTLINE_* variables of the caller leaking in. */
export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('PG') || k.startsWith('SLOTLINE_')) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}
