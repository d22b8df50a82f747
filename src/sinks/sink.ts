import type { Lsn } from '../checkpoint/lsn.js';
import type { Checkpoint } from '../checkpoint/store.js';
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
   * Initial snapshot done at `lsn`: start streaming there. When the snapshot
   * `copied` the tables, remove what it did not see; without a copy
   * (SLOTLINE_SNAPSHOT=never) nothing is removed.
   */
  completeSnapshot(lsn: Lsn, copied: boolean): Promise<void>;
  close(): Promise<void>;
}
