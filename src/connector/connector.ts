import { hostname } from 'node:os';
import pg from 'pg';
import { adminControl } from '../admin/control.js';
import type { DeadLetterService } from '../deadletters/service.js';
import { HttpServer } from '../admin/http.js';
import { createMetrics, DecodeCounter, type Metrics } from '../admin/metrics.js';
import type { ConnectorPort, ConnectorView, ResetOutcome } from '../admin/port.js';
import { type Lsn, formatLsn } from '../checkpoint/lsn.js';
import { type ClaimedEpoch, storePause } from '../checkpoint/store.js';
import type { Config } from '../config.js';
import { classifyError, Conflict, type SlotlineError, Unavailable } from '../errors.js';
import type { Logger } from '../log.js';
import { retry } from '../retry.js';
import { runSetup } from '../setup.js';
import { createSinks } from '../sinks/index.js';
import type { Sink } from '../sinks/sink.js';
import type { BackfillInfo, BackfillRange } from '../source/backfill.js';
import { LeaderLock } from '../source/leader.js';
import { SlotMonitor } from '../source/slot-health.js';
import { PoolCache } from '../trades/pools.js';
import { ChangeRouter } from '../trades/router.js';
import type { VerifyService } from '../verify/service.js';
import { DeploymentFollower } from './follow.js';
import { FlowControl } from './flow.js';
import { LeaderServices } from './leading.js';
import { Pipeline } from './pipeline.js';
import { ReplicationSession } from './session.js';
import {
  awaitOperator,
  heldSchema,
  loadPools,
  resumePoint,
  takeSnapshot,
  type StartupDeps,
} from './startup.js';
import { switchDeployment } from './switch.js';
import { liveDeployment, movePublication, publicationCovers } from '../source/ponder.js';
import { type ConnectorState, newConnectorState, StatusBoard } from './status.js';
import { LsnResetter } from './reset.js';
import { ResetRequests, Supervisor } from './supervisor.js';

export interface RunHandles {
  /** Aborted on SIGTERM/SIGINT: stop reading, flush, final ack, close. */
  shutdown: AbortSignal;
  log: Logger;
  /** Filled in as the connector runs (the demo reads it). */
  state?: ConnectorState;
  metrics?: Metrics;
  /** Called once the HTTP server listens (its port, when SLOTLINE_HTTP_PORT is 0 in tests). */
  onHttp?: (port: number) => void;
}

const VERSION = '0.1.0';
/** Longest wait for one step of the shutdown after the final acknowledgement. */
const STOP_STEP_MS = 3000;

/**
 * `slotline run`: the parts of a connector and their lifecycle. Services start
 * in order (HTTP and slot health, the leader lock, set-up, sinks and pipeline,
 * the snapshot or resume point, the services beside the stream, the
 * supervisor of replication sessions) and stop in reverse. It is also the
 * admin port: the HTTP surface drives it only through ConnectorPort.
 */
export class Connector implements ConnectorPort {
  private readonly log: Logger;
  private readonly metrics: Metrics;
  private readonly status: StatusBoard;
  private readonly db: { source: pg.Pool; sink: pg.Pool };
  private readonly slotMonitor: SlotMonitor;
  /** The HTTP listeners: the main one, and the admin one with SLOTLINE_ADMIN_PORT. */
  private readonly http: HttpServer[];
  /** Where the other replicas reach this one's admin routes (null: no HTTP). */
  private readonly self: string | null;
  /** This replica's leader epoch in the sink, once claimed. */
  private claimed: ClaimedEpoch | null = null;
  private readonly leader: LeaderLock;
  private readonly sinks: Sink[];
  private readonly pools: PoolCache;
  private readonly router: ChangeRouter;
  private readonly pipeline: Pipeline;
  private readonly flow = new FlowControl();
  private readonly resets = new ResetRequests();
  private readonly counter: DecodeCounter;
  private readonly resetter: LsnResetter;
  /** Follow mode (SLOTLINE_PONDER_VIEWS_SCHEMA): where the views point, and when to switch. */
  private readonly follower: DeploymentFollower | null;
  /** Rejects when a sink fails for good or leadership is lost: the end of every session. */
  private readonly fatal: Promise<never>;
  private services: LeaderServices | null = null;
  private session: ReplicationSession | null = null;
  private readingSince: number | null = null;
  private progress: NodeJS.Timeout | null = null;

