import pg from 'pg';
import { adminControl } from './admin/control.js';
import { DeadLetterService } from './admin/dead-letters.js';
import { HttpServer } from './admin/http.js';
import { createMetrics, DecodeCounter, type Metrics } from './admin/metrics.js';
import { Acker } from './checkpoint/acker.js';
import { type Lsn, formatLsn, minLsn } from './checkpoint/lsn.js';
import { CommitTracker, RateMeter } from './checkpoint/commit-lag.js';
import { resetCheckpoints, setCheckpointState } from './checkpoint/store.js';
import type { Config } from './config.js';
import { PgoutputDecoder } from './decode/pgoutput.js';
import { classifyError, Conflict, SlotlineError } from './errors.js';
import type { Logger } from './log.js';
import { backoffDelay, retry, sleep } from './retry.js';
import { foreignSlot, runSetup, slotGone, slotLost } from './setup.js';
import { createSinks } from './sinks/index.js';
import { InflightQueue } from './sinks/inflight.js';
import type { Sink } from './sinks/sink.js';
import { TIMESCALE_SINK, type TimescaleSink } from './sinks/timescale.js';
import { runSinkWorker } from './sinks/worker.js';
import { Heartbeat } from './source/heartbeat.js';
import { LeaderLock } from './source/leader.js';
import { ReplicationStream } from './source/replication.js';
import { SlotMonitor, type SlotHealth } from './source/slot-health.js';
import { pgMicrosToUnixMs } from './source/wire.js';
import { Backfiller, parseBackfillRange } from './source/backfill.js';
import { copySnapshot } from './source/snapshot.js';
import { WatermarkReader } from './source/watermark.js';
import { createSlot, createSlotWithSnapshot, dropSlot, inspectSlot } from './source/slot.js';
import { quoteIdent } from './sql.js';
import { PoolCache } from './trades/pools.js';
import { ChangeRouter } from './trades/router.js';
import { VerifyService } from './verify/service.js';

export type Phase =
  'starting' | 'standby' | 'snapshotting' | 'streaming' | 'retrying' | 'stopping' | 'stopped';

/** What the HTTP surface, the demo and the admin actions read and drive. */
export interface ConnectorState {
  phase: Phase;
  lastError: string | null;
  errorCount: number;
  startedAt: number;
  /** unix ms of the last replication message, keepalive, status update or sink write */
  lastProgressAt: number;
  queue: InflightQueue | null;
  acker: Acker | null;
  router: ChangeRouter | null;
  stream: ReplicationStream | null;
  /** Paused by an operator (POST /admin/pause): backpressure does not resume it. */
  adminPaused: boolean;
  commits: CommitTracker;
  throughput: RateMeter;
  slotHealth(): SlotHealth | null;
  /** Stops streaming, moves every sink checkpoint to `lsn`, streams again from there. */
  reset: ((lsn: Lsn) => Promise<void>) | null;
  startBackfill: ((body: Record<string, unknown>) => Promise<unknown>) | null;
  cancelBackfill: (() => Promise<unknown>) | null;
  backfill: (() => unknown) | null;
  deadLetters: DeadLetterService | null;
  /** Source-to-sink verify (POST /api/sync/run, the periodic run); set while leading. */
  verify: VerifyService | null;
}

export interface RunHandles {
  /** Aborted on SIGTERM/SIGINT: stop reading, flush, ack, close. */
  shutdown: AbortSignal;
  log: Logger;
  /** Filled in as the connector runs (the demo reads it). */
  state?: ConnectorState;
  metrics?: Metrics;
  /** Called once the HTTP server listens (its port, when SLOTLINE_HTTP_PORT is 0 in tests). */
  onHttp?: (port: number) => void;
}

export function newConnectorState(): ConnectorState {
  return {
    phase: 'starting',
    lastError: null,
    errorCount: 0,
    startedAt: Date.now(),
    lastProgressAt: Date.now(),
    queue: null,
    acker: null,
    router: null,
    stream: null,
    adminPaused: false,
    commits: new CommitTracker(),
    throughput: new RateMeter(60_000),
    slotHealth: () => null,
    reset: null,
    startBackfill: null,
    cancelBackfill: null,
    backfill: null,
    deadLetters: null,
    verify: null,
  };
}

