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
  return { pid, ppid: Number(f[1]), comm, ticks: Number(f[11]) + Number(f[12]) };
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
 * finish(). A process born inside the window counts all of its ticks; one that
 * died inside it is lost (none of ours does). 100% = one core.
 */
export class CpuWindow {
  private before = new Map<number, ProcStat>();
  private machine0 = { busy: 0, total: 0 };
  private t0 = 0;

  start(): void {
    this.before = allProcStats();
    this.machine0 = machineTicks();
    this.t0 = performance.now();
  }

  /**
   * `roleOf` names a process's role (connector, walsender, …) or returns null
   * for processes that are not ours; those make up "other" together with the
   * machine's busy time that no process we saw accounts for.
   */
  finish(roleOf: (s: ProcStat) => string | null): CpuReport {
    const after = allProcStats();
    const machine1 = machineTicks();
    const seconds = (performance.now() - this.t0) / 1000;
    const hz = clkTck();
    const roles: Record<string, number> = {};
    let ours = 0;
    for (const s of after.values()) {
      const role = roleOf(s);
      if (role === null) continue;
      const delta = s.ticks - (this.before.get(s.pid)?.ticks ?? 0);
      roles[role] = (roles[role] ?? 0) + delta;
      ours += delta;
    }
    const pct = (ticks: number) => (seconds > 0 ? (100 * ticks) / hz / seconds : 0);
    const dBusy = machine1.busy - this.machine0.busy;
    const dTotal = machine1.total - this.machine0.total;
    const cores = cpus().length;
    const machineBusy = dTotal > 0 ? (100 * cores * dBusy) / dTotal : 0;
    const rolePct: Record<string, number> = {};
    for (const [k, v] of Object.entries(roles)) rolePct[k] = round1(pct(v));
    return {
      seconds: round3(seconds),
      roles: rolePct,
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
