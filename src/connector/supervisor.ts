import type { ResetOutcome } from '../admin/port.js';
import type { Lsn } from '../checkpoint/lsn.js';
import { Conflict, type SlotlineError } from '../errors.js';
import type { Logger } from '../log.js';
import { backoffDelay, type BackoffOptions, sleep } from '../retry.js';
import type { SessionEnd } from './session.js';

export interface ResetRequest {
  target: Lsn;
  force: boolean;
}

/**
 * An operator's LSN reset, from the HTTP request to the supervisor: one at a
 * time. The requester waits for the outcome, which the supervisor decides once
 * the stream has stopped (so no acknowledgement can move the slot in between).
 */
export class ResetRequests {
  private pending: {
    request: ResetRequest;
    settle: (outcome: ResetOutcome | Error) => void;
  } | null = null;
  private wake: (() => void) | null = null;

  request(request: ResetRequest): Promise<ResetOutcome> {
    if (this.pending) throw new Conflict('another LSN reset is in progress');
    return new Promise<ResetOutcome>((resolve, reject) => {
      this.pending = {
        request,
        settle: (o) => (o instanceof Error ? reject(o) : resolve(o)),
      };
      this.wake?.();
    });
  }

  /** Resolves when a request is waiting (at once if one is). */
  wanted(): Promise<void> {
    if (this.pending) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = () => {
        this.wake = null;
        resolve();
      };
    });
  }

  /** Carries out the waiting request with `apply` and answers the requester. */
  async serve(apply: (r: ResetRequest) => Promise<ResetOutcome>): Promise<void> {
    const p = this.pending;
    if (!p) return;
    try {
      p.settle(await apply(p.request));
    } catch (err) {
      p.settle(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.pending = null;
    }
  }

  /** Refuses a waiting request (the connector stops). */
  refuse(reason: string): void {
    this.pending?.settle(new Conflict(reason));
    this.pending = null;
  }
}

export interface SupervisorOptions {
  backoff: BackoffOptions;
  shutdown: AbortSignal;
  log: Logger;
  /** A new session from the pipeline's durable position. */
  session(): { run(): Promise<SessionEnd> };
  resets: ResetRequests;
  /** Plans and applies a reset; runs between two sessions. */
  applyReset(r: ResetRequest): Promise<ResetOutcome>;
  /** Follow mode: moves the sink to the deployment the views point at; runs between two sessions. */
  applySwitch?(): Promise<void>;
  /**
   * How often to try again while another process still streams from the slot
   * (SLOTLINE_STANDBY_POLL_MS, default 1 s).
   */
  slotBusyPollMs: number;
  /** A session failed and the next one waits `delayMs` (told once per busy-slot streak). */
  onRetry(err: SlotlineError, delayMs: number): void;
}

/**
 * Runs one replication session at a time and decides from how each ended:
 * shutdown ends the run, a reset is applied between two sessions, a
 * retriable failure waits with capped backoff, anything else is fatal.
 */
export class Supervisor {
  private attempt = 0;
  private slotBusy = false;

  constructor(private readonly o: SupervisorOptions) {}

  /** The session streamed: the next failure starts the backoff afresh. */
  streaming(): void {
    this.attempt = 0;
    this.slotBusy = false;
  }

  async run(): Promise<void> {
    try {
      for (;;) {
        const end = await this.o.session().run();
        switch (end.kind) {
          case 'shutdown':
            return;
          case 'reset':
            await this.o.resets.serve((r) => this.o.applyReset(r));
            break;
          case 'switch':
            await this.o.applySwitch?.();
            break;
          case 'failed':
            if (this.o.shutdown.aborted) return;
            await this.backoff(end.error);
            break;
          case 'fatal':
            throw end.error;
          default: {
            const never: never = end;
            throw new Error(`unhandled session end ${JSON.stringify(never)}`);
          }
        }
        if (this.o.shutdown.aborted) return;
      }
    } finally {
      this.o.resets.refuse('the connector is stopping');
    }
  }

  private async backoff(err: SlotlineError): Promise<void> {
    if (err.code === 'slot_in_use') return this.pollSlot(err);
    this.slotBusy = false;
    const delay = backoffDelay(this.attempt++, this.o.backoff);
    this.o.onRetry(err, delay);
    await sleep(delay, this.o.shutdown);
  }

  /**
   * "Slot is active for PID" right after taking over means the server has not
   * yet ended the old leader's walsender. That clears by itself within the old
   * session's dead-peer timeout, so the slot is tried every slotBusyPollMs
   * rather than after a backoff that grows to SLOTLINE_RETRY_MAX_MS (a takeover
   * used to wait up to 30 s for nothing), and said once per streak.
   */
  private async pollSlot(err: SlotlineError): Promise<void> {
    if (!this.slotBusy) this.o.onRetry(err, this.o.slotBusyPollMs);
    this.slotBusy = true;
    await sleep(this.o.slotBusyPollMs, this.o.shutdown);
  }
}