const VERSION = '0.1.0';

/**
 * `slotline run`: composes source, decoder, router, sinks, acker and the HTTP
 * surface, and supervises the replication stream. Resolves after a clean
 * shutdown; rejects with a non-retriable SlotlineError.
 */
export async function runConnector(cfg: Config, h: RunHandles): Promise<void> {
  const log = h.log;
  const state = h.state ?? newConnectorState();
  const metrics = h.metrics ?? createMetrics({ version: VERSION });
  const backoff = { initialMs: cfg.retryInitialMs, maxMs: cfg.retryMaxMs };
  const noteError = (e: SlotlineError, where: string) => {
    state.lastError = e.message;
    state.errorCount += 1;
    metrics.errors.inc({ kind: e.code, where });
  };
  // SIGTERM while start-up is still retrying is a clean stop, not the last attempt's error.
  const unlessStopping = (err: unknown): undefined => {
    if (h.shutdown.aborted) return undefined;
    throw err;
  };
  const onRetry = (what: string) => (err: SlotlineError, attempt: number, delayMs: number) => {
    noteError(err, what);
    log.warn({ code: err.code, attempt, delayMs }, `${what}: ${err.message}; retrying`);
  };

  const sourcePool = new pg.Pool({
    connectionString: cfg.sourceUrl,
    max: 2,
    application_name: 'slotline-control',
  });
  sourcePool.on('error', (err) => log.debug({ err }, 'idle source connection failed'));
  const sinkPool = new pg.Pool({
    connectionString: cfg.sinkUrl,
    max: 2,
    application_name: 'slotline-control',
  });
  sinkPool.on('error', (err) => log.debug({ err }, 'idle sink connection failed'));
  const slotMonitor = new SlotMonitor({
    pool: sourcePool,
    slot: cfg.slot,
    metrics,
    log: log.child({ component: 'slot' }),
  });
  state.slotHealth = () => slotMonitor.latest;
  // Up before anything that may wait on a database: liveness must answer while set-up retries.
  const http =
    cfg.httpPort > 0 || h.onHttp
      ? new HttpServer({
          port: cfg.httpPort,
          adminToken: cfg.adminToken,
          control: adminControl({ cfg, state, metrics, source: sourcePool, sink: sinkPool }),
          metrics,
          log: log.child({ component: 'http' }),
        })
      : null;
  const sinks: Sink[] = createSinks(cfg, log);
  const leader = new LeaderLock({
    url: cfg.sourceUrl,
    slot: cfg.slot,
    pollMs: cfg.standbyPollMs,
    log: log.child({ component: 'leader' }),
  });
  const workersStop = new AbortController();
  const heartbeat = new Heartbeat({
    pool: sourcePool,
    intervalMs: cfg.heartbeatIntervalMs,
    slot: cfg.slot,
    log: log.child({ component: 'heartbeat' }),
  });
  let leading = false;
  const progress = setInterval(() => {
    const q = state.queue;
    metrics.inflightRows.set(q?.rows ?? 0);
    metrics.inflightBytes.set(q?.bytes ?? 0);
    metrics.commitLagSeconds.set(state.commits.lagSeconds(Date.now()));
    metrics.streamPaused.set(state.stream?.isPaused ? 1 : 0);
    // The lock holder leads, also while it sets up or snapshots.
    metrics.leader.set(leading ? 1 : 0);
    state.throughput.record(Date.now(), state.router?.stats.changes ?? 0);
  }, 1000);
  progress.unref();

  try {
    if (http) {
      await http.start();
      h.onHttp?.(http.port);
    }
    slotMonitor.start();
    // Hot standby: only the holder of the leader lock sets up and streams.
    state.phase = 'standby';
    leading = await leader.acquire(h.shutdown, (err) => {
      if (err) noteError(err, 'leader');
      else state.lastError = null;
    });
    if (!leading) return;
    metrics.leader.set(1);
    state.phase = 'starting';
    // Set-up is retried while the source or sink is unreachable; a real
    // misconfiguration (wal_level, privileges, password) stops here.
    await retry(
      () => runSetup(cfg, log.child({ component: 'setup' }), { create: cfg.autoSetup }),
      (e) => awaitOperator(classifyError(e, 'setup')),
      { ...backoff, signal: h.shutdown, onRetry: onRetry('setup') },
    ).catch(unlessStopping);
    if (h.shutdown.aborted) return;

    for (const s of sinks) await s.open();
    const primary = sinks[0] as TimescaleSink;
    const pools = new PoolCache(cfg.poolJoinColumn);

    // Where do we stand? Either resume a streaming checkpoint, or take the initial snapshot.
    let start = await retry(
      () => resumePoint(cfg, sourcePool, primary, sinks, log),
      (e) => awaitOperator(classifyError(e, 'start')),
      { ...backoff, signal: h.shutdown, onRetry: onRetry('start') },
    ).catch(unlessStopping);
    if (start === undefined) return;

    const queue = new InflightQueue(
      {
        batchMaxRows: cfg.batchMaxRows,
        maxRows: cfg.inflightMaxRows,
        maxBytes: cfg.inflightMaxBytes,
      },
      sinks.map((s) => s.name),
    );
    const router = new ChangeRouter(
      queue,
      pools,
      {
        sourceSchema: cfg.sourceSchema,
        applyTruncate: cfg.applyTruncate,
        idleAckIntervalMs: cfg.idleAckIntervalMs,
      },
      log.child({ component: 'router' }),
    );
    state.queue = queue;
    state.router = router;

    let stream: ReplicationStream | null = null;
    let statusTimer: NodeJS.Timeout | null = null;
    const scheduleStatus = () => {
      if (statusTimer || !stream) return;
      const wait = Math.max(0, cfg.ackIntervalMs - (Date.now() - stream.lastStatusAt));
      statusTimer = setTimeout(() => {
        statusTimer = null;
        stream?.sendStatus(false);
      }, wait);
    };

    let fatal: ((e: SlotlineError) => void) | null = null;
    const fatalPromise = new Promise<never>((_, reject) => {
      fatal = reject;
    });
    fatalPromise.catch(() => undefined);
    leader.lost.catch((err: SlotlineError) => fatal?.(err));

    // Created once the start position is known (after the snapshot, if any).
    let acker: Acker | null = null;
    const workers = sinks.map((sink) =>
      runSinkWorker(sink, queue, {
        signal: workersStop.signal,
        backoff,
        log: log.child({ component: `sink-${sink.name}` }),
        metrics,
        onDurable: (lsn) => {
          state.lastProgressAt = Date.now();
          metrics.sinkCheckpointLsnBytes.set({ sink: sink.name }, Number(lsn));
          if (!acker) return;
          acker.setDurable(sink.name, lsn);
          const flushed = acker.flushLsn();
          state.commits.durable(flushed);
          const last = state.commits.lastDurableCommitMs;
          if (last !== null) metrics.lastCommitTimestampSeconds.set(last / 1000);
          scheduleStatus();
        },
        onRetry: (e) => noteError(e, sink.name),
      }).catch((err: unknown) => {
        fatal?.(classifyError(err, sink.name));
      }),
    );

    if (start.kind === 'snapshot') {
      state.phase = 'snapshotting';
      const lsn = await takeSnapshot(
        cfg,
        { source: sourcePool, sink: sinkPool },
        primary,
        sinks,
        router,
        queue,
        pools,
        h,
        log,
      );
      if (lsn === null) return;
      start = { kind: 'stream', lsn };
    } else {
      await loadPools(pools, { source: sourcePool, sink: sinkPool }, cfg, log);
    }

    const sinkNames = sinks.map((s) => s.name);
    acker = new Acker(sinkNames, start.lsn);
    state.acker = acker;
    heartbeat.start();

    // An operator's LSN reset ends the current stream; the loop applies it and reconnects.
    let resetRequest: { lsn: Lsn; done: (err?: unknown) => void } | null = null;
    let wakeForReset: (() => void) | null = null;
    state.reset = (lsn) =>
      new Promise<void>((resolve, reject) => {
        if (resetRequest) return reject(new Conflict('another LSN reset is in progress'));
        resetRequest = { lsn, done: (err) => (err ? reject(err as Error) : resolve()) };
        wakeForReset?.();
      });

    const reader = new WatermarkReader({
      slot: cfg.slot,
      source: sourcePool,
      router,
      flushLsn: () => (acker as Acker).flushLsn(),
      log: log.child({ component: 'watermarks' }),
    });
    reader.start();
    const backfiller = new Backfiller({
      slot: cfg.slot,
      sourceSchema: cfg.sourceSchema,
      source: sourcePool,
      sink: sinkPool,
      router,
      reader,
      queue,
      maxChunkRows: Math.max(1, Math.floor(cfg.inflightMaxRows / 4)),
      metrics,
      log: log.child({ component: 'backfill' }),
    });
    state.startBackfill = (body) => backfiller.start(parseBackfillRange(body));
    state.cancelBackfill = () => backfiller.cancel();
    state.backfill = () => backfiller.info();
    let resumedBackfill = false;
    state.verify = new VerifyService({
      cfg,
      backfiller,
      metrics,
      log: log.child({ component: 'verify' }),
    });
    state.verify.start();
    const deadLetters = new DeadLetterService({
      slot: cfg.slot,
      sink: sinkPool,
      source: sourcePool,
      sourceSchema: cfg.sourceSchema,
      maxKeysPerRead: Math.max(1, Math.min(1000, Math.floor(cfg.inflightMaxRows / 4))),
      retentionDays: cfg.deadLetterRetentionDays,
      metrics,
      log: log.child({ component: 'dead-letters' }),
    });
    await deadLetters.attach(router, queue, reader);
    deadLetters.startTimers();
    state.deadLetters = deadLetters;

    const decoder = new PgoutputDecoder();
    const counter = new DecodeCounter(metrics);
    const shutdown = new Promise<'shutdown'>((resolve) => {
      if (h.shutdown.aborted) resolve('shutdown');
      h.shutdown.addEventListener('abort', () => resolve('shutdown'), { once: true });
    });

    for (let attempt = 0; !h.shutdown.aborted;) {
      const from = acker.flushLsn();
      router.reset();
      router.skipBefore = from;
      decoder.reset();
      state.commits.clear();
      const s = new ReplicationStream({
        url: cfg.sourceUrl,
        slot: cfg.slot,
        publication: cfg.publication,
        startLsn: from,
        statusIntervalMs: cfg.statusIntervalMs,
        log: log.child({ component: 'replication' }),
        flushLsn: () => (acker as Acker).flushLsn(),
        onMessage: (_lsn, chunk, offset) => {
          const msg = decoder.decode(chunk, offset);
          router.onMessage(msg, chunk.length - offset);
          counter.onMessage(msg);
          if (msg.tag === 'commit' && msg.commitLsn >= router.skipBefore) {
            state.commits.routed(msg.endLsn, pgMicrosToUnixMs(msg.commitTime));
          }
          if (queue.full && !s.isPaused) {
            s.pause();
            void queue.drained().then(() => {
              if (!state.adminPaused) s.resume();
            });
          }
        },
        onKeepalive: (walEnd) => {
          state.lastProgressAt = Date.now();
          router.onKeepalive(walEnd);
        },
      });
      stream = s;
      state.stream = s;
      let failure: SlotlineError | null = null;
      let how: 'ended' | 'shutdown' | 'reset' = 'ended';
      try {
        await Promise.race([s.start(), fatalPromise]);
        if (state.adminPaused) s.pause();
        state.phase = 'streaming';
        metrics.leader.set(1);
        state.lastError = null;
        state.lastProgressAt = Date.now();
        attempt = 0;
        if (!resumedBackfill) {
          resumedBackfill = true;
          backfiller
            .resume()
            .catch((err: unknown) => log.warn({ err }, 'cannot resume a backfill'));
        }
        const resetWanted = new Promise<'reset'>((resolve) => {
          wakeForReset = () => resolve('reset');
          if (resetRequest) resolve('reset');
        });
        how = await Promise.race([
          s.ended.then(() => 'ended' as const),
          shutdown,
          resetWanted,
          fatalPromise,
        ]);
        wakeForReset = null;
        if (how === 'shutdown') break;
      } catch (err) {
        failure = classifyError(err, 'source');
      }
      if (how === 'reset' && resetRequest) {
        const req: { lsn: Lsn; done: (err?: unknown) => void } = resetRequest;
        resetRequest = null;
        try {
          // No goodbye: a final status update would confirm the old position
          // on the slot and close the very window a replay needs.
          s.destroy();
          await Promise.race([queue.flushAll(), fatalPromise]);
          await resetCheckpoints(sinkPool, cfg.slot, req.lsn);
          acker = new Acker(sinkNames, req.lsn);
          state.acker = acker;
          log.warn(
            { lsn: formatLsn(req.lsn) },
            'LSN reset by an operator: streaming again from there',
          );
          req.done();
        } catch (err) {
          req.done(err);
        }
        continue;
      }
      // The stream failed: write what was received (the checkpoint only moves
      // at commits, so a partial transaction is harmless), then resume from
      // the durable position.
      s.destroy();
      stream = null;
      state.stream = null;
      await Promise.race([queue.flushAll(), fatalPromise]);
      if (failure && !failure.retriable) throw failure;
      if (h.shutdown.aborted) break;
      state.phase = 'retrying';
      const delay = backoffDelay(attempt++, backoff);
      if (failure) noteError(failure, 'source');
      state.lastError = failure?.message ?? 'replication ended';
      log.warn(
        { code: failure?.code, delayMs: delay },
        `replication interrupted: ${state.lastError}; reconnecting`,
      );
      await sleep(delay, h.shutdown);
    }

    // Graceful stop: stop reading, flush what was received, final ack, close.
    state.phase = 'stopping';
    const deadline = sleep(Math.max(0, cfg.shutdownTimeoutMs - 2000)).then(
      () => 'timeout' as const,
    );
    const current = stream as ReplicationStream | null;
    current?.pause();
    heartbeat.stop();
    state.startBackfill = null;
    await state.verify?.stop();
    await backfiller.stop();
    reader.stop();
    deadLetters.stopTimers();
    deadLetters.detach();
    state.deadLetters = null;
    const flushed = await Promise.race([
      queue.flushAll().then(() => 'flushed' as const),
      deadline,
      fatalPromise,
    ]);
    if (flushed === 'timeout')
      log.warn('shutdown: sinks did not flush in time; unflushed changes will be replayed');
    if (statusTimer) clearTimeout(statusTimer);
    await current?.stop();
    log.info({ flushLsn: formatLsn(acker.flushLsn()) }, 'stopped; final position acknowledged');
    workersStop.abort();
    await Promise.allSettled(workers);
  } finally {
    workersStop.abort();
    heartbeat.stop();
    slotMonitor.stop();
    clearInterval(progress);
    state.phase = 'stopped';
    state.stream = null;
    state.reset = null;
    state.startBackfill = null;
    state.cancelBackfill = null;
    await state.verify?.stop();
    state.verify = null;
    leading = false;
    metrics.leader.set(0);
    for (const s of sinks) await s.close().catch(() => undefined);
    await http?.stop().catch(() => undefined);
    await leader.release();
    await sourcePool.end().catch(() => undefined);
    await sinkPool.end().catch(() => undefined);
  }
}

