import { type Lsn, minLsn } from './lsn.js';

/**
 * The ack policy, free of I/O. The flush LSN reported to the server is the
 * minimum over every enabled sink of what that sink holds durably; it starts at
 * the position replication started from and never moves backwards.
 */
export class Acker {
  private readonly durable = new Map<string, Lsn>();
  private flushed: Lsn;

  constructor(sinks: readonly string[], start: Lsn) {
    for (const s of sinks) this.durable.set(s, start);
    this.flushed = start;
  }

  /** `sink` holds everything up to `lsn`. Lower values are ignored. */
  setDurable(sink: string, lsn: Lsn): void {
    const cur = this.durable.get(sink);
    if (cur === undefined) throw new Error(`unknown sink ${sink}`);
    if (lsn > cur) this.durable.set(sink, lsn);
  }

  durableOf(sink: string): Lsn | undefined {
    return this.durable.get(sink);
  }

  /** The LSN to report as flushed: min over sinks, never behind an earlier report. */
  flushLsn(): Lsn {
    const min = minLsn(this.durable.values()) ?? this.flushed;
    if (min > this.flushed) this.flushed = min;
    return this.flushed;
  }
}