  constructor(
    private readonly cfg: Config,
    private readonly h: RunHandles,
  ) {
    this.log = h.log;
    this.metrics = h.metrics ?? createMetrics({ version: VERSION });
    this.status = new StatusBoard(h.state ?? newConnectorState(), this.metrics);
    this.db = { source: controlPool(cfg.sourceUrl, h.log), sink: controlPool(cfg.sinkUrl, h.log) };
    this.slotMonitor = new SlotMonitor({
      pool: this.db.source,
      slot: cfg.slot,
      metrics: this.metrics,
      log: h.log.child({ component: 'slot' }),
    });
    this.self = advertisedAddress(cfg, h);
    this.http = this.createHttp();
    this.leader = new LeaderLock({
      url: cfg.sourceUrl,
      slot: cfg.slot,
      pollMs: cfg.standbyPollMs,
      leaseMs: cfg.deadPeerTimeoutMs,
      log: h.log.child({ component: 'leader' }),
    });
    this.sinks = createSinks(cfg, h.log);
    this.pools = new PoolCache(cfg.poolJoinColumn);
    this.pipeline = this.createPipeline();
    this.router = new ChangeRouter(
      this.pipeline.queue,
      this.pools,
      {
        sourceSchema: cfg.sourceSchema,
        applyTruncate: cfg.applyTruncate,
        idleAckIntervalMs: cfg.idleAckIntervalMs,
        maxRowBytes: cfg.maxRowBytes,
      },
      h.log.child({ component: 'router' }),
    );
    this.counter = new DecodeCounter(this.metrics);
    this.fatal = Promise.race([this.pipeline.failed, this.leader.lost]);
    this.fatal.catch(() => undefined);
    this.resetter = new LsnResetter({
      source: this.db.source,
      sink: this.db.sink,
      slot: cfg.slot,
      pipeline: this.pipeline,
      log: h.log,
    });
    this.follower =
      cfg.ponderViewsSchema === null
        ? null
        : new DeploymentFollower({
            source: this.db.source,
            viewsSchema: cfg.ponderViewsSchema,
            pollMs: cfg.ponderPollMs,
            backoff: this.backoff(),
            metrics: this.metrics,
            log: h.log.child({ component: 'ponder' }),
          });
    this.flow.onChange((paused) => {
      this.readingSince = paused ? null : (this.readingSince ?? Date.now());
      this.metrics.streamPaused.set(paused ? 1 : 0);
    });
  }

  /** Resolves after a clean shutdown; rejects with a non-retriable SlotlineError. */
  async run(): Promise<void> {
    try {
      await this.startSurface();
      if (!(await this.becomeLeader())) return;
      const from = await this.prepare();
      if (from === null || this.h.shutdown.aborted) return;
      await this.stream(from);
    } finally {
      await this.stop();
    }
  }

  // ---- lifecycle -------------------------------------------------------

  /** Up before anything that may wait on a database: liveness answers while set-up retries. */
  private async startSurface(): Promise<void> {
    for (const server of this.http) await server.start();
    if (this.http[0]) this.h.onHttp?.(this.http[0].port);
    this.slotMonitor.start();
    this.progress = setInterval(() => this.publishProgress(), 1000);
    this.progress.unref();
  }

  /** Hot standby: only the holder of the leader lock sets up and streams. */
  private async becomeLeader(): Promise<boolean> {
    this.status.enter('standby');
    const leading = await this.leader.acquire(this.h.shutdown, (err) => {
      if (err) this.status.noteError(err, 'leader');
      else this.status.clearError();
    });
    if (leading) this.status.setLeading(true);
    return leading;
  }