/**
 * A missing or invalidated slot needs an operator (`slotline setup --resnapshot`).
 * At start-up the connector waits for that, retrying with backoff, rather than
 * exiting: its readiness names the recovery and its metrics (slot_exists,
 * slot_wal_status) stay scrapeable for the alerts, and once the operator has
 * run it, the next attempt takes the fresh snapshot.
 */
function awaitOperator(e: SlotlineError): SlotlineError {
  if (e.code !== 'slot_missing' && e.code !== 'slot_invalidated') return e;
  return new SlotlineError(e.code, e.message, { retriable: true, cause: e });
}

type Start = { kind: 'stream'; lsn: Lsn } | { kind: 'snapshot' };

async function resumePoint(
  cfg: Config,
  source: pg.Pool,
  primary: TimescaleSink,
  sinks: Sink[],
  log: Logger,
): Promise<Start> {
  const ck = await primary.checkpoint();
  const slot = await inspectSlot(source, cfg.slot);
  if (ck?.state === 'streaming') {
    if (!slot) throw slotGone(cfg.slot, ck.lsn === null ? '?' : formatLsn(ck.lsn));
    if (slot.walStatus === 'lost') throw slotLost(cfg.slot);
    const lsns: Lsn[] = [];
    for (const s of sinks) {
      const c = s === primary ? ck : await s.checkpoint();
      if (c?.lsn == null) continue;
      lsns.push(c.lsn);
      // The slot was acknowledged past this sink (it was disabled for a while,
      // or its checkpoint was edited): the changes in between cannot be streamed again.
      if (slot.confirmedFlushLsn !== null && c.lsn < slot.confirmedFlushLsn) {
        log.warn(
          {
            sink: s.name,
            checkpoint: formatLsn(c.lsn),
            confirmedFlush: formatLsn(slot.confirmedFlushLsn),
          },
          `sink ${s.name} is behind the slot's confirmed flush: it misses the changes in between; run a backfill for that period`,
        );
      }
    }
    return { kind: 'stream', lsn: minLsn(lsns) ?? 0n };
  }
  if (slot && !ck) throw foreignSlot(cfg.slot);
  return { kind: 'snapshot' };
}

