import type { Lsn } from '../checkpoint/lsn.js';
import type { Pool, RejectCode, Trade } from '../trades/map.js';

/**
 * What the router hands the sinks: mapped changes in stream order. `lsn` is the
 * commit LSN of the source transaction (for snapshot rows, the slot's
 * consistent point); with `seq` and the source generation it is the change's
 * version (see version.ts), so "newer" is well defined within a transaction too.
 */
export type Change = (
  | { kind: 'trade_upsert'; lsn: Lsn; op: 'insert' | 'update' | 'snapshot'; trade: Trade }
  | { kind: 'trade_delete'; lsn: Lsn; tradeId: string }
  | { kind: 'pool_upsert'; lsn: Lsn; op: 'insert' | 'update' | 'snapshot'; pool: Pool }
  | { kind: 'pool_delete'; lsn: Lsn; poolId: string }
  | { kind: 'truncate'; lsn: Lsn; tables: ('trades' | 'pools')[] }
  | { kind: 'dead_letter'; lsn: Lsn; letter: DeadLetter }
) & {
  /** The source transaction of a streamed change (one object per transaction); absent for snapshot rows. */
  tx?: SourceTx;
  /**
   * Position of a streamed change in its transaction, from 0: with `lsn`, a unique id of the
   * event. Absent: the change belongs to no streamed transaction and sorts before every change
   * committed at `lsn` (snapshot and backfill rows).
   */
  seq?: number;
  /**
   * Source generation of a change re-applied from storage (a dead-letter retry carries the
   * letter's). Absent: the sink's current generation, which every streamed and snapshot change
   * belongs to.
   */
  gen?: number;
};

export interface SourceTx {
  xid: number;
  /** microseconds since 2000-01-01 (PostgreSQL epoch) */
  commitTime: bigint;
}

export interface DeadLetter {
  sourceTable: string;
  operation: 'insert' | 'update' | 'delete' | 'snapshot';
  rowKey: string;
  /** microseconds since 2000-01-01 (PostgreSQL epoch); null for snapshot rows */
  commitTime: bigint | null;
  raw: Record<string, string | null>;
  code: RejectCode;
  reason: string;
}

/**
 * A run of changes a sink writes in one transaction. It may end in the middle
 * of a source transaction: `checkpoint` is then the end of the last
 * transaction that committed inside the batch (or null), so the sink's
 * checkpoint only ever moves at a commit.
 */
export class Batch {
  readonly changes: Change[] = [];
  /** decoded bytes held, for the in-flight bound */
  bytes = 0;
  /** End LSN up to which this batch completes the stream (commit end or idle WAL end). */
  checkpoint: Lsn | null = null;
  /** Commit time (µs since 2000-01-01) of the last commit covered. */
  commitTime: bigint | null = null;
  /** Source transactions committed inside this batch. */
  commits = 0;
  /** Changes and bytes up to the last commit: what follows belongs to a transaction still arriving. */
  committedRows = 0;
  committedBytes = 0;

  constructor(readonly seq: number) {}

  get rows(): number {
    return this.changes.length;
  }

  /** Nothing to write and no checkpoint to move. */
  get empty(): boolean {
    return this.changes.length === 0 && this.checkpoint === null;
  }

  /**
   * Consecutive sealed batches as one: their changes in order, the checkpoint
   * and commit time of the last that has one (checkpoints rise with the
   * stream). Writing it is writing them one after another, in one sink
   * transaction.
   */
  static merged(run: readonly Batch[]): Batch {
    const first = run[0];
    if (!first) throw new Error('Batch.merged of no batch');
    if (run.length === 1) return first;
    const m = new Batch(first.seq);
    for (const b of run) {
      for (const c of b.changes) m.changes.push(c);
      m.bytes += b.bytes;
      if (b.checkpoint !== null) m.checkpoint = b.checkpoint;
      if (b.commitTime !== null) m.commitTime = b.commitTime;
      m.commits += b.commits;
    }
    m.committedRows = m.changes.length;
    m.committedBytes = m.bytes;
    return m;
  }
}