  /** Set-up, sinks, and the position to stream from (after the initial snapshot, if any). */
  private async prepare(): Promise<Lsn | null> {
    this.status.enter('starting');
    const deps = this.startupDeps();
    // Set-up is retried while the source or sink is unreachable; a real
    // misconfiguration (wal_level, privileges, password) stops here.
    const ready = await this.retrying('setup', () =>
      runSetup(this.cfg, this.log.child({ component: 'setup' }), { create: this.cfg.autoSetup }),
    );
    if (ready === undefined) return null;
    for (const s of this.sinks) await s.open();
    await this.claimEpoch();
    const start = await this.retrying('start', () => resumePoint(deps));
    if (start === undefined) return null;
    this.pipeline.start();
    if (start.kind === 'stream') {
      const held = this.follower ? await heldSchema(deps, start.schema) : null;
      const schema = held ?? this.cfg.sourceSchema;
      this.follow(schema);
      await loadPools(deps, this.pools, schema);
      this.pipeline.startAcking(start.lsn);
      // Ponder redeployed while the connector was down: switch before streaming.
      if (this.follower && !(await publicationCovers(this.db.source, this.cfg.publication, schema)))
        this.follower.resync();
      if (await this.follower?.check().catch(() => null)) await this.applySwitch();
      return this.pipeline.flushLsn();
    }
    this.status.enter('snapshotting');
    const schema = await this.snapshotSchema();
    if (schema === undefined) return null;
    this.follow(schema);
    const lsn = await takeSnapshot(deps, {
      schema,
      router: this.router,
      pipeline: this.pipeline,
      pools: this.pools,
      signal: this.h.shutdown,
    });
    if (lsn !== null) this.pipeline.startAcking(lsn);
    return lsn;
  }

  /**
   * Fences off a replica that led before (its sink writes fail from here on),
   * records where this one serves admin calls, and takes over the deployment's
   * pause: a leader that an operator paused stays paused across a failover.
   */
  private async claimEpoch(): Promise<void> {
    const claim = { holder: `${hostname()}:${process.pid}`, address: this.self };
    for (const s of this.sinks) {
      const claimed = await s.claimEpoch?.(claim);
      if (claimed) this.claimed = claimed;
    }
    if (this.claimed?.paused) {
      this.flow.hold('operator');
      this.log.warn(
        'the deployment is paused by an operator (recorded in the sink): not reading the slot until POST /admin/resume',
      );
    }
  }

  private async stream(from: Lsn): Promise<void> {
    this.log.debug({ from: formatLsn(from) }, 'streaming from the durable position');
    await this.startServices();
    this.follower?.start();
    const supervisor: Supervisor = new Supervisor({
      backoff: this.backoff(),
      shutdown: this.h.shutdown,
      log: this.log,
      resets: this.resets,
      session: () => this.newSession(() => supervisor.streaming()),
      applyReset: (r) => this.resetter.apply(r),
      applySwitch: () => this.switchBetweenSessions(),
      slotBusyPollMs: this.cfg.standbyPollMs,
      onRetry: (err, delayMs) => {
        this.status.enter('retrying');
        this.status.noteError(err, 'source');
        this.log.warn(
          { code: err.code, delayMs },
          `replication interrupted: ${err.message}; reconnecting`,
        );
      },
    });
    await supervisor.run();
  }

  private newSession(onStreaming: () => void): ReplicationSession {
    const session = new ReplicationSession(
      {
        url: this.cfg.sourceUrl,
        slot: this.cfg.slot,
        publication: this.cfg.publication,
        statusIntervalMs: this.cfg.statusIntervalMs,
        ackIntervalMs: this.cfg.ackIntervalMs,
        deadPeerTimeoutMs: this.cfg.deadPeerTimeoutMs,
        flushTimeoutMs: Math.max(0, this.cfg.shutdownTimeoutMs - 2000),
      },
      {
        pipeline: this.pipeline,
        router: this.router,
        flow: this.flow,
        counter: this.counter,
        log: this.log,
        shutdown: this.h.shutdown,
        resetWanted: () => this.resets.wanted(),
        ...(this.follower
          ? { switchWanted: () => (this.follower as DeploymentFollower).wanted() }
          : {}),
        fatal: this.fatal,
        quiesce: async () => {
          this.status.enter('stopping');
          await this.services?.quiesce();
        },
        onStreaming: () => {
          this.status.enter('streaming');
          this.readingSince = this.flow.paused ? null : Date.now();
          onStreaming();
          this.services?.onStreaming();
        },
      },
    );
    this.session = session;
    return session;
  }

