import type pg from 'pg';
import { formatLsn, isLsn, parseLsn } from '../checkpoint/lsn.js';
import { readCheckpoints, readLeader } from '../checkpoint/store.js';
import { Conflict, InvalidRequest, RequestRefused } from '../errors.js';
import { parseBackfillRange } from '../source/backfill.js';
import { syncRunAnswer } from '../verify/buckets.js';
import { parseFilter, parseListQuery } from './dead-letters.js';
import type { AdminControl, LeaderRoute } from './api.js';
import type { Metrics } from './metrics.js';
import type { ConnectorPort, ConnectorView } from './port.js';
import { livenessOf, readinessOf } from './probes.js';
import { publicError, publicFailure } from './public-error.js';
import { syncHealth } from './sync-api.js';

export interface ControlOptions {
  port: ConnectorPort;
  slot: string;
  publication: string;
  /** SLOTLINE_DEAD_LETTER_RETENTION_DAYS: the default of a purge. */
  deadLetterRetentionDays: number;
  /** The sink database: checkpoints and dead-letter counts for /status and /api/sync/stats. */
  sink: pg.Pool;
  metrics: Metrics;
  /** SLOTLINE_LIVENESS_TIMEOUT_MS: a loop that reads and hears nothing this long is wedged. */
  livenessTimeoutMs: number;
  /** This replica's advertised admin address (SLOTLINE_ADVERTISE_URL); null without HTTP. */
  self: string | null;
}

/** The HTTP surface's requests, validated and carried out through the connector's port. */
export function adminControl(o: ControlOptions): AdminControl {
  const { port } = o;
  return {
    self: o.self,
    liveness: () => livenessOf(port.view(), Date.now(), o.livenessTimeoutMs),
    readiness: () => readinessOf(port.view()),
    leader: () => leaderRoute(o),
    status: (authorized) => statusOf(o, authorized),
    syncHealth: async () => {
      const v = port.view();
      const last = v.lastDurableCommitMs;
      return syncHealth({
        now: Date.now() / 1000,
        lastDurableCommit: last === null ? null : Math.floor(last / 1000),
        lagSeconds: v.commitLagSeconds,
        pendingTrades: v.inflight.rows,
        streaming: v.phase === 'streaming',
      });
    },
    syncStats: (authorized) => syncStats(o, authorized),
    async pause() {
      await port.pause();
      return { paused: true, reasons: port.view().pauseReasons };
    },
    async resume() {
      await port.resume();
      return { paused: false, reasons: port.view().pauseReasons };
    },
    resetLsn: (text, force) => resetLsn(port, text, force),
    startBackfill: (body) => port.startBackfill(parseBackfillRange(body)),
    cancelBackfill: () => port.cancelBackfill(),
    deadLetters: deadLetterActions(o),
    syncRun: (body) => syncRun(port, body),
  };
}

/**
 * Where calls about the deployment go: this replica if it holds the leader
 * lock; else the address the leader recorded beside its epoch in the sink.
 * Read at each call (one indexed row), so a takeover is seen at once.
 */
async function leaderRoute(o: ControlOptions): Promise<LeaderRoute> {
  if (o.port.view().leading) return { at: 'here' };
  const none = (reason: string): LeaderRoute => ({ at: 'none', reason });
  let r;
  try {
    r = await readLeader(o.sink, o.slot);
  } catch {
    return none('no leader can be found now: the sink does not answer; retry shortly');
  }
  if (r === null) return none('no replica leads yet; retry shortly');
  if (r.address === null)
    return none(
      `the leader (${r.holder}) has recorded no address: it serves no HTTP, or runs a version of slotline that does not (it does once it leads again)`,
    );
  if (!/^https?:\/\/[^/]+$/.test(r.address))
    return none('the leader record holds no http(s) address (scheme://host:port)');
  if (r.address === o.self)
    return none(
      "no replica leads now (the leader record is this replica's own, from before it restarted); retry shortly",
    );
  return { at: 'leader', url: r.address };
}

