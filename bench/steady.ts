/**
 * Steady state: trades committed at a fixed rate while the connector runs, and
 * the commit-to-sink latency of every trade.
 *
 * How latency is measured. The writer commits `rate × tick` trades every tick
 * (default 50 every 10 ms), each batch one auto-committed INSERT, and notes
 * the moment its COMMIT returned, per batch of ids. A poller asks the sink
 * every 5 ms for the highest steady-state trade id present (`max(trade_id)`,
 * an index lookup) and notes the moment it sent that query. Ids are assigned
 * in commit order by a single writer, the stream delivers in commit order, and
 * each sink batch commits atomically, so when id `g` is visible so is every id
 * below it: a trade's first-seen time is the send time of the first poll whose
 * maximum reached it. Latency = first seen − commit returned, per trade.
 *
 * The first `warmupSeconds` of trades are written and tracked but not
 * measured: the first trade stamped with the current time opens a new
 * hypertable chunk (once a day in production).
 *
 * Resolution: the poll interval plus one query (≈ 5–6 ms); the writer's
 * commit-returned time is at most one round trip after the real commit. Both
 * clocks are this process's monotonic clock. (The checkpoint row's
 * commit_time/updated_at pair was the alternative, but it samples only the
 * last commit of each sink batch and updated_at is the sink transaction's
 * start, both of which flatter the figure.)
 */
import pg from 'pg';
import { INSERT_TRADES, insertParams, STEADY_BASE, tradeId, tradeNumber } from './workload.js';

export interface SteadyOptions {
  sourceUrl: string;
  sinkUrl: string;
  /** trades per second */
  rate: number;
  seconds: number;
  /** Trades written (and tracked) before the measured window: the first one opens a new chunk. */
  warmupSeconds?: number;
  tickMs?: number;
  pollMs?: number;
  /** The first trade's number (default STEADY_BASE); a second run on the same source starts above the first. */
  base?: number;
}

export interface SteadyResult {
  target: number;
  written: number;
  seconds: number;
  /** trades per second actually committed */
  rate: number;
  transactions: number;
  /** ticks that started late because the previous commit took longer than a tick */
  lateTicks: number;
  latencyMs: { p50: number; p95: number; p99: number; max: number; mean: number };
  /** seconds into the measured window at which the worst latency occurred */
  worstAtSeconds: number;
  /** the worst latency of each second of the window, ms */
  worstPerSecond: number[];
  /** trades not in the sink when the wait ended (should be 0) */
  missing: number;
  polls: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

interface Committed {
  lo: number;
  hi: number;
  at: number;
}

interface Seen {
  at: number;
  upTo: number;
}

export async function runSteady(o: SteadyOptions): Promise<SteadyResult> {
  const tickMs = o.tickMs ?? 10;
  const pollMs = o.pollMs ?? 5;
  const perTick = Math.max(1, Math.round((o.rate * tickMs) / 1000));
  const warmupTicks = Math.round(((o.warmupSeconds ?? 0) * 1000) / tickMs);
  const ticks = warmupTicks + Math.round((o.seconds * 1000) / tickMs);
  const writer = new pg.Client({ connectionString: o.sourceUrl, application_name: 'bench-writer' });
  const poller = new pg.Client({ connectionString: o.sinkUrl, application_name: 'bench-poller' });
  await writer.connect();
  await poller.connect();
  const committed: Committed[] = [];
  const seen: Seen[] = [];
  let writing = true;
  const base = o.base ?? STEADY_BASE;
  let lastId = base - 1;
  let polls = 0;
  try {
    const floorId = tradeId(base);
    const poll = (async () => {
      let upTo = base - 1;
      let giveUpAt = Infinity;
      const deadline = () => !writing && (upTo >= lastId || performance.now() > giveUpAt);
      while (!deadline()) {
        if (!writing && giveUpAt === Infinity) giveUpAt = performance.now() + 60_000;
        const sent = performance.now();
        const r = await poller.query<{ m: string | null }>(
          'SELECT max(trade_id) AS m FROM analytics_trades WHERE trade_id >= $1',
          [floorId],
        );
        polls += 1;
        const m = r.rows[0]?.m;
        if (m) {
          const g = tradeNumber(m);
          if (g > upTo) {
            upTo = g;
            seen.push({ at: sent, upTo: g });
          }
        }
        await sleep(pollMs - (performance.now() - sent));
      }
    })();
    // If the writer fails, the poller's connection is closed under it: not an unhandled rejection.
    poll.catch(() => undefined);

    let next = base;
    let lateTicks = 0;
    const start = performance.now();
    let t0 = start;
    let firstMeasured = base;
    for (let k = 0; k < ticks; k++) {
      const due = start + k * tickMs;
      if (k === warmupTicks) {
        t0 = due;
        firstMeasured = next;
      }
      const now = performance.now();
      if (now < due) await sleep(due - now);
      else if (now - due > tickMs && k >= warmupTicks) lateTicks += 1;
      const lo = next;
      const hi = next + perTick - 1;
      await writer.query(INSERT_TRADES, insertParams(lo, hi, true));
      committed.push({ lo, hi, at: performance.now() });
      lastId = hi;
      next = hi + 1;
    }
    const seconds = (performance.now() - t0) / 1000;
    writing = false;
    await poll;

    const latencies: number[] = [];
    const worstPerSecond: number[] = [];
    let j = 0;
    let missing = 0;
    for (const b of committed) {
      if (b.lo < firstMeasured) continue;
      const second = Math.floor((b.at - t0) / 1000);
      for (let g = b.lo; g <= b.hi; g++) {
        while (j < seen.length && (seen[j] as Seen).upTo < g) j++;
        const s = seen[j];
        if (!s) {
          missing += 1;
          continue;
        }
        const ms = s.at - b.at;
        latencies.push(ms);
        worstPerSecond[second] = Math.max(worstPerSecond[second] ?? 0, Math.round(ms));
      }
    }
    const worst = Math.max(0, ...worstPerSecond.map((v) => v ?? 0));
    const worstAtSeconds = worstPerSecond.findIndex((v) => v === worst);
    latencies.sort((a, b) => a - b);
    const pct = (p: number) =>
      latencies.length === 0
        ? NaN
        : (latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)] ?? NaN);
    const r1 = (x: number) => Math.round(x * 10) / 10;
    const written = lastId - firstMeasured + 1;
    return {
      target: o.rate,
      written,
      seconds,
      rate: written / seconds,
      transactions: committed.filter((b) => b.lo >= firstMeasured).length,
      lateTicks,
      latencyMs: {
        p50: r1(pct(0.5)),
        p95: r1(pct(0.95)),
        p99: r1(pct(0.99)),
        max: r1(latencies[latencies.length - 1] ?? NaN),
        mean: r1(latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length)),
      },
      worstAtSeconds,
      worstPerSecond: Array.from(worstPerSecond, (v) => v ?? 0),
      missing,
      polls,
    };
  } finally {
    writing = false;
    await writer.end().catch(() => undefined);
    await poller.end().catch(() => undefined);
  }
}