  /**
   * Stops in reverse order of start; the stream itself has already ended
   * (flushed, acknowledged). Each step is bounded, so a part that hangs (a
   * database that does not answer) cannot keep the process past its grace period.
   */
  private async stop(): Promise<void> {
    if (this.status.phase !== 'stopped') this.status.enter('stopping');
    const step = (what: string, p: Promise<unknown>) =>
      within(p, STOP_STEP_MS).then((done) => {
        if (!done) this.log.warn(`shutdown: ${what} did not finish in ${STOP_STEP_MS} ms`);
      });
    this.follower?.stop();
    await step('the services beside the stream', this.services?.quiesce() ?? Promise.resolve());
    await step('the sink writers', this.pipeline.stop());
    this.slotMonitor.stop();
    if (this.progress) clearInterval(this.progress);
    this.status.setLeading(false);
    for (const s of this.sinks)
      await step(
        `closing sink ${s.name}`,
        s.close().catch(() => undefined),
      );
    await step(
      'the HTTP server',
      Promise.all(this.http.map((server) => server.stop().catch(() => undefined))),
    );
    await step('the leader lock', this.leader.release());
    await step(
      'the control connections',
      Promise.allSettled([this.db.source.end(), this.db.sink.end()]),
    );
    if (this.pipeline.acking)
      this.log.info(
        { flushLsn: formatLsn(this.pipeline.flushLsn()) },
        'stopped; final position acknowledged',
      );
    this.status.enter('stopped');
  }

  // ---- the admin port ----------------------------------------------------

  view(): ConnectorView {
    const stats = this.router.stats;
    const commits = this.pipeline.commits;
    return {
      phase: this.status.phase,
      leading: this.status.leading,
      lastError: this.status.lastError,
      lastErrorCode: this.status.lastErrorCode,
      errorCount: this.status.errorCount,
      startedAt: this.status.startedAt,
      pauseReasons: this.flow.reasons(),
      readingSince: this.readingSince,
      lastServerContactAt: this.session?.lastServerContactAt ?? 0,
      inflight: {
        rows: this.pipeline.queue.rows,
        bytes: this.pipeline.queue.bytes,
        transactions: commits.pending,
      },
      acknowledged: this.pipeline.acking ? this.pipeline.flushLsn() : null,
      commitLagSeconds: commits.lagSeconds(Date.now()),
      lastDurableCommitMs: commits.lastDurableCommitMs,
      throughputPerSecond: this.status.throughput.perSecond(),
      transactions: stats.transactions,
      changes: stats.changes,
      deadLetters: stats.deadLetters,
      slot: this.slotMonitor.latest,
      publicationProblem: this.leaderServices()?.publicationProblem ?? null,
      backfill: this.services?.backfiller.info() ?? null,
      verify: this.services?.verify.status() ?? null,
      ponder: this.follower?.status() ?? null,
    };
  }

  /**
   * Takes effect here at once, then is stored as the deployment's. If it cannot
   * be stored the caller hears so (503) and may repeat it; this leader stays
   * paused meanwhile, the safe side.
   */
  async pause(): Promise<void> {
    const epoch = this.epochForOperator();
    this.flow.hold('operator');
    await this.storePause(epoch, true);
  }

  /** Stored first: a resume that is not stored would be undone by the next failover. */
  async resume(): Promise<void> {
    await this.storePause(this.epochForOperator(), false);
    this.flow.release('operator');
  }

  private epochForOperator(): string {
    if (!this.status.leading || this.claimed === null)
      throw new Unavailable(
        `this replica does not lead yet (${this.status.phase}); nothing was done, retry shortly`,
      );
    return this.claimed.epoch;
  }

  private async storePause(epoch: string, paused: boolean): Promise<void> {
    const word = paused ? 'pause' : 'resume';
    let stored: boolean;
    try {
      stored = await storePause(this.db.sink, this.cfg.slot, epoch, paused);
    } catch (err) {
      const e = classifyError(err, 'sink');
      this.log.warn({ code: e.code }, `cannot store the operator's ${word}: ${e.message}`);
      throw new Unavailable(
        `the ${word} could not be stored in the sink (${e.code}), so a failover would not keep it; ` +
          `${paused ? 'this leader is paused meanwhile' : 'still paused'}: retry`,
      );
    }
    if (!stored)
      throw new Unavailable(`another replica leads now; the ${word} was not stored: retry`);
    this.log.info({ epoch }, `operator's ${word} stored for the deployment`);
  }

