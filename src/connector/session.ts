import type { DecodeCounter } from '../admin/metrics.js';
import { PgoutputDecoder } from '../decode/pgoutput.js';
import { classifyError, ConnectionError, type SlotlineError } from '../errors.js';
import type { Logger } from '../log.js';
import { sleep } from '../retry.js';
import { ReplicationStream } from '../source/replication.js';
import { pgMicrosToUnixMs } from '../source/wire.js';
import type { ChangeRouter } from '../trades/router.js';
import type { FlowControl } from './flow.js';
import type { Pipeline } from './pipeline.js';

/** How a session ended; the supervisor decides what comes next. */
export type SessionEnd =
  | { kind: 'shutdown' }
  | { kind: 'reset' }
  /** Follow mode: the Ponder views point at another ready deployment. */
  | { kind: 'switch' }
  | { kind: 'failed'; error: SlotlineError }
  | { kind: 'fatal'; error: SlotlineError };

export interface SessionOptions {
  url: string;
  slot: string;
  publication: string;
  /** SLOTLINE_STATUS_INTERVAL_MS (default 10 s): status updates on a timer. */
  statusIntervalMs: number;
  /** SLOTLINE_ACK_INTERVAL_MS (default 200 ms): least time between two acks on progress. */
  ackIntervalMs: number;
  /** SLOTLINE_DEAD_PEER_TIMEOUT_MS (default 10 s): see ReplicationOptions. */
  deadPeerTimeoutMs: number;
  /** How long a shutdown waits for the sinks before the final ack (default: 25 s less 2 s). */
  flushTimeoutMs: number;
}

export interface SessionParts {
  pipeline: Pipeline;
  router: ChangeRouter;
  flow: FlowControl;
  counter: DecodeCounter;
  log: Logger;
  /** Aborted on SIGTERM/SIGINT. */
  shutdown: AbortSignal;
  /** Resolves when an operator asks for an LSN reset. */
  resetWanted(): Promise<void>;
  /** Follow mode: resolves when a deployment switch is due (absent: never). */
  switchWanted?(): Promise<void>;
  /** Rejects when something fails for good (a sink, the leader lock). */
  fatal: Promise<never>;
  /** Before the final flush: stop everything else that could push into the pipeline. */
  quiesce(): Promise<void>;
  /** The server streams to us. */
  onStreaming(): void;
}

/**
 * One replication connection: START_REPLICATION at the pipeline's durable
 * position, decode, route into the pipeline, acknowledge what the sinks hold,
 * and end in one of four ways. Whatever the ending, nothing is checkpointed
 * past the last commit, and on shutdown the final acknowledgement equals the
 * sinks' checkpoint and has reached the server before `run()` resolves.
 */
