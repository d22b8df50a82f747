import type { Lsn } from '../checkpoint/lsn.js';
import type { Checkpoint, ClaimedEpoch, LeaderClaim } from '../checkpoint/store.js';
import type { Batch } from './batch.js';

/**
 * One destination of changes. A sink writes each batch durably and atomically
 * with its own checkpoint (the batch's `checkpoint`, when it has one), so that
 * what it reports as durable is exactly what survives a crash.
 */
export interface Sink {
  /** Stable name; the key of its row in slotline.checkpoints. */
  readonly name: string;
  open(): Promise<void>;
  /** Where this sink stands for the slot; null if it has never run. */
  checkpoint(): Promise<Checkpoint | null>;
  /** Writes `batch`; resolves only once it is durable. Idempotent under replay. */
  write(batch: Batch): Promise<void>;
  /**
   * An operator's LSN reset: this sink holds everything up to `lsn` from now on
   * (backwards: the range is streamed and applied again; forwards: skipped).
   * Called only while no replication stream runs and nothing is in flight.
   */
  resetTo(lsn: Lsn): Promise<void>;
  /**
   * Initial snapshot done at `lsn`: remove what the snapshot did not see (unless
   * `sweep` is false: no snapshot ran), start streaming there.
   */
  completeSnapshot(lsn: Lsn, opts?: CompleteSnapshotOptions): Promise<void>;
  /**
   * Makes this replica the slot's leader for this sink (a new epoch), so that a
   * replica that led before cannot write any more. Called once the leader lock
   * is held and the sink is open, before the first write, in the order of the
   * sinks (TimescaleDB, which holds the epoch, first). Answers with the epoch
   * and the deployment's pause recorded beside it; null from a sink that keeps
   * no epoch of its own (Kafka exactly-once follows TimescaleDB's: its
   * transactional producer is the fence). Optional: a sink without it (Kafka
   * at-least-once) is not fenced.
   */
  claimEpoch?(claim: LeaderClaim): Promise<ClaimedEpoch | null>;
  /**
   * The source schema changed (a Ponder deployment switch): what the sink
   * records as the changes' origin from now on. Optional: only Kafka names it.
   */
  followSchema?(schema: string): void;
  close(): Promise<void>;
}

export interface CompleteSnapshotOptions {
  /** Remove sink rows of older generations (default true); false when no snapshot was copied. */
  sweep?: boolean;
}