  async resetLsn(target: Lsn, force: boolean): Promise<ResetOutcome> {
    if (this.status.phase !== 'streaming')
      throw new Conflict(`cannot reset now: the connector is ${this.status.phase}`);
    // Refuse what is impossible already without interrupting the stream; the
    // decision that counts is taken again once the stream has stopped.
    const plan = await this.resetter.check({ target, force }, false);
    if (plan.mode === 'noop') return plan;
    return this.resets.request({ target, force });
  }

  startBackfill(range: BackfillRange): Promise<BackfillInfo> {
    const s = this.leaderServices();
    if (!s)
      throw new Conflict(`cannot start a backfill now: the connector is ${this.status.phase}`);
    return s.backfiller.start(range);
  }

  cancelBackfill(): Promise<BackfillInfo> {
    const s = this.leaderServices();
    if (!s) throw new Conflict('no backfill can be cancelled now');
    return s.backfiller.cancel();
  }

  deadLetters(): DeadLetterService | null {
    return this.leaderServices()?.deadLetters ?? null;
  }

  verify(): VerifyService | null {
    return this.leaderServices()?.verify ?? null;
  }

  // ---- follow mode -----------------------------------------------------------

  /** The source schema streamed from now on: the router maps it, the sinks name it. */
  private follow(schema: string): void {
    this.router.followSchema(schema);
    for (const s of this.sinks) s.followSchema?.(schema);
    this.follower?.streaming(schema);
  }

  /** What the initial snapshot copies: the fixed schema, or the ready deployment the views point at. */
  private async snapshotSchema(): Promise<string | undefined> {
    if (!this.follower) return this.cfg.sourceSchema;
    return this.retrying('ponder', async () => {
      const live = await liveDeployment(this.db.source, this.cfg);
      // Setup may have seen another deployment: the publication must cover this one.
      await movePublication(this.db.source, this.cfg.publication, live, this.log);
      return live;
    });
  }

  /** Between two sessions: the services beside the stream stop, and restart on the new schema. */
  private async switchBetweenSessions(): Promise<void> {
    await this.services?.quiesce();
    try {
      await this.applySwitch();
    } finally {
      if (!this.h.shutdown.aborted) await this.startServices();
    }
  }

  /**
   * Moves the sink to the ready deployment the views point at (switch.ts),
   * with no session running. A failure leaves the sink on the old deployment,
   * whole; the follower tries again after a backoff, and the views-mismatch
   * metric (and its alert) says the views are not followed meanwhile.
   */
  private async applySwitch(): Promise<void> {
    const f = this.follower;
    const to = f?.due();
    if (!f || !to) return;
    const from = f.schema;
    f.switching = true;
    this.status.enter('snapshotting');
    try {
      await this.pipeline.flushAll();
      const deps = { cfg: this.cfg, source: this.db.source, sinks: this.sinks };
      const out = await switchDeployment(
        { ...deps, signal: this.h.shutdown, log: this.log.child({ component: 'switch' }) },
        from,
        to,
      );
      if (!out) return;
      this.pipeline.restartAt(out.lsn);
      this.pools.replaceWith(out.pools);
      this.follow(to);
      f.switched(out);
      this.log.info(
        { from, to, lsn: formatLsn(out.lsn), ms: out.ms, ...out.copied, ...out.counts },
        'switched to the new Ponder deployment',
      );
    } catch (err) {
      if (this.h.shutdown.aborted) return;
      const e = classifyError(err, 'switch');
      if (e.code === 'leadership_lost') throw e;
      this.status.noteError(e, 'switch');
      f.failed(e.message);
      this.log.error(
        { code: e.code, from, to },
        `deployment switch failed; trying again later: ${e.message}`,
      );
    } finally {
      f.switching = false;
    }
  }

  // ---- parts ---------------------------------------------------------------

  /** The heartbeat, backfills, verify, dead letters and the publication watch, on the streamed schema. */
  private async startServices(): Promise<void> {
    const services = new LeaderServices({
      cfg: { ...this.cfg, sourceSchema: this.router.sourceSchema },
      source: this.db.source,
      sink: this.db.sink,
      router: this.router,
      pipeline: this.pipeline,
      metrics: this.metrics,
      log: this.log,
    });
    this.services = services;
    await services.start();
  }

