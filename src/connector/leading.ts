import type pg from 'pg';
import { DeadLetterService } from '../deadletters/service.js';
import type { Metrics } from '../admin/metrics.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { Backfiller } from '../source/backfill.js';
import { Heartbeat } from '../source/heartbeat.js';
import { PublicationWatch } from '../source/publication-watch.js';
import { WatermarkReader } from '../source/watermark.js';
import type { ChangeRouter } from '../trades/router.js';
import { VerifyService } from '../verify/service.js';
import type { Pipeline } from './pipeline.js';

export interface LeaderServicesOptions {
  cfg: Config;
  source: pg.Pool;
  sink: pg.Pool;
  router: ChangeRouter;
  pipeline: Pipeline;
  metrics: Metrics;
  log: Logger;
}

/**
 * What runs beside the stream while this replica leads: the heartbeat,
 * backfills, the periodic verify and dead-letter handling. Started once the
 * start position is known; quiesced before the final flush, so that nothing
 * enters the pipeline while it drains.
 */
export class LeaderServices {
  readonly backfiller: Backfiller;
  readonly verify: VerifyService;
  readonly deadLetters: DeadLetterService;
  private readonly heartbeat: Heartbeat;
  private readonly reader: WatermarkReader;
  private readonly publication: PublicationWatch;
  private backfillResumed = false;
  private active = false;

  constructor(private readonly o: LeaderServicesOptions) {
    const { cfg, metrics, log } = o;
    this.heartbeat = new Heartbeat({
      pool: o.source,
      intervalMs: cfg.heartbeatIntervalMs,
      slot: cfg.slot,
      log: log.child({ component: 'heartbeat' }),
    });
    // Backfill chunks and dead-letter retries re-read the source through one
    // watermark window each; a chunk is at most a quarter of the in-flight bound.
    const quarter = Math.max(1, Math.floor(cfg.inflightMaxRows / 4));
    this.reader = new WatermarkReader({
      slot: cfg.slot,
      source: o.source,
      router: o.router,
      flushLsn: () => o.pipeline.flushLsn(),
      log: log.child({ component: 'watermarks' }),
    });
    this.backfiller = new Backfiller({
      slot: cfg.slot,
      sourceSchema: cfg.sourceSchema,
      source: o.source,
      sink: o.sink,
      router: o.router,
      reader: this.reader,
      queue: o.pipeline.queue,
      maxChunkRows: quarter,
      metrics,
      log: log.child({ component: 'backfill' }),
    });
    this.verify = new VerifyService({
      cfg,
      backfiller: this.backfiller,
      metrics,
      log: log.child({ component: 'verify' }),
    });
    this.publication = new PublicationWatch({
      pool: o.source,
      schema: cfg.sourceSchema,
      publication: cfg.publication,
      // In follow mode the deployment switch alone decides which tables it holds.
      repair: cfg.autoSetup && cfg.ponderViewsSchema === null,
      intervalMs: 10_000,
      log: log.child({ component: 'publication' }),
      onChange: (problem) => metrics.publicationProblem.set(problem ? 1 : 0),
    });
    this.deadLetters = new DeadLetterService({
      slot: cfg.slot,
      sink: o.sink,
      source: o.source,
      sourceSchema: cfg.sourceSchema,
      maxKeysPerRead: Math.min(1000, quarter),
      retentionDays: cfg.deadLetterRetentionDays,
      metrics,
      log: log.child({ component: 'dead-letters' }),
    });
  }

  /** Why the stream may be losing changes although it runs (null: the publication is whole). */
  get publicationProblem(): string | null {
    return this.publication.latest?.message ?? null;
  }

  get running(): boolean {
    return this.active;
  }

  async start(): Promise<void> {
    this.active = true;
    this.heartbeat.start();
    this.reader.start();
    // A watch of the previous deployment (follow mode) may have left it at 1; this one reports anew.
    this.o.metrics.publicationProblem.set(0);
    this.publication.start();
    this.verify.start();
    await this.deadLetters.attach(this.o.router, this.o.pipeline.queue, this.reader);
    this.deadLetters.startTimers();
  }

  /** The first stream is up: a backfill that ran when the connector stopped goes on. */
  onStreaming(): void {
    if (this.backfillResumed || !this.active) return;
    this.backfillResumed = true;
    this.backfiller
      .resume()
      .catch((err: unknown) => this.o.log.warn({ err }, 'cannot resume a backfill'));
  }

  /** Stops everything that could still push into the pipeline. Idempotent. */
  async quiesce(): Promise<void> {
    if (!this.active) return;
    this.active = false;
    this.heartbeat.stop();
    await this.verify.stop();
    await this.backfiller.stop();
    this.reader.stop();
    this.publication.stop();
    this.deadLetters.stopTimers();
    this.deadLetters.detach();
  }
}
