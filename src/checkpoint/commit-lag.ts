import type { Lsn } from './lsn.js';

/**
 * Commit-time lag, free of I/O: the commits routed but not yet durable in
 * every sink, oldest first. The lag is the age of the oldest of them (0 when
 * there is none: an idle connector is not behind, however old its last
 * commit). Holds at most one entry per in-flight transaction, which the
 * in-flight bound limits.
 */
export class CommitTracker {
  private lsns: Lsn[] = [];
  private times: number[] = [];
  private head = 0;
  /** unix ms of the last commit durable everywhere; null before the first */
  lastDurableCommitMs: number | null = null;

  /** A transaction ending at `endLsn`, committed at `commitMs` (unix ms), was routed. */
  routed(endLsn: Lsn, commitMs: number): void {
    this.lsns.push(endLsn);
    this.times.push(commitMs);
  }

  /** Everything up to `flushLsn` is durable in every sink. */
  durable(flushLsn: Lsn): void {
    while (this.head < this.lsns.length && (this.lsns[this.head] as Lsn) <= flushLsn) {
      this.lastDurableCommitMs = this.times[this.head] as number;
      this.head++;
    }
    // Compact now and then so the arrays do not grow without bound.
    if (this.head > 1024 && this.head * 2 > this.lsns.length) {
      this.lsns = this.lsns.slice(this.head);
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
  }

  get pending(): number {
    return this.lsns.length - this.head;
  }

  /** Seconds since the oldest commit not yet durable; 0 when none is pending. */
  lagSeconds(nowMs: number): number {
    if (this.head >= this.lsns.length) return 0;
    return Math.max(0, (nowMs - (this.times[this.head] as number)) / 1000);
  }

  /** Forget pending commits (the stream restarts from the durable position). */
  clear(): void {
    this.lsns = [];
    this.times = [];
    this.head = 0;
  }
}

/** Rows per second over a sliding window, from cumulative counts sampled at any pace. */
export class RateMeter {
  private samples: { at: number; total: number }[] = [];

  constructor(private readonly windowMs: number) {}

  record(nowMs: number, total: number): void {
    this.samples.push({ at: nowMs, total });
    while (
      this.samples.length > 2 &&
      (this.samples[0] as { at: number }).at < nowMs - this.windowMs
    ) {
      this.samples.shift();
    }
  }

  perSecond(): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last.at === first.at) return 0;
    return ((last.total - first.total) * 1000) / (last.at - first.at);
  }
}
