import type { Lsn } from '../checkpoint/lsn.js';
import type { BackfillInfo, BackfillRange } from '../source/backfill.js';
import type { SlotHealth } from '../source/slot-health.js';
import type { VerifyService, VerifyStatus } from '../verify/service.js';
import type { DeadLetterService } from '../deadletters/service.js';

export type Phase =
  'starting' | 'standby' | 'snapshotting' | 'streaming' | 'retrying' | 'stopping' | 'stopped';

/** What the connector is doing, as the HTTP surface shows it. */
export interface ConnectorView {
  phase: Phase;
  /** This replica holds the leader lock (it leads, also while it sets up or snapshots). */
  leading: boolean;
  /** The last error's full message: for the log and callers with the admin token only. */
  lastError: string | null;
  /** Its code (connection, slot_in_use, …): what callers without the token see. */
  lastErrorCode: string | null;
  errorCount: number;
  /** unix ms */
  startedAt: number;
  /** Why the replication socket is not read now (empty: it is). */
  pauseReasons: string[];
  /** unix ms since which the socket has been read without a pause */
  readingSince: number | null;
  /** unix ms of the last message or keepalive from the server (0: none yet) */
  lastServerContactAt: number;
  inflight: { rows: number; bytes: number; transactions: number };
  /** The flush LSN acknowledged to the server (null before streaming). */
  acknowledged: Lsn | null;
  commitLagSeconds: number;
  /** unix ms of the commit time of the last transaction durable everywhere */
  lastDurableCommitMs: number | null;
  throughputPerSecond: number;
  transactions: number;
  changes: number;
  deadLetters: number;
  slot: SlotHealth | null;
  /** The publication no longer feeds both source tables: what happened and the fix. */
  publicationProblem: string | null;
  backfill: BackfillInfo | null;
  verify: VerifyStatus | null;
  /** Follow mode (SLOTLINE_PONDER_VIEWS_SCHEMA); null otherwise. */
  ponder: PonderStatus | null;
}

/** Follow mode in /status. */
export interface PonderStatus {
  viewsSchema: string;
  /** The deployment schema slotline streams: the one whose rows the sink holds. */
  schema: string | null;
  /** The schema the views select from now (null: they cannot be resolved; see `problem`). */
  viewsPointAt: string | null;
  /** That deployment's `_ponder_meta` says is_ready = 1. */
  ready: boolean;
  switching: boolean;
  /** Why the views are not followed right now (unresolved views, a failed switch). */
  problem: string | null;
  lastSwitch: {
    from: string | null;
    to: string;
    /** ISO time the switch committed */
    at: string;
    durationMs: number;
    generation: number;
    lsn: string;
    rowsCopied: number;
    tradesWritten: number;
    tradesRemoved: number;
    tradesKept: number;
  } | null;
}

export interface ResetOutcome {
  mode: 'replay' | 'skip' | 'noop';
  from: Lsn;
  to: Lsn;
}

/**
 * The port through which admin/ drives the connector. admin/ owns it; the
 * connector implements it; nothing in admin/ knows how the connector is built.
 * Refusals are domain errors (errors.ts), mapped to HTTP status at the edge.
 */
export interface ConnectorPort {
  view(): ConnectorView;
  /**
   * Stop / resume reading the slot on an operator's word (status updates go
   * on). The pause is the deployment's: stored beside the leader epoch in the
   * sink, so whoever leads next keeps it. Only the leader takes it (Unavailable
   * otherwise, or when it cannot be stored).
   */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Stops the stream, checks the target against the slot, moves every sink, streams again. */
  resetLsn(target: Lsn, force: boolean): Promise<ResetOutcome>;
  startBackfill(range: BackfillRange): Promise<BackfillInfo>;
  cancelBackfill(): Promise<BackfillInfo>;
  /** Null while the connector does not lead (standby, starting, stopped). */
  deadLetters(): DeadLetterService | null;
  verify(): VerifyService | null;
}
