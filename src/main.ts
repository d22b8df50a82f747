import pg from 'pg';
import { Acker } from './checkpoint/acker.js';
import { type Lsn, formatLsn, minLsn } from './checkpoint/lsn.js';
import { setCheckpointState } from './checkpoint/store.js';
import type { Config } from './config.js';
import { PgoutputDecoder } from './decode/pgoutput.js';
import { classifyError, SlotlineError } from './errors.js';
import type { Logger } from './log.js';
import { backoffDelay, retry, sleep } from './retry.js';
import { foreignSlot, runSetup, slotGone, slotLost } from './setup.js';
import { createSinks } from './sinks/index.js';
import { InflightQueue } from './sinks/inflight.js';
import type { Sink } from './sinks/sink.js';
import { TIMESCALE_SINK, type TimescaleSink } from './sinks/timescale.js';
import { runSinkWorker } from './sinks/worker.js';
import { Heartbeat } from './source/heartbeat.js';
import { ReplicationStream } from './source/replication.js';
import { copySnapshot } from './source/snapshot.js';
import { createSlot, createSlotWithSnapshot, dropSlot, inspectSlot } from './source/slot.js';
import { PoolCache } from './trades/pools.js';
import { ChangeRouter } from './trades/router.js';

export type Phase = 'starting' | 'snapshotting' | 'streaming' | 'retrying' | 'stopping' | 'stopped';

/** What the HTTP surface and the demo read. */
export interface ConnectorState {
  phase: Phase;
  lastError: string | null;
  queue: InflightQueue | null;
  acker: Acker | null;
  router: ChangeRouter | null;
  /** unix ms of the last replication message or status update */
  lastActivityAt: number;
}

export interface RunHandles {
  /** Aborted on SIGTERM/SIGINT: stop reading, flush, ack, close. */
  shutdown: AbortSignal;
  log: Logger;
  state?: ConnectorState;
}

/** The least time between two status updates sent because a sink advanced. */
const ACK_SPACING_MS = 200;

/**
 * `slotline run`: composes source, decoder, router, sinks and acker, and
 * supervises the replication stream. Resolves after a clean shutdown; rejects
 * with a non-retriable SlotlineError.
 */
