/**
 * The CPU budget of each throughput target: how much CPU per trade a target
 * rate leaves on this machine, against what the servers' own work costs and
 * what slotline spends now, all read from the CPU windows of the same run.
 *
 * A trade's cost is the CPU each process on its path spends per trade in a
 * timed window (its share of a core × the window's seconds ÷ the trades). At
 * R trades/s, `cores` can give at most cores × 10⁶ ÷ R µs per trade to all of
 * them together, however well the work overlaps. The floor of a path is the
 * part no connector can avoid, measured where nothing else runs: the server
 * decoding its WAL (the walsender under pg_recvlogical), receiving it
 * (pg_recvlogical's own CPU), inserting the rows (the sink server under the
 * bare COPY), and for Kafka the broker storing the records (under tuned
 * Debezium, the same records). A target whose floor exceeds its budget is out
 * of reach on this machine whatever the connector does.
 */
import type { CpuReport } from './proc.js';

/** The CPU table's roles that do a trade's work (the rest is background or the load). */
export const PATH_ROLES = [
  'connector',
  'client',
  'walsender',
  'pg-sink',
  'pg-snapshot',
  'kafka',
] as const;
export type PathRole = (typeof PATH_ROLES)[number];

/** A timed window: the trades it moved and where the CPU went. */
export interface Window {
  trades: number;
  cpu: CpuReport;
}

/** µs of CPU per trade of each path role present in the window. */
export function cpuPerTrade(w: Window): Partial<Record<PathRole, number>> {
  const out: Partial<Record<PathRole, number>> = {};
  if (w.trades <= 0) return out;
  for (const role of PATH_ROLES) {
    const pct = w.cpu.roles[role];
    if (pct === undefined) continue;
    out[role] = ((pct / 100) * w.cpu.seconds * 1e6) / w.trades;
  }
  return out;
}

export function total(costs: Partial<Record<PathRole, number>>): number {
  return Object.values(costs).reduce((a, b) => a + b, 0);
}

/**
 * cores × 10⁶ ÷ x, read both ways: at x µs of CPU per trade, the most trades/s
 * `cores` carry; at x trades/s, the µs of CPU per trade they leave.
 */
export function perCores(x: number, cores: number): number {
  return (cores * 1e6) / x;
}

export interface TargetBudget {
  target: string;
  /** trades/s the target asks for */
  needs: number;
  /** µs per trade that rate leaves */
  budget: number;
  /** µs per trade the servers' own work costs (no connector work) */
  floor: number;
  /** what the floor is made of, µs per trade */
  floorParts: { what: string; micros: number }[];
  /** µs per trade slotline's path spends now */
  now: number;
  verdict: 'out of reach' | 'CPU allows it' | 'needs less CPU';
}

export function targetBudget(t: {
  target: string;
  needs: number;
  cores: number;
  floorParts: { what: string; micros: number }[];
  now: number;
}): TargetBudget {
  const budget = perCores(t.needs, t.cores);
  const floor = t.floorParts.reduce((a, p) => a + p.micros, 0);
  const verdict =
    floor > budget ? 'out of reach' : t.now <= budget ? 'CPU allows it' : 'needs less CPU';
  return {
    target: t.target,
    needs: t.needs,
    budget,
    floor,
    floorParts: t.floorParts,
    now: t.now,
    verdict,
  };
}
