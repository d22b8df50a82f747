import type { Metrics } from '../admin/metrics.js';
import type { Config } from '../config.js';
import { classifyError, Conflict } from '../errors.js';
import type { Logger } from '../log.js';
import { sleep } from '../retry.js';
import type { Backfiller } from '../source/backfill.js';
import {
  parseVerifyRequest,
  type TimeSpan,
  type VerifyReport,
  type VerifyRequest,
} from './buckets.js';
import { runVerify } from './verify.js';

export interface VerifyServiceOptions {
  cfg: Pick<
    Config,
    | 'sourceUrl'
    | 'sinkUrl'
    | 'sourceSchema'
    | 'sinkSchema'
    | 'slot'
    | 'verifyIntervalMs'
    | 'verifyBucketSeconds'
    | 'verifyLookbackSeconds'
    | 'verifyRepair'
  >;
  /** The connector's backfiller: a repair re-reads buckets through it. */
  backfiller: Pick<Backfiller, 'start' | 'info'>;
  metrics: Metrics;
  log: Logger;
}

/** What /status shows of the verifies. */
export interface VerifyStatus {
  running: boolean;
  /** null: never ran since start */
  last: Omit<VerifyReport, 'mismatches'> | null;
  lastError: string | null;
}

const BACKFILL_CHUNK = 5000;

/**
 * Verify inside the running connector: POST /api/sync/run and, with
 * SLOTLINE_VERIFY_INTERVAL_MS, a periodic pass. One verify at a time; a repair
 * backfills through the connector's own backfiller, one span after another.
 */
export class VerifyService {
  private current: Promise<VerifyReport> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly stopping = new AbortController();
  private last: VerifyReport | null = null;
  private lastError: string | null = null;

  constructor(private readonly opts: VerifyServiceOptions) {}

  /** A request from a JSON body, with the configured defaults. Throws InvalidRequest. */
  request(body: Record<string, unknown>, repair: boolean): VerifyRequest {
    const c = this.opts.cfg;
    return parseVerifyRequest(body, {
      bucketSeconds: c.verifyBucketSeconds,
      lookbackSeconds: c.verifyLookbackSeconds,
      now: Math.floor(Date.now() / 1000),
      repair,
    });
  }

  /** Runs one verify, after the one that is running (verifies never overlap). */
  async run(req: VerifyRequest): Promise<VerifyReport> {
    while (this.current) await this.current.catch(() => undefined);
    if (this.stopping.signal.aborted) throw new Conflict('the connector is stopping');
    const c = this.opts.cfg;
    const m = this.opts.metrics;
    const run = runVerify({
      sourceUrl: c.sourceUrl,
      sinkUrl: c.sinkUrl,
      sourceSchema: c.sourceSchema,
      sinkSchema: c.sinkSchema,
      slot: c.slot,
      request: req,
      backfill: (span) => this.backfill(span),
      log: this.opts.log,
      signal: this.stopping.signal,
    }).then(
      (report) => {
        this.last = report;
        this.lastError = report.error;
        m.verifyBucketsChecked.inc(report.buckets.checked);
        m.verifyBucketsMismatched.set(report.buckets.remaining);
        m.verifyRowsRepaired.inc({ action: 'recopied' }, report.rows.recopied);
        m.verifyRowsRepaired.inc({ action: 'deleted' }, report.rows.deleted);
        m.verifyLastRunTimestampSeconds.set(Date.now() / 1000);
        const summary = {
          range: report.range,
          buckets: report.buckets,
          rows: report.rows,
          sinkBehind: report.sinkBehind,
          ms: report.durationMs,
        };
        if (report.ok) this.opts.log.info(summary, 'verify: source and sink match');
        else this.opts.log.warn(summary, 'verify: buckets differ between source and sink');
        return report;
      },
      (err: unknown) => {
        const e = classifyError(err, 'verify');
        this.lastError = e.message;
        m.errors.inc({ kind: e.code, where: 'verify' });
        this.opts.log.warn({ code: e.code }, `verify failed: ${e.message}`);
        throw e;
      },
    );
    this.current = run;
    void run
      .finally(() => {
        if (this.current === run) this.current = null;
      })
      .catch(() => undefined);
    return run;
  }

  status(): VerifyStatus {
    const last = this.last;
    if (!last) return { running: this.current !== null, last: null, lastError: this.lastError };
    const { mismatches: _omitted, ...rest } = last;
    return { running: this.current !== null, last: rest, lastError: this.lastError };
  }

  /** Starts the periodic verify when SLOTLINE_VERIFY_INTERVAL_MS > 0. */
  start(): void {
    const every = this.opts.cfg.verifyIntervalMs;
    if (every <= 0 || this.timer) return;
    const tick = () => {
      this.timer = null;
      if (this.stopping.signal.aborted) return;
      const again = () => {
        if (!this.stopping.signal.aborted) this.timer = setTimeout(tick, every).unref();
      };
      if (this.current) return again();
      this.run(this.request({}, this.opts.cfg.verifyRepair)).then(again, again);
    };
    this.timer = setTimeout(tick, every).unref();
  }

  /** Stops the timer and cancels a running verify (its backfill waits end). */
  async stop(): Promise<void> {
    this.stopping.abort();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.current?.catch(() => undefined);
  }

  /** One backfill of [from, to), after any that is running; resolves with its rows once durable. */
  private async backfill(span: TimeSpan): Promise<number> {
    const signal = this.stopping.signal;
    const b = this.opts.backfiller;
    for (;;) {
      if (signal.aborted) throw new Error('verify cancelled: the connector is stopping');
      if (b.info()?.state === 'running') {
        await sleep(200, signal);
        continue;
      }
      try {
        const job = await b.start({
          fromTs: span.from,
          toTs: span.to,
          fromId: null,
          toId: null,
          chunkSize: BACKFILL_CHUNK,
        });
        // The backfiller updates its job in place.
        while (job.state === 'running' && !signal.aborted) await sleep(100, signal);
        if (job.state === 'running') throw new Error('verify cancelled: the connector is stopping');
        if (job.state !== 'done')
          throw new Error(`backfill ${job.id} of the repair ${job.state}: ${job.error ?? ''}`);
        return job.rows;
      } catch (err) {
        // Someone started a backfill in between: wait for it, then ours.
        if (err instanceof Conflict) {
          await sleep(200, signal);
          continue;
        }
        throw err;
      }
    }
  }
}
