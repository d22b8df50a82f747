/**
 * What the benchmark reads from /proc: CPU time per process (utime + stime),
 * the machine's busy time, peak RSS (VmHWM), and a description of the machine.
 * Linux only, like the rest of the benchmark.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';

let clockTicks: number | undefined;

/** Kernel clock ticks per second (`getconf CLK_TCK`, nearly always 100). */
export function clkTck(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

export interface ProcStat {
  pid: number;
  ppid: number;
  comm: string;
  /** utime + stime, in clock ticks */
  ticks: number;
  /** time its threads spent runnable but waiting for a CPU (schedstat), ns; 0 if unknown */
  waitNs: number;
}

/** /proc/<pid>/stat, or null when the process is gone. */
export function procStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // "pid (comm) state ppid …": comm may hold spaces and parentheses; split after the last ')'.
  const close = text.lastIndexOf(')');
  const comm = text.slice(text.indexOf('(') + 1, close);
  const f = text.slice(close + 2).split(' ');
  // f[0] is field 3 (state); utime and stime are fields 14 and 15.
  return {
    pid,
    ppid: Number(f[1]),
    comm,
    ticks: Number(f[11]) + Number(f[12]),
    waitNs: waitNs(pid),
  };
}

/**
 * Run-queue wait of all of a process's threads (/proc/<pid>/task/<tid>/schedstat): a JVM's
 * main thread sleeps while its worker threads do the work, so the process's own schedstat
 * (its main thread's) would miss nearly all of it. Threads that exited are not counted.
 */
function waitNs(pid: number): number {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0; // the process is gone
  }
  let sum = 0;
  for (const tid of tids) {
    try {
      sum += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[1]) || 0;
    } catch {
      // no schedstat (kernel without CONFIG_SCHED_INFO) or the thread is gone
    }
  }
  return sum;
}

/** Every process on the machine. */
export function allProcStats(): Map<number, ProcStat> {
  const out = new Map<number, ProcStat>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = procStat(Number(name));
    if (s) out.set(s.pid, s);
  }
  return out;
}

/** Busy and total ticks of the whole machine, summed over cores (/proc/stat "cpu" line). */
export function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

/** Peak resident set size (VmHWM) in MiB, or null when the process is gone. */
export function peakRssMiB(pid: number): number | null {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** The command line of a process (NUL-separated arguments joined by spaces). */
export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/**
 * CPU use per role over a window: every process's ticks at start() and at
 * finish(); a process born inside the window counts all of its ticks. The
 * processes that matter (named ones, and PostgreSQL backends once a role is
 * known for them) are also sampled every `sampleMs`, so one that exits before
 * finish() (pg_recvlogical's walsender, a psql backend) keeps the ticks of its
 * last sample. 100% = one core.
 */
export class CpuWindow {
  private before = new Map<number, ProcStat>();
  private last = new Map<number, ProcStat>();
  private readonly roles = new Map<number, string>();
  private machine0 = { busy: 0, total: 0 };
  private t0 = 0;
  private timer: NodeJS.Timeout | null = null;
  private refreshing = false;

  /**
   * `refresh` names the roles of processes as they are discovered (e.g. from
   * pg_stat_activity); `fallback` names the rest at finish (null: not ours).
   */
  constructor(
    private readonly refresh: () => Promise<Map<number, string>>,
    private readonly fallback: (s: ProcStat) => string | null,
    private readonly sampleMs = 200,
  ) {}

  async start(named: Record<number, string> = {}): Promise<void> {
    for (const [pid, role] of Object.entries(named)) this.roles.set(Number(pid), role);
    this.before = allProcStats();
    this.machine0 = machineTicks();
    this.t0 = performance.now();
    await this.discover();
    this.timer = setInterval(() => void this.discover(), this.sampleMs);
  }

  name(pid: number, role: string): void {
    this.roles.set(pid, role);
  }

  private async discover(): Promise<void> {
    this.sampleKnown();
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      for (const [pid, role] of await this.refresh())
        if (!this.roles.has(pid)) this.roles.set(pid, role);
    } catch {
      // the server may be restarting; the next sample tries again
    } finally {
      this.refreshing = false;
    }
  }

  private sampleKnown(): void {
    for (const pid of this.roles.keys()) {
      const s = procStat(pid);
      if (s) this.last.set(pid, s);
    }
  }

  async finish(): Promise<CpuReport> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.sampleKnown();
    const seconds = (performance.now() - this.t0) / 1000;
    const machine1 = machineTicks();
    const after = allProcStats();
    for (const [pid, s] of this.last) if (!after.has(pid)) after.set(pid, s);
    const hz = clkTck();
    const ticks: Record<string, number> = {};
    const waits: Record<string, number> = {};
    let ours = 0;
    for (const s of after.values()) {
      const role = this.roles.get(s.pid) ?? this.fallback(s);
      if (role === null) continue;
      const prev = this.before.get(s.pid);
      const delta = s.ticks - (prev?.ticks ?? 0);
      ticks[role] = (ticks[role] ?? 0) + delta;
      // A thread that exited takes its wait with it: never count less than nothing.
      waits[role] = (waits[role] ?? 0) + Math.max(0, s.waitNs - (prev?.waitNs ?? 0));
      ours += delta;
    }
    const pct = (t: number) => (seconds > 0 ? (100 * t) / hz / seconds : 0);
    const dBusy = machine1.busy - this.machine0.busy;
    const dTotal = machine1.total - this.machine0.total;
    const cores = cpus().length;
    const machineBusy = dTotal > 0 ? (100 * cores * dBusy) / dTotal : 0;
    const roles: Record<string, number> = {};
    for (const [k, v] of Object.entries(ticks)) roles[k] = round1(pct(v));
    const runQueue: Record<string, number> = {};
    for (const [k, v] of Object.entries(waits))
      runQueue[k] = seconds > 0 ? round1(v / 1e7 / seconds) : 0;
    return {
      seconds: round3(seconds),
      roles,
      runQueue,
      machineBusy: round1(machineBusy),
      notOurs: round1(Math.max(0, machineBusy - pct(ours))),
      cores,
    };
  }
}

export interface CpuReport {
  seconds: number;
  /** role → CPU % (100 = one core) */
  roles: Record<string, number>;
  /** role → % of the window its processes were runnable but waiting for a CPU */
  runQueue: Record<string, number>;
  /** the whole machine's busy time, % of one core (at most cores × 100) */
  machineBusy: number;
  /** busy time of processes that are not part of this scenario (other agents, tests) */
  notOurs: number;
  cores: number;
}

export const round1 = (x: number) => Math.round(x * 10) / 10;
export const round3 = (x: number) => Math.round(x * 1000) / 1000;

export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  memoryGiB: number;
  loadAverage: string;
  kernel: string;
}

export function machineInfo(): MachineInfo {
  let cpuModel = 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m?.[1]) cpuModel = m[1].trim();
  } catch {
    // not Linux
  }
  let load = '';
  let kernel = '';
  try {
    load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {
    // not Linux
  }
  return {
    nproc: cpus().length,
    cpuModel,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    loadAverage: load,
    kernel,
  };
}
