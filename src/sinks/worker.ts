import type { Metrics } from '../admin/metrics.js';
import type { Lsn } from '../checkpoint/lsn.js';
import { classifyError, type SlotlineError } from '../errors.js';
import type { Logger } from '../log.js';
import { type BackoffOptions, retry } from '../retry.js';
import { Batch } from './batch.js';
import type { InflightQueue } from './inflight.js';
import type { Sink } from './sink.js';
import { TIMESCALE_SINK } from './timescale.js';

export interface SinkWorkerOptions {
  /** Aborted only after the graceful flush (or at the hard deadline). */
  signal: AbortSignal;
  backoff: BackoffOptions;
  log: Logger;
  metrics?: Metrics;
  /** The sink now holds everything up to `lsn`. */
  onDurable(lsn: Lsn): void;
  onRetry?(err: SlotlineError): void;
}

/**
 * Feeds one sink from the in-flight queue, batch by batch and in order (the
 * batches already waiting merged into one write, up to SLOTLINE_BATCH_MAX_ROWS). A
 * failed write is retried with backoff (the batch stays queued, the queue
 * fills, the stream pauses, the slot is not acknowledged meanwhile); an error
 * that is not retriable ends the worker and, with it, the connector.
 */
export async function runSinkWorker(
  sink: Sink,
  queue: InflightQueue,
  opts: SinkWorkerOptions,
): Promise<void> {
  let failing = false;
  for (;;) {
    const next = await queue.next(sink.name, opts.signal);
    if (!next) return;
    // What else is sealed and waiting goes in the same write, up to a batch's bound.
    const run = [next, ...queue.following(sink.name, next)];
    const batch = Batch.merged(run);
    const started = Date.now();
    const ok = await retry(
      () => sink.write(batch),
      (e) => classifyError(e, sink.name),
      {
        ...opts.backoff,
        signal: opts.signal,
        onRetry: (err, attempt, delayMs) => {
          failing = true;
          opts.onRetry?.(err);
          // One line per attempt, and attempts back off: no log flood.
          opts.log.warn(
            { code: err.code, attempt, delayMs, rows: batch.rows },
            `write failed: ${err.message}; retrying`,
          );
        },
      },
    );
    if (ok === undefined && opts.signal.aborted) return;
    if (failing) {
      failing = false;
      opts.log.info('writes succeed again');
    }
    for (const b of run) queue.release(sink.name, b);
    record(opts.metrics, sink.name, batch, (Date.now() - started) / 1000);
    opts.log.debug(
      { rows: batch.rows, commits: batch.commits, ms: Date.now() - started },
      'batch written',
    );
    if (batch.checkpoint !== null) opts.onDurable(batch.checkpoint);
  }
}

/** Counted once the batch is durable: a retried write is not counted twice. */
function record(m: Metrics | undefined, sink: string, batch: Batch, seconds: number): void {
  if (!m) return;
  m.writeDuration.observe({ sink }, seconds);
  if (batch.rows === 0) return;
  m.batchRows.observe({ sink }, batch.rows);
  m.rowsWritten.inc({ sink }, batch.rows);
  // Dead letters live in the TimescaleDB sink only.
  if (sink !== TIMESCALE_SINK) return;
  for (const c of batch.changes)
    if (c.kind === 'dead_letter') m.deadLetters.inc({ reason: c.letter.code });
}