async function statusOf(o: ControlOptions, authorized: boolean): Promise<unknown> {
  const v = o.port.view();
  const slot = v.slot;
  const checkpoints = await readCheckpoints(o.sink, o.slot).catch(() => []);
  return {
    slot: o.slot,
    publication: o.publication,
    phase: v.phase,
    leading: v.leading,
    paused: v.pauseReasons.includes('operator'),
    pauseReasons: v.pauseReasons,
    lastError: authorized ? v.lastError : publicError(v.lastErrorCode),
    publicationProblem: v.publicationProblem,
    ponder: v.ponder,
    lsn: {
      current: slot?.currentLsn ?? null,
      confirmedFlush: slot?.confirmedFlushLsn ?? null,
      restart: slot?.restartLsn ?? null,
      acknowledged: v.acknowledged === null ? null : formatLsn(v.acknowledged),
    },
    lag: { bytes: slot?.lagBytes ?? null, seconds: v.commitLagSeconds },
    walStatus: slot?.walStatus ?? null,
    safeWalSize: slot?.safeWalSize ?? null,
    retainedWalBytes: slot?.retainedBytes ?? null,
    slotActive: slot?.active ?? null,
    sinks: checkpoints.map((c) => ({
      sink: c.sink,
      state: c.state,
      checkpoint: c.lsn === null ? null : formatLsn(c.lsn),
      commitTime: c.commitTime,
      updatedAt: c.updatedAt,
    })),
    inflight: v.inflight,
    throughput: { rowsPerSecond1m: Math.round(v.throughputPerSecond) },
    lastCommitTime:
      v.lastDurableCommitMs === null ? null : new Date(v.lastDurableCommitMs).toISOString(),
    backfill:
      authorized || !v.backfill
        ? v.backfill
        : { ...v.backfill, error: publicFailure(v.backfill.error) },
    verify: authorized || !v.verify ? v.verify : redactVerify(v.verify),
  };
}

function redactVerify(s: NonNullable<ConnectorView['verify']>): ConnectorView['verify'] {
  return {
    ...s,
    lastError: publicFailure(s.lastError),
    last: s.last === null ? null : { ...s.last, error: publicFailure(s.last.error) },
  };
}

async function syncStats(o: ControlOptions, authorized: boolean): Promise<unknown> {
  const v = o.port.view();
  const dead = await o.sink
    .query<{ n: string }>(
      `SELECT count(*)::text AS n FROM slotline.dead_letters WHERE slot = $1 AND state = 'pending'`,
      [o.slot],
    )
    .then((x) => Number(x.rows[0]?.n ?? 0))
    .catch(() => null);
  return {
    tradesPerSecond: Math.round(v.throughputPerSecond),
    transactions: v.transactions,
    changes: v.changes,
    deadLetters: v.deadLetters,
    pendingDeadLetters: dead,
    errors: v.errorCount,
    lastError: authorized ? v.lastError : publicError(v.lastErrorCode),
    uptimeSeconds: Math.round((Date.now() - v.startedAt) / 1000),
  };
}

async function resetLsn(port: ConnectorPort, text: string, force: boolean): Promise<unknown> {
  if (!isLsn(text))
    throw new InvalidRequest(
      `invalid LSN ${JSON.stringify(text)}: expected X/Y in hex, e.g. "0/16B3748"`,
    );
  const r = await port.resetLsn(parseLsn(text), force);
  return { mode: r.mode, from: formatLsn(r.from), to: formatLsn(r.to) };
}

function deadLetterActions(o: ControlOptions): AdminControl['deadLetters'] {
  const dl = () => {
    const service = o.port.deadLetters();
    if (!service)
      throw new Conflict(
        `dead letters are not available now: the connector is ${o.port.view().phase}`,
      );
    return service;
  };
  return {
    async list(query) {
      const q = parseListQuery(query);
      return dl().list(q.filter, q.limit, q.after);
    },
    show: (id) => dl().show(id),
    retry: (body) => dl().retry(parseFilter(body)),
    async discard(body) {
      const { note, ...rest } = body;
      if (typeof note !== 'string' || note.trim().length === 0 || note.length > 2000) {
        throw new InvalidRequest(
          'note is required: say why these dead letters are discarded (at most 2000 characters)',
        );
      }
      const f = parseFilter(rest);
      if (f.ids === undefined && f.reason === undefined && f.table === undefined) {
        throw new InvalidRequest(
          'discard needs ids, reason or table: it never applies to everything by accident',
        );
      }
      return dl().discard(f, note);
    },
    async purge(body) {
      const days = body.olderThanDays ?? o.deadLetterRetentionDays;
      if (typeof days !== 'number' || !(days >= 0) || days > 36_500)
        throw new InvalidRequest('olderThanDays must be a number of days');
      for (const k of Object.keys(body))
        if (k !== 'olderThanDays') throw new InvalidRequest(`unknown field ${JSON.stringify(k)}`);
      return dl().purge(days);
    },
  };
}

/** The old service's sync: here a verify of the sink against the source, repairing what differs. */
async function syncRun(port: ConnectorPort, body: Record<string, unknown>): Promise<unknown> {
  const verify = port.verify();
  const phase = port.view().phase;
  if (!verify || phase !== 'streaming')
    throw new Conflict(`cannot verify and repair now: the connector is ${phase}`);
  const req = verify.request(body, true);
  const t0 = Date.now();
  try {
    return syncRunAnswer(await verify.run(req));
  } catch (err) {
    if (err instanceof RequestRefused) throw err;
    // Callers of the old endpoint read `success`; a failed pass says so in the same shape.
    return {
      success: false,
      message: `verify failed: ${(err as Error).message}`,
      processed: 0,
      errors: 1,
      total: 0,
      duration: Date.now() - t0,
    };
  }
}
