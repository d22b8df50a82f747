import type { Metrics } from '../admin/metrics.js';
import type { Phase } from '../admin/port.js';
import { RateMeter } from '../checkpoint/commit-lag.js';
import type { SlotlineError } from '../errors.js';

/** What an embedding program (the demo) may watch. */
export interface ConnectorState {
  phase: Phase;
}

export function newConnectorState(): ConnectorState {
  return { phase: 'starting' };
}

/**
 * The connector's phase and its last error, with the error counter. Phases:
 * starting → standby → (starting →) snapshotting → streaming ⇄ retrying →
 * stopping → stopped. Leadership is counted from the moment the lock is held.
 */
export class StatusBoard {
  lastError: string | null = null;
  lastErrorCode: string | null = null;
  errorCount = 0;
  leading = false;
  readonly startedAt = Date.now();
  readonly throughput = new RateMeter(60_000);

  constructor(
    private readonly state: ConnectorState,
    private readonly metrics: Metrics,
  ) {}

  get phase(): Phase {
    return this.state.phase;
  }

  enter(phase: Phase): void {
    this.state.phase = phase;
    if (phase === 'streaming') this.clearError();
  }

  /** A failed attempt that will be retried (or not): counted and shown until the next success. */
  noteError(e: SlotlineError, where: string): void {
    this.lastError = e.message;
    this.lastErrorCode = e.code;
    this.errorCount += 1;
    this.metrics.errors.inc({ kind: e.code, where });
  }

  clearError(): void {
    this.lastError = null;
    this.lastErrorCode = null;
  }

  setLeading(leading: boolean): void {
    this.leading = leading;
    this.metrics.leader.set(leading ? 1 : 0);
  }
}
