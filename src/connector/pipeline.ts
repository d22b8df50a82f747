import type { Metrics } from '../admin/metrics.js';
import { Acker } from '../checkpoint/acker.js';
import { CommitTracker } from '../checkpoint/commit-lag.js';
import type { Lsn } from '../checkpoint/lsn.js';
import { classifyError, type SlotlineError } from '../errors.js';
import type { Logger } from '../log.js';
import type { BackoffOptions } from '../retry.js';
import { InflightQueue } from '../sinks/inflight.js';
import type { Sink } from '../sinks/sink.js';
import { runSinkWorker } from '../sinks/worker.js';

export interface PipelineOptions {
  sinks: readonly Sink[];
  /** SLOTLINE_BATCH_MAX_ROWS (default 5000) */
  batchMaxRows: number;
  /** SLOTLINE_INFLIGHT_MAX_ROWS (default 10000) */
  inflightMaxRows: number;
  /** SLOTLINE_INFLIGHT_MAX_BYTES (default 64 MiB) */
  inflightMaxBytes: number;
  /** Retry of failed sink writes. */
  backoff: BackoffOptions;
  metrics: Metrics;
  log: Logger;
  /** A sink write failed and is retried. */
  onRetry(err: SlotlineError, sink: string): void;
}

/**
 * Everything between the router and the databases: the bounded in-flight
 * queue, one worker per sink, and the acker. It owns what is in flight and
 * what may be acknowledged; others ask. It flushes only what committed, and
 * an LSN reset moves every sink and the acker together.
 */
export class Pipeline {
  readonly queue: InflightQueue;
  /** Commits routed but not yet durable everywhere (commit-time lag). */
  readonly commits = new CommitTracker();
  /** Rejects when a sink fails for good (an error that is not retriable). */
  readonly failed: Promise<never>;
  private fail: (err: SlotlineError) => void = () => undefined;
  private acker: Acker | null = null;
  private readonly stopWorkers = new AbortController();
  private workers: Promise<void>[] = [];
  private readonly durableListeners: ((flushLsn: Lsn) => void)[] = [];
  /** unix ms of the last durable write of any sink */
  lastDurableAt = Date.now();

  constructor(private readonly opts: PipelineOptions) {
    this.queue = new InflightQueue(
      {
        batchMaxRows: opts.batchMaxRows,
        maxRows: opts.inflightMaxRows,
        maxBytes: opts.inflightMaxBytes,
      },
      opts.sinks.map((s) => s.name),
    );
    this.failed = new Promise<never>((_, reject) => {
      this.fail = reject;
    });
    this.failed.catch(() => undefined);
  }

  /** Starts one writer per sink. */
  start(): void {
    this.workers = this.opts.sinks.map((sink) =>
      runSinkWorker(sink, this.queue, {
        signal: this.stopWorkers.signal,
        backoff: this.opts.backoff,
        log: this.opts.log.child({ component: `sink-${sink.name}` }),
        metrics: this.opts.metrics,
        onDurable: (lsn) => this.durable(sink.name, lsn),
        onRetry: (e) => this.opts.onRetry(e, sink.name),
      }).catch((err: unknown) => this.fail(classifyError(err, sink.name))),
    );
  }

  /** From now on, acknowledge from `from` on (the start or snapshot point). */
  startAcking(from: Lsn): void {
    this.acker = new Acker(
      this.opts.sinks.map((s) => s.name),
      from,
    );
  }

  /** The position every sink holds durably: what the slot may be acknowledged up to. */
  flushLsn(): Lsn {
    if (!this.acker) throw new Error('Pipeline.flushLsn() before startAcking()');
    return this.acker.flushLsn();
  }

  get acking(): boolean {
    return this.acker !== null;
  }

  /** Calls `listener` each time a sink made progress; returns how to stop. */
  onDurable(listener: (flushLsn: Lsn) => void): () => void {
    this.durableListeners.push(listener);
    return () => {
      const i = this.durableListeners.indexOf(listener);
      if (i >= 0) this.durableListeners.splice(i, 1);
    };
  }

  /**
   * Waits until everything up to the last commit is durable in every sink;
   * the tail of a transaction still arriving is dropped (it is streamed again,
   * whole, from the checkpoint). Rejects if a sink fails for good.
   */
  flushCommitted(): Promise<void> {
    return Promise.race([this.queue.flushCommitted(), this.failed]);
  }

  /** Waits until every change pushed so far (snapshot rows included) is durable in every sink. */
  flushAll(): Promise<void> {
    return Promise.race([this.queue.flushAll(), this.failed]);
  }

  /**
   * An operator's LSN reset, with no stream running and nothing in flight:
   * every sink's checkpoint and the acker move to `lsn` together.
   */
  async resetTo(lsn: Lsn): Promise<void> {
    if (!this.queue.idle) throw new Error('Pipeline.resetTo() with changes in flight');
    for (const s of this.opts.sinks) await s.resetTo(lsn);
    this.startAcking(lsn);
    this.commits.clear();
  }

  /**
   * A deployment switch moved every sink's checkpoint to `lsn` itself (in the
   * transaction that reconciled it): the acker follows, with nothing in flight.
   */
  restartAt(lsn: Lsn): void {
    if (!this.queue.idle) throw new Error('Pipeline.restartAt() with changes in flight');
    this.startAcking(lsn);
    this.commits.clear();
  }

  /** Stops the writers (after the final flush, or at the hard deadline). */
  async stop(): Promise<void> {
    this.stopWorkers.abort();
    await Promise.allSettled(this.workers);
  }

  private durable(sink: string, lsn: Lsn): void {
    this.lastDurableAt = Date.now();
    this.opts.metrics.sinkCheckpointLsnBytes.set({ sink }, Number(lsn));
    const acker = this.acker;
    if (!acker) return;
    acker.setDurable(sink, lsn);
    const flushed = acker.flushLsn();
    this.commits.durable(flushed);
    const last = this.commits.lastDurableCommitMs;
    if (last !== null) this.opts.metrics.lastCommitTimestampSeconds.set(last / 1000);
    for (const l of this.durableListeners) l(flushed);
  }
}
