import type { Lsn } from '../checkpoint/lsn.js';
import { Batch, type Change } from './batch.js';

export interface InflightOptions {
  /** Most changes in one batch (SLOTLINE_BATCH_MAX_ROWS, default 5000). */
  batchMaxRows: number;
  /** Bound on changes held until every sink has them (SLOTLINE_INFLIGHT_MAX_ROWS, default 50000). */
  maxRows: number;
  /** The same bound in decoded bytes (SLOTLINE_INFLIGHT_MAX_BYTES, default 64 MiB). */
  maxBytes: number;
}

/**
 * The bounded queue between the replication stream and the sinks. The stream
 * appends to an open batch; a batch is sealed when it is full or when a sink
 * that has nothing else to do takes it (so batches stay small when the sinks
 * keep up and grow to batchMaxRows when they do not). Each sink reads every
 * batch in order through its own cursor; a batch is dropped once all have
 * written it. `full` tells the stream to stop reading the socket; `onDrain`
 * fires when the queue is back under half of its bounds.
 *
 * Progress whatever the bounds: a batch also seals at half the row bound and a
 * quarter of the byte bound, and when the queue is full what stays in the open
 * batch is less than half the bounds. So the sinks can always bring the queue
 * below half, and drained() always fires; otherwise a transaction that filled
 * the bounds before its commit waited for a commit the paused stream could
 * never read (issue 11.7). A sealed batch ends at its last commit when it has
 * one; it ends mid-transaction only when one transaction outgrows the bounds,
 * and its checkpoint moves only at commits (Batch.checkpoint).
 */
export class InflightQueue {
  private readonly sealed: Batch[] = [];
  private open: Batch;
  private nextSeq = 0;
  private readonly cursors = new Map<string, number>();
  private readonly waiters = new Map<string, () => void>();
  private heldRows = 0;
  private heldBytes = 0;
  private drainListeners: (() => void)[] = [];
  private idleListeners: (() => void)[] = [];
  private barriers: { seq: number; resolve: () => void }[] = [];

  private readonly sealRows: number;
  private readonly sealBytes: number;

  constructor(
    private readonly opts: InflightOptions,
    sinks: readonly string[],
  ) {
    this.sealRows = Math.max(1, Math.min(opts.batchMaxRows, Math.floor(opts.maxRows / 2)));
    // A quarter: the sinks write one batch while the stream fills the next, and
    // serializing a batch makes a transient copy of about its size.
    this.sealBytes = Math.max(1, Math.floor(opts.maxBytes / 4));
    this.open = new Batch(this.nextSeq++);
    for (const s of sinks) this.cursors.set(s, 0);
  }

  get rows(): number {
    return this.heldRows;
  }

  get bytes(): number {
    return this.heldBytes;
  }

  get full(): boolean {
    return this.heldRows >= this.opts.maxRows || this.heldBytes >= this.opts.maxBytes;
  }

  /** Nothing is held: every change and checkpoint has been written by every sink. */
  get idle(): boolean {
    return this.sealed.length === 0 && this.open.empty;
  }

  push(change: Change, bytes: number): void {
    this.open.changes.push(change);
    this.open.bytes += bytes;
    this.heldRows += 1;
    this.heldBytes += bytes;
    const o = this.open;
    const sized = o.changes.length >= this.sealRows || o.bytes >= this.sealBytes;
    // A full queue needs what committed to be writable, not a transaction still arriving.
    if (sized || (this.full && o.committedRows > 0)) {
      this.sealAtCommit();
      this.wake();
    }
    // ...unless holding that transaction back could keep a full queue from ever draining
    // below half its bounds.
    const t = this.open;
    if (
      this.full &&
      (t.changes.length >= this.opts.maxRows / 2 || t.bytes >= this.opts.maxBytes / 2)
    ) {
      this.seal();
      this.wake();
    }
  }

  /** A source transaction (or an idle stretch of WAL) ends at `lsn`. */
  commit(lsn: Lsn, commitTime: bigint | null, isTransaction: boolean): void {
    const b = this.open;
    if (b.checkpoint === null || lsn > b.checkpoint) b.checkpoint = lsn;
    if (commitTime !== null) b.commitTime = commitTime;
    if (isTransaction) b.commits += 1;
    b.committedRows = b.changes.length;
    b.committedBytes = b.bytes;
    this.wake();
  }

  /**
   * Forgets the changes after the last commit: the transaction they belong to
   * did not end in this stream and comes again, whole, when replication
   * restarts from the checkpoint. Writing that tail would show a reader half a
   * source transaction and send it to Kafka twice. Returns the rows dropped.
   */
  discardUncommitted(): number {
    const b = this.open;
    const rows = b.changes.length - b.committedRows;
    if (rows === 0) return 0;
    const bytes = b.bytes - b.committedBytes;
    b.changes.length = b.committedRows;
    b.bytes = b.committedBytes;
    this.heldRows -= rows;
    this.heldBytes -= bytes;
    this.notifyDrained();
    return rows;
  }

  /**
   * Resolves once everything up to the last commit is durable in every sink;
   * the uncommitted tail is dropped first (see discardUncommitted).
   */
  flushCommitted(): Promise<void> {
    this.discardUncommitted();
    return this.flushAll();
  }