export async function runConnector(cfg: Config, h: RunHandles): Promise<void> {
  const log = h.log;
  const state: ConnectorState = h.state ?? {
    phase: 'starting',
    lastError: null,
    queue: null,
    acker: null,
    router: null,
    lastActivityAt: Date.now(),
  };
  const backoff = { initialMs: cfg.retryInitialMs, maxMs: cfg.retryMaxMs };
  const onRetry = (what: string) => (err: SlotlineError, attempt: number, delayMs: number) => {
    state.lastError = err.message;
    log.warn({ code: err.code, attempt, delayMs }, `${what}: ${err.message}; retrying`);
  };

  // Set-up is retried while the source or sink is unreachable; a real
  // misconfiguration (wal_level, privileges, password) stops here.
  await retry(
    () => runSetup(cfg, log.child({ component: 'setup' }), { create: cfg.autoSetup }),
    (e) => classifyError(e, 'setup'),
    { ...backoff, signal: h.shutdown, onRetry: onRetry('setup') },
  );
  if (h.shutdown.aborted) return;

  const sinks: Sink[] = createSinks(cfg, log);
  const sourcePool = new pg.Pool({
    connectionString: cfg.sourceUrl,
    max: 2,
    application_name: 'slotline-control',
  });
  sourcePool.on('error', (err) => log.debug({ err }, 'idle source connection failed'));
  const workersStop = new AbortController();
  const heartbeat = new Heartbeat({
    pool: sourcePool,
    intervalMs: cfg.heartbeatIntervalMs,
    slot: cfg.slot,
    log: log.child({ component: 'heartbeat' }),
  });

  try {
    for (const s of sinks) await s.open();
    const primary = sinks[0] as TimescaleSink;
    const pools = new PoolCache(cfg.poolJoinColumn);

    // Where do we stand? Either resume a streaming checkpoint, or take the initial snapshot.
    let start = await retry(
      () => resumePoint(cfg, sourcePool, primary, sinks),
      (e) => classifyError(e, 'start'),
      { ...backoff, signal: h.shutdown, onRetry: onRetry('start') },
    );
    if (start === undefined) return;

    const queue = new InflightQueue(
      {
        batchMaxRows: cfg.batchMaxRows,
        maxRows: cfg.inflightMaxRows,
        maxBytes: cfg.inflightMaxBytes,
      },
      sinks.map((s) => s.name),
    );
    const routerLog = log.child({ component: 'router' });
    const router = new ChangeRouter(
      queue,
      pools,
      {
        sourceSchema: cfg.sourceSchema,
        applyTruncate: cfg.applyTruncate,
        idleAckIntervalMs: cfg.idleAckIntervalMs,
      },
      routerLog,
    );
    state.queue = queue;
    state.router = router;

    let stream: ReplicationStream | null = null;
    let statusTimer: NodeJS.Timeout | null = null;
    const scheduleStatus = () => {
      if (statusTimer || !stream) return;
      const wait = Math.max(0, ACK_SPACING_MS - (Date.now() - stream.lastStatusAt));
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

    // Created once the start position is known (after the snapshot, if any).
    let acker: Acker | null = null;
    const workers = sinks.map((sink) =>
      runSinkWorker(sink, queue, {
        signal: workersStop.signal,
        backoff,
        log: log.child({ component: `sink-${sink.name}` }),
        onDurable: (lsn) => {
          acker?.setDurable(sink.name, lsn);
          scheduleStatus();
        },
        onRetry: (e) => (state.lastError = e.message),
      }).catch((err: unknown) => {
        fatal?.(classifyError(err, sink.name));
      }),
    );

    if (start.kind === 'snapshot') {
      state.phase = 'snapshotting';
      const lsn = await takeSnapshot(cfg, primary, router, queue, pools, h, log);
      if (lsn === null) return;
      start = { kind: 'stream', lsn };
    } else {
      await loadPools(pools, sourcePool, cfg, log);
    }

    acker = new Acker(
      sinks.map((s) => s.name),
      start.lsn,
    );
    state.acker = acker;
    heartbeat.start();

    const decoder = new PgoutputDecoder();
    const shutdown = new Promise<'shutdown'>((resolve) => {
      if (h.shutdown.aborted) resolve('shutdown');
      h.shutdown.addEventListener('abort', () => resolve('shutdown'), { once: true });
    });

    for (let attempt = 0; !h.shutdown.aborted;) {
      const from = (acker as Acker).flushLsn();
      router.reset();
      router.skipBefore = from;
      decoder.reset();
      const s = new ReplicationStream({
        url: cfg.sourceUrl,
        slot: cfg.slot,
        publication: cfg.publication,
        startLsn: from,
        statusIntervalMs: cfg.statusIntervalMs,
        log: log.child({ component: 'replication' }),
        flushLsn: () => (acker as Acker).flushLsn(),
        onMessage: (_lsn, chunk, offset) => {
          router.onMessage(decoder.decode(chunk, offset), chunk.length - offset);
          if (queue.full && !s.isPaused) {
            s.pause();
            void queue.drained().then(() => s.resume());
          }
        },
        onKeepalive: (walEnd) => router.onKeepalive(walEnd),
      });
      stream = s;
      let failure: SlotlineError | null = null;
      try {
        await Promise.race([s.start(), fatalPromise]);
        state.phase = 'streaming';
        state.lastError = null;
        attempt = 0;
        const how = await Promise.race([
          s.ended.then(() => 'ended' as const),
          shutdown,
          fatalPromise,
        ]);
        if (how === 'shutdown') break;
      } catch (err) {
        failure = classifyError(err, 'source');
      }
      // The stream failed: write what was received (the checkpoint only moves
      // at commits, so a partial transaction is harmless), then resume from
      // the durable position.
      s.destroy();
      stream = null;
      await Promise.race([queue.flushAll(), fatalPromise]);
      if (failure && !failure.retriable) throw failure;
      if (h.shutdown.aborted) break;
      state.phase = 'retrying';
      const delay = backoffDelay(attempt++, backoff);
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
    const flushed = await Promise.race([
      queue.flushAll().then(() => 'flushed' as const),
      deadline,
      fatalPromise,
    ]);
    if (flushed === 'timeout')
      log.warn('shutdown: sinks did not flush in time; unflushed changes will be replayed');
    if (statusTimer) clearTimeout(statusTimer);
    await current?.stop();
    log.info(
      { flushLsn: formatLsn((acker as Acker).flushLsn()) },
      'stopped; final position acknowledged',
    );
    workersStop.abort();
    await Promise.allSettled(workers);
  } finally {
    workersStop.abort();
    heartbeat.stop();
    state.phase = 'stopped';
    for (const s of sinks) await s.close().catch(() => undefined);
    await sourcePool.end().catch(() => undefined);
  }
}

type Start = { kind: 'stream'; lsn: Lsn } | { kind: 'snapshot' };

async function resumePoint(
  cfg: Config,
  source: pg.Pool,
  primary: TimescaleSink,
  sinks: Sink[],
): Promise<Start> {
  const ck = await primary.checkpoint();
  const slot = await inspectSlot(source, cfg.slot);
  if (ck?.state === 'streaming') {
    if (!slot) throw slotGone(cfg.slot, ck.lsn === null ? '?' : formatLsn(ck.lsn));
    if (slot.walStatus === 'lost') throw slotLost(cfg.slot);
    const lsns: Lsn[] = [];
    for (const s of sinks) {
      const c = s === primary ? ck : await s.checkpoint();
      if (c?.lsn != null) lsns.push(c.lsn);
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
  primary: TimescaleSink,
  router: ChangeRouter,
  queue: InflightQueue,
  pools: PoolCache,
  h: RunHandles,
  log: Logger,
): Promise<Lsn | null> {
  const slog = log.child({ component: 'snapshot' });
  const admin = new pg.Client({
    connectionString: cfg.sourceUrl,
    application_name: 'slotline-setup',
  });
  const sinkDb = new pg.Client({
    connectionString: cfg.sinkUrl,
    application_name: 'slotline-setup',
  });
  await admin.connect();
  await sinkDb.connect();
  try {
    // A slot made by `setup` (or by an interrupted snapshot) has no usable snapshot any more.
    await dropSlot(admin, cfg.slot);
    await setCheckpointState(sinkDb, cfg.slot, TIMESCALE_SINK, 'snapshotting', null, null);
    if (cfg.snapshot === 'never') {
      const lsn = await createSlot(admin, cfg.slot);
      await primary.completeSnapshot(lsn);
      slog.info({ lsn: formatLsn(lsn) }, 'slot created without snapshot (SLOTLINE_SNAPSHOT=never)');
      return lsn;
    }
    const exported = await createSlotWithSnapshot(cfg.sourceUrl, cfg.slot);
    try {
      const lsn = exported.consistentPoint;
      await setCheckpointState(sinkDb, cfg.slot, TIMESCALE_SINK, 'snapshotting', null, lsn);
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
      await primary.completeSnapshot(lsn);
      slog.info(
        { lsn: formatLsn(lsn), ...counts, ms: Date.now() - t0 },
        'initial snapshot complete',
      );
      return lsn;
    } finally {
      await exported.connection.end().catch(() => undefined);
    }
  } finally {
    await admin.end().catch(() => undefined);
    await sinkDb.end().catch(() => undefined);
  }
}

/** Symbols from the sink's mirror (consistent with the checkpoint), then any pool only the source has. */
async function loadPools(pools: PoolCache, source: pg.Pool, cfg: Config, log: Logger) {
  const sink = new pg.Client({ connectionString: cfg.sinkUrl });
  await sink.connect();
  try {
    const ident = (s: string) => `"${s.replace(/"/g, '""')}"`;
    const q = (schema: string) => `SELECT id, order_book, coin FROM ${ident(schema)}.pools`;
    const fromSink = await sink.query<{
      id: string;
      order_book: string | null;
      coin: string | null;
    }>(q(cfg.sinkSchema));
    for (const r of fromSink.rows) pools.set({ id: r.id, orderBook: r.order_book, coin: r.coin });
    const fromSource = await source.query<{
      id: string;
      order_book: string | null;
      coin: string | null;
    }>(q(cfg.sourceSchema));
    for (const r of fromSource.rows)
      pools.setIfAbsent({ id: r.id, orderBook: r.order_book, coin: r.coin });
    log.info({ pools: pools.size }, 'pool symbols loaded');
  } finally {
    await sink.end().catch(() => undefined);
  }
}