  private leaderServices(): LeaderServices | null {
    return this.services?.running ? this.services : null;
  }

  /**
   * The main listener (probes, metrics, status, the old sync endpoints) and,
   * with SLOTLINE_ADMIN_PORT, one that alone serves the admin actions, so that
   * the scraped port carries none (a NetworkPolicy can then tell them apart).
   */
  private createHttp(): HttpServer[] {
    const { cfg, h } = this;
    if (cfg.httpPort <= 0 && !h.onHttp) return [];
    const control = adminControl({
      port: this,
      slot: cfg.slot,
      publication: cfg.publication,
      deadLetterRetentionDays: cfg.deadLetterRetentionDays,
      sink: this.db.sink,
      metrics: this.metrics,
      livenessTimeoutMs: cfg.livenessTimeoutMs,
      self: this.self,
    });
    const server = (port: number, admin: boolean) =>
      new HttpServer({
        port,
        host: cfg.httpHost,
        admin,
        portVariable: port === cfg.adminPort ? 'SLOTLINE_ADMIN_PORT' : 'SLOTLINE_HTTP_PORT',
        adminToken: cfg.adminToken,
        forwardTimeoutMs: cfg.forwardTimeoutMs,
        control,
        metrics: this.metrics,
        log: h.log.child({ component: port === cfg.adminPort ? 'admin-http' : 'http' }),
      });
    if (cfg.adminPort <= 0) return [server(cfg.httpPort, true)];
    return [server(cfg.httpPort, false), server(cfg.adminPort, true)];
  }

  private createPipeline(): Pipeline {
    return new Pipeline({
      sinks: this.sinks,
      batchMaxRows: this.cfg.batchMaxRows,
      inflightMaxRows: this.cfg.inflightMaxRows,
      inflightMaxBytes: this.cfg.inflightMaxBytes,
      backoff: this.backoff(),
      metrics: this.metrics,
      log: this.log,
      onRetry: (e, sink) => this.status.noteError(e, sink),
    });
  }

  private startupDeps(): StartupDeps {
    return {
      cfg: this.cfg,
      source: this.db.source,
      sink: this.db.sink,
      sinks: this.sinks,
      log: this.log,
    };
  }

  private backoff() {
    return { initialMs: this.cfg.retryInitialMs, maxMs: this.cfg.retryMaxMs };
  }

  /** Retries `fn` while it fails for a passing reason; undefined when stopped meanwhile. */
  private async retrying<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await retry(fn, (e) => awaitOperator(classifyError(e, what)), {
        ...this.backoff(),
        signal: this.h.shutdown,
        onRetry: (err: SlotlineError, attempt, delayMs) => {
          this.status.noteError(err, what);
          this.log.warn({ code: err.code, attempt, delayMs }, `${what}: ${err.message}; retrying`);
        },
      });
    } catch (err) {
      // SIGTERM while start-up is still retrying is a clean stop, not the last attempt's error.
      if (this.h.shutdown.aborted) return undefined;
      throw err;
    }
  }

  private publishProgress(): void {
    const q = this.pipeline.queue;
    const m = this.metrics;
    m.inflightRows.set(q.rows);
    m.inflightBytes.set(q.bytes);
    m.commitLagSeconds.set(this.pipeline.commits.lagSeconds(Date.now()));
    // The lock holder leads, also while it sets up or snapshots.
    m.leader.set(this.status.leading ? 1 : 0);
    this.status.throughput.record(Date.now(), this.router.stats.changes);
  }
}

/** Whether `p` settled within `ms`. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true as const), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Where the other replicas reach this one's admin routes: SLOTLINE_ADVERTISE_URL,
 * else this host's name and the admin listener's port.
 */
function advertisedAddress(cfg: Config, h: RunHandles): string | null {
  if (cfg.advertiseUrl !== null) return cfg.advertiseUrl.replace(/\/+$/, '');
  if (cfg.httpPort <= 0 && !h.onHttp) return null;
  return `http://${hostname()}:${cfg.adminPort || cfg.httpPort}`;
}

function controlPool(url: string, log: Logger): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: 2, application_name: 'slotline-control' });
  pool.on('error', (err) => log.debug({ err }, 'idle control connection failed'));
  return pool;
}