  /** The next batch for `sink`, waiting until there is one or the signal aborts. */
  async next(sink: string, signal: AbortSignal): Promise<Batch | null> {
    for (;;) {
      if (signal.aborted) return null;
      const b = this.peek(sink);
      if (b) return b;
      await new Promise<void>((resolve) => {
        const done = () => {
          signal.removeEventListener('abort', done);
          this.waiters.delete(sink);
          resolve();
        };
        this.waiters.set(sink, done);
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }

  /** A batch for `sink` if one is ready now; seals the open batch when it holds a commit. */
  peek(sink: string): Batch | null {
    const cursor = this.cursor(sink);
    const first = this.sealed[0];
    const index = first ? cursor - first.seq : 0;
    if (index < this.sealed.length) return this.sealed[index] ?? null;
    // Take the open batch only at a commit: a transaction still arriving is
    // better written in one piece, unless it fills a batch by itself.
    if (this.open.checkpoint !== null && cursor === this.open.seq) {
      this.sealAtCommit();
      return this.sealed[this.sealed.length - 1] ?? null;
    }
    return null;
  }

  /**
   * The sealed batches that follow `first` for `sink`, in order, while they
   * and `first` hold at most batchMaxRows changes in all. A sink that fell
   * behind writes what piled up in one transaction: the batches were sealed
   * at the pace of the fastest sink, and each transaction has a cost of its
   * own (the brokers spent about 25 ms of CPU on each exactly-once Kafka
   * transaction in the benchmark, whatever its size).
   */
  following(sink: string, first: Batch): Batch[] {
    const base = this.sealed[0];
    if (!base || this.cursor(sink) !== first.seq) return [];
    const out: Batch[] = [];
    let rows = first.rows;
    for (let i = first.seq - base.seq + 1; i < this.sealed.length; i++) {
      const b = this.sealed[i] as Batch;
      if (rows + b.rows > this.opts.batchMaxRows) break;
      rows += b.rows;
      out.push(b);
    }
    return out;
  }

  /** `sink` has durably written `batch`. */
  release(sink: string, batch: Batch): void {
    const cursor = this.cursor(sink);
    if (batch.seq !== cursor)
      throw new Error(`sink ${sink} released batch ${batch.seq} out of order (expected ${cursor})`);
    this.cursors.set(sink, cursor + 1);
    const wasFull = this.full;
    let minCursor = Infinity;
    for (const c of this.cursors.values()) minCursor = Math.min(minCursor, c);
    while (this.sealed.length > 0 && (this.sealed[0] as Batch).seq < minCursor) {
      const done = this.sealed.shift() as Batch;
      this.heldRows -= done.rows;
      this.heldBytes -= done.bytes;
    }
    if (wasFull || this.drainListeners.length > 0) this.notifyDrained();
    if (this.barriers.length > 0) {
      const first = this.sealed[0];
      const doneBelow = first ? first.seq : this.open.seq;
      const ready = this.barriers.filter((b) => b.seq < doneBelow);
      this.barriers = this.barriers.filter((b) => b.seq >= doneBelow);
      for (const b of ready) b.resolve();
    }
    if (this.idle) {
      const listeners = this.idleListeners;
      this.idleListeners = [];
      for (const l of listeners) l();
    }
  }

  /** Resolves once the queue is back under half its bounds. */
  drained(): Promise<void> {
    if (!this.full) return Promise.resolve();
    return new Promise((resolve) => this.drainListeners.push(resolve));
  }

  /** Seals what is open (even mid-transaction) and resolves when every sink has written everything. */
  flushAll(): Promise<void> {
    if (!this.open.empty) {
      this.seal();
      this.wake();
    }
    if (this.idle) return Promise.resolve();
    return new Promise((resolve) => this.idleListeners.push(resolve));
  }

  /**
   * Resolves once everything pushed so far is durable in every sink (the open
   * batch is sealed now, even mid-transaction), without waiting for the queue
   * to go idle under continuing load.
   */
  barrier(): Promise<void> {
    if (!this.open.empty) {
      this.seal();
      this.wake();
    }
    const last = this.sealed[this.sealed.length - 1];
    if (!last) return Promise.resolve();
    const seq = last.seq;
    return new Promise((resolve) => this.barriers.push({ seq, resolve }));
  }

  private seal(): void {
    const b = this.open;
    this.sealed.push(b);
    this.open = new Batch(this.nextSeq++);
  }

  /**
   * Seals a full batch at its last commit when it has one, carrying the
   * transaction still arriving into the next batch: a batch then ends
   * mid-transaction only when one transaction is larger than a batch.
   */
  private sealAtCommit(): void {
    const b = this.open;
    this.seal();
    const from = b.committedRows;
    if (from === 0 || from === b.changes.length) return;
    const next = this.open;
    for (let i = from; i < b.changes.length; i++) next.changes.push(b.changes[i] as Change);
    b.changes.length = from;
    next.bytes = b.bytes - b.committedBytes;
    b.bytes = b.committedBytes;
  }

  private notifyDrained(): void {
    if (this.heldRows > this.opts.maxRows / 2 || this.heldBytes > this.opts.maxBytes / 2) return;
    const listeners = this.drainListeners;
    this.drainListeners = [];
    for (const l of listeners) l();
  }

  private cursor(sink: string): number {
    const c = this.cursors.get(sink);
    if (c === undefined) throw new Error(`unknown sink ${sink}`);
    return c;
  }

  private wake(): void {
    for (const w of [...this.waiters.values()]) w();
  }
}