export class ReplicationSession {
  private stream: ReplicationStream | null = null;
  private closed = false;
  private statusTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly opts: SessionOptions,
    private readonly parts: SessionParts,
  ) {}

  /** unix ms of the last message or keepalive from the server (0 before the first). */
  get lastServerContactAt(): number {
    return this.stream?.lastMessageAt ?? 0;
  }

  async run(): Promise<SessionEnd> {
    const { pipeline, router, flow } = this.parts;
    const from = pipeline.flushLsn();
    router.reset();
    router.skipBefore = from;
    pipeline.commits.clear();
    const stream = this.open(from);
    const unsubscribe = pipeline.onDurable(() => this.scheduleStatus());
    const endings = this.endings();
    try {
      const early = await this.until(
        stream.start().then(() => null),
        endings.next,
      );
      if (early) return await this.end(stream, early);
      flow.attach(stream);
      this.parts.onStreaming();
      const how = await this.until(
        stream.ended.then(() => {
          throw new ConnectionError('source: replication ended');
        }),
        endings.next,
      );
      return await this.end(stream, how ?? { kind: 'shutdown' });
    } finally {
      endings.dispose();
      unsubscribe();
      if (this.statusTimer) clearTimeout(this.statusTimer);
      flow.attach(null);
    }
  }

  private open(from: bigint): ReplicationStream {
    const { router, pipeline, counter } = this.parts;
    const decoder = new PgoutputDecoder();
    const stream = new ReplicationStream({
      url: this.opts.url,
      slot: this.opts.slot,
      publication: this.opts.publication,
      startLsn: from,
      statusIntervalMs: this.opts.statusIntervalMs,
      deadPeerTimeoutMs: this.opts.deadPeerTimeoutMs,
      log: this.parts.log.child({ component: 'replication' }),
      flushLsn: () => pipeline.flushLsn(),
      onMessage: (_lsn, chunk, offset) => {
        if (this.closed) return;
        const msg = decoder.decode(chunk, offset);
        router.onMessage(msg, chunk.length - offset);
        counter.onMessage(msg);
        if (msg.tag === 'commit' && msg.commitLsn >= router.skipBefore) {
          pipeline.commits.routed(msg.endLsn, pgMicrosToUnixMs(msg.commitTime));
        }
        if (pipeline.queue.full) this.backpressure();
      },
      onKeepalive: (walEnd) => {
        if (!this.closed) router.onKeepalive(walEnd);
      },
    });
    this.stream = stream;
    return stream;
  }

  /**
   * What ends a session from outside: shutdown, an operator's reset, a part
   * that failed for good. Made once per session; dispose() drops its listener,
   * so reconnects do not pile listeners onto the shutdown signal.
   */
  private endings(): { next: Promise<SessionEnd>; dispose(): void } {
    const { shutdown, fatal } = this.parts;
    let onAbort = () => undefined as void;
    const stopped = new Promise<SessionEnd>((resolve) => {
      onAbort = () => resolve({ kind: 'shutdown' });
      if (shutdown.aborted) onAbort();
      else shutdown.addEventListener('abort', onAbort, { once: true });
    });
    const reset = this.parts.resetWanted().then((): SessionEnd => ({ kind: 'reset' }));
    const follow = this.parts.switchWanted?.().then((): SessionEnd => ({ kind: 'switch' }));
    const failed = fatal.catch((err: unknown): SessionEnd => ({
      kind: 'fatal',
      error: classifyError(err, 'sink'),
    }));
    return {
      next: Promise.race([stopped, reset, failed, ...(follow ? [follow] : [])]),
      dispose: () => shutdown.removeEventListener('abort', onAbort),
    };
  }

  /** Waits for `work`, or for whatever ends the session first. */
  private async until(work: Promise<null>, ends: Promise<SessionEnd>): Promise<SessionEnd | null> {
    const failed = work.catch((err: unknown): SessionEnd => {
      const error = classifyError(err, 'source');
      return error.retriable ? { kind: 'failed', error } : { kind: 'fatal', error };
    });
    return Promise.race([failed, ends]);
  }

  private backpressure(): void {
    const { flow, pipeline } = this.parts;
    if (flow.has('backpressure')) return;
    flow.hold('backpressure');
    void pipeline.queue.drained().then(() => flow.release('backpressure'));
  }

  /** An ack soon after a sink made progress, at most one per ackIntervalMs. */
  private scheduleStatus(): void {
    const stream = this.stream;
    if (this.statusTimer || !stream || this.closed) return;
    const wait = Math.max(0, this.opts.ackIntervalMs - (Date.now() - stream.lastStatusAt));
    this.statusTimer = setTimeout(() => {
      this.statusTimer = null;
      if (!this.closed) stream.sendStatus(false);
    }, wait);
  }

  private async end(stream: ReplicationStream, how: SessionEnd): Promise<SessionEnd> {
    const { router, flow } = this.parts;
    // From here nothing new is routed or checkpointed: in particular no idle
    // WAL end, which could otherwise land after the last acknowledgement.
    this.closed = true;
    router.reset();
    if (this.statusTimer) clearTimeout(this.statusTimer);
    this.statusTimer = null;
    if (how.kind === 'shutdown') {
      flow.hold('stopping');
      // A backfill or verify that does not stop promptly must not eat the grace period.
      await Promise.race([
        this.parts.quiesce(),
        sleep(Math.min(5000, this.opts.flushTimeoutMs / 2)),
      ]);
      await this.flushBefore(this.opts.flushTimeoutMs);
      // The final status update carries exactly what the sinks hold; stop()
      // waits for the server's answer to CopyDone, which it sends only after
      // it has processed that update.
      await stream.stop();
      return how;
    }
    if (how.kind === 'switch') {
      // What committed is written and acknowledged; the switch then runs with no stream.
      await this.flushBefore(null);
      await stream.stop();
      return how;
    }
    // No goodbye: after a reset request a final ack would confirm the old
    // position and close the very window the replay needs.
    stream.destroy();
    if (how.kind !== 'fatal') await this.flushBefore(null);
    return how;
  }

  /** Flushes what committed; gives up at the deadline, or on shutdown when there is none. */
  private async flushBefore(timeoutMs: number | null): Promise<void> {
    const { pipeline, shutdown, log } = this.parts;
    let timer: NodeJS.Timeout | undefined;
    let onAbort = () => undefined as void;
    const gaveUp = new Promise<'gave up'>((resolve) => {
      onAbort = () => resolve('gave up');
      if (timeoutMs !== null) timer = setTimeout(onAbort, timeoutMs);
      else if (shutdown.aborted) onAbort();
      else shutdown.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const flushed = await Promise.race([
        pipeline.flushCommitted().then(
          () => 'flushed' as const,
          () => 'gave up' as const,
        ),
        gaveUp,
      ]);
      if (flushed === 'gave up' && timeoutMs !== null)
        log.warn('shutdown: sinks did not flush in time; unflushed changes will be replayed');
    } finally {
      clearTimeout(timer);
      shutdown.removeEventListener('abort', onAbort);
    }
  }
}