/**
 * First start: a new slot with an exported snapshot, the tables copied in it,
 * then everything the snapshot did not see removed from the sink and the
 * checkpoint set to the slot's consistent point, in one sink transaction. An
 * interrupted copy leaves state 'snapshotting', and the next start redoes it
 * with a new slot.
 */
async function takeSnapshot(
  cfg: Config,
  db: { source: pg.Pool; sink: pg.Pool },
  primary: TimescaleSink,
  sinks: Sink[],
  router: ChangeRouter,
  queue: InflightQueue,
  pools: PoolCache,
  h: RunHandles,
  log: Logger,
): Promise<Lsn | null> {
  const slog = log.child({ component: 'snapshot' });
  // A slot made by `setup` (or by an interrupted snapshot) has no usable snapshot any more.
  await dropSlot(db.source, cfg.slot);
  await setCheckpointState(db.sink, cfg.slot, TIMESCALE_SINK, 'snapshotting', null, null);
  if (cfg.snapshot === 'never') {
    const lsn = await createSlot(db.source, cfg.slot);
    await completeSnapshot(sinks, primary, lsn);
    slog.info({ lsn: formatLsn(lsn) }, 'slot created without snapshot (SLOTLINE_SNAPSHOT=never)');
    return lsn;
  }
  const exported = await createSlotWithSnapshot(cfg.sourceUrl, cfg.slot);
  try {
    const lsn = exported.consistentPoint;
    await setCheckpointState(db.sink, cfg.slot, TIMESCALE_SINK, 'snapshotting', null, lsn);
    slog.info({ lsn: formatLsn(lsn) }, 'initial snapshot started');
    pools.clear();
    const t0 = Date.now();
    const counts = await copySnapshot({
      url: cfg.sourceUrl,
      snapshotName: exported.snapshotName,
      lsn,
      schema: cfg.sourceSchema,
      router,
      queue,
      signal: h.shutdown,
      log: slog,
    });
    await queue.flushAll();
    if (h.shutdown.aborted) return null;
    await completeSnapshot(sinks, primary, lsn);
    slog.info({ lsn: formatLsn(lsn), ...counts, ms: Date.now() - t0 }, 'initial snapshot complete');
    return lsn;
  } finally {
    await exported.connection.end().catch(() => undefined);
  }
}

/** The other sinks first: the primary's 'streaming' state is what marks the snapshot done. */
async function completeSnapshot(sinks: Sink[], primary: TimescaleSink, lsn: Lsn): Promise<void> {
  for (const s of sinks) if (s !== primary) await s.completeSnapshot(lsn);
  await primary.completeSnapshot(lsn);
}

/** Symbols from the sink's mirror (consistent with the checkpoint), then any pool only the source has. */
async function loadPools(
  pools: PoolCache,
  db: { source: pg.Pool; sink: pg.Pool },
  cfg: Config,
  log: Logger,
) {
  type Row = { id: string; order_book: string | null; coin: string | null };
  const q = (schema: string) => `SELECT id, order_book, coin FROM ${quoteIdent(schema)}.pools`;
  const fromSink = await db.sink.query<Row>(q(cfg.sinkSchema));
  for (const r of fromSink.rows) pools.set({ id: r.id, orderBook: r.order_book, coin: r.coin });
  const fromSource = await db.source.query<Row>(q(cfg.sourceSchema));
  for (const r of fromSource.rows)
    pools.setIfAbsent({ id: r.id, orderBook: r.order_book, coin: r.coin });
  log.info({ pools: pools.size }, 'pool symbols loaded');
}
