import type pg from 'pg';
import { type Lsn, formatLsn, isLsn, minLsn, parseLsn } from '../checkpoint/lsn.js';
import { readCheckpoints } from '../checkpoint/store.js';
import type { Config } from '../config.js';
import type { ConnectorState } from '../main.js';
import { inspectSlot } from '../source/slot.js';
import { type AdminControl, type Probe } from './http.js';
import type { Metrics } from './metrics.js';
import { parseFilter } from './dead-letters.js';
import { syncHealth } from './sync-api.js';
import { syncRunAnswer } from '../verify/buckets.js';
import { Conflict, InvalidRequest, RequestRefused } from '../errors.js';

export interface ControlDeps {
  cfg: Config;
  state: ConnectorState;
  metrics: Metrics;
  source: pg.Pool;
  sink: pg.Pool;
  /** A replication loop that shows no progress for this long is wedged (default 5 min). */
  wedgedAfterMs?: number;
}

/** What an LSN reset will do, decided from the slot and the checkpoints (pure). */
export type ResetPlan =
  | { ok: true; mode: 'replay' | 'skip' | 'noop'; from: Lsn; to: Lsn }
  | { ok: false; status: number; message: string };

export function planLsnReset(p: {
  target: Lsn;
  force: boolean;
  confirmedFlush: Lsn;
  checkpoint: Lsn;
  walEnd: Lsn;
}): ResetPlan {
  const t = formatLsn(p.target);
  if (p.target < p.confirmedFlush) {
    return {
      ok: false,
      status: 409,
      message:
        `${t} is before the slot's confirmed_flush_lsn ${formatLsn(p.confirmedFlush)}: a logical slot cannot replay WAL it has confirmed. ` +
        'To reprocess older history, use POST /admin/backfill (or `slotline backfill --from`)',
    };
  }
  if (p.target > p.walEnd) {
    return {
      ok: false,
      status: 409,
      message: `${t} is past the server's WAL end ${formatLsn(p.walEnd)}`,
    };
  }
  if (p.target > p.checkpoint && !p.force) {
    return {
      ok: false,
      status: 409,
      message:
        `${t} is ahead of the sinks' checkpoint ${formatLsn(p.checkpoint)}: resetting there skips every change in between. ` +
        'Send "force": true to skip them',
    };
  }
  const mode = p.target === p.checkpoint ? 'noop' : p.target < p.checkpoint ? 'replay' : 'skip';
  return { ok: true, mode, from: p.checkpoint, to: p.target };
}

/** The HTTP surface's view of the running connector. */
export function adminControl(d: ControlDeps): AdminControl {
  const { state, cfg } = d;
  const wedgedAfter = d.wedgedAfterMs ?? 5 * 60_000;

  const lagSeconds = () => state.commits.lagSeconds(Date.now());
  const dl = () => {
    if (!state.deadLetters)
      throw new Conflict(`dead letters are not available now: the connector is ${state.phase}`);
    return state.deadLetters;
  };
  const intParam = (v: string, name: string) => {
    if (!/^\d{1,9}$/.test(v)) throw new InvalidRequest(`${name} must be a whole number`);
    return Number(v);
  };

  return {
    liveness(): Probe {
      // A database being down is not a reason to restart us: only a loop that stopped moving is.
      if (
        state.phase === 'streaming' &&
        !state.adminPaused &&
        Date.now() - state.lastProgressAt > wedgedAfter
      ) {
        return {
          ok: false,
          reason: `no replication progress for ${Math.round((Date.now() - state.lastProgressAt) / 1000)} s`,
        };
      }
      return { ok: true, reason: state.phase };
    },
    readiness(): Probe {
      if (state.phase === 'standby' && state.lastError === null)
        return { ok: true, reason: 'standby' };
      return state.phase === 'streaming'
        ? {
            ok: true,
            reason: state.adminPaused ? 'streaming (paused by an operator)' : 'streaming',
          }
        : {
            ok: false,
            reason: state.lastError ? `${state.phase}: ${state.lastError}` : state.phase,
          };
    },
    async status() {
      const slot = state.slotHealth();
      const checkpoints = await readCheckpoints(d.sink, cfg.slot).catch(() => []);
      return {
        slot: cfg.slot,
        publication: cfg.publication,
        phase: state.phase,
        paused: state.adminPaused,
        lastError: state.lastError,
        lsn: {
          current: slot?.currentLsn ?? null,
          confirmedFlush: slot?.confirmedFlushLsn ?? null,
          restart: slot?.restartLsn ?? null,
          acknowledged: state.acker ? formatLsn(state.acker.flushLsn()) : null,
        },
        lag: { bytes: slot?.lagBytes ?? null, seconds: lagSeconds() },
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
        inflight: {
          rows: state.queue?.rows ?? 0,
          bytes: state.queue?.bytes ?? 0,
          transactions: state.commits.pending,
        },
        throughput: { rowsPerSecond1m: Math.round(state.throughput.perSecond()) },
        lastCommitTime:
          state.commits.lastDurableCommitMs === null
            ? null
            : new Date(state.commits.lastDurableCommitMs).toISOString(),
        backfill: state.backfill?.() ?? null,
        verify: state.verify?.status() ?? null,
      };
    },
    async syncHealth() {
      const last = state.commits.lastDurableCommitMs;
      return syncHealth({
        now: Date.now() / 1000,
        lastDurableCommit: last === null ? null : Math.floor(last / 1000),
        lagSeconds: lagSeconds(),
        pendingTrades: state.queue?.rows ?? 0,
        streaming: state.phase === 'streaming',
      });
    },
    async syncStats() {
      const r = state.router?.stats;
      const dead = await d.sink
        .query<{ n: string }>(
          `SELECT count(*)::text AS n FROM slotline.dead_letters WHERE slot = $1 AND state = 'pending'`,
          [cfg.slot],
        )
        .then((x) => Number(x.rows[0]?.n ?? 0))
        .catch(() => null);
      return {
        tradesPerSecond: Math.round(state.throughput.perSecond()),
        transactions: r?.transactions ?? 0,
        changes: r?.changes ?? 0,
        deadLetters: r?.deadLetters ?? 0,
        pendingDeadLetters: dead,
        errors: state.errorCount,
        lastError: state.lastError,
        uptimeSeconds: Math.round((Date.now() - state.startedAt) / 1000),
      };
    },
    pause() {
      state.adminPaused = true;
      state.stream?.pause();
      d.metrics.streamPaused.set(1);
      return { paused: true };
    },
    resume() {
      state.adminPaused = false;
      if (state.queue && !state.queue.full) {
        state.stream?.resume();
        d.metrics.streamPaused.set(0);
      }
      return { paused: false };
    },
    async resetLsn(text: string, force: boolean) {
      if (!isLsn(text))
        throw new InvalidRequest(
          `invalid LSN ${JSON.stringify(text)}: expected X/Y in hex, e.g. "0/16B3748"`,
        );
      if (!state.reset || !state.acker || state.phase !== 'streaming') {
        throw new Conflict(`cannot reset now: the connector is ${state.phase}`);
      }
      const info = await inspectSlot(d.source, cfg.slot);
      if (!info?.confirmedFlushLsn)
        throw new Conflict(`replication slot ${cfg.slot} does not exist`);
      const checkpoints = await readCheckpoints(d.sink, cfg.slot);
      const checkpoint = minLsn(checkpoints.flatMap((c) => (c.lsn === null ? [] : [c.lsn])));
      if (checkpoint === null) throw new Conflict('no sink has a checkpoint yet');
      const plan = planLsnReset({
        target: parseLsn(text),
        force,
        confirmedFlush: info.confirmedFlushLsn,
        checkpoint,
        walEnd: info.currentLsn,
      });
      if (!plan.ok) throw new Conflict(plan.message);
      if (plan.mode !== 'noop') await state.reset(plan.to);
      return { mode: plan.mode, from: formatLsn(plan.from), to: formatLsn(plan.to) };
    },
    async startBackfill(body) {
      if (!state.startBackfill)
        throw new Conflict(`cannot start a backfill now: the connector is ${state.phase}`);
      return state.startBackfill(body);
    },
    async cancelBackfill() {
      if (!state.cancelBackfill) throw new Conflict('no backfill can be cancelled now');
      return state.cancelBackfill();
    },
    deadLetters: {
      async list(query) {
        const { limit, after, ...rest } = query;
        const f = parseFilter(rest);
        return dl().list(
          f,
          limit === undefined ? 100 : intParam(limit, 'limit'),
          after === undefined ? 0 : intParam(after, 'after'),
        );
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
        const days = body.olderThanDays ?? cfg.deadLetterRetentionDays;
        if (typeof days !== 'number' || !(days >= 0) || days > 36_500)
          throw new InvalidRequest('olderThanDays must be a number of days');
        for (const k of Object.keys(body))
          if (k !== 'olderThanDays') throw new InvalidRequest(`unknown field ${JSON.stringify(k)}`);
        return dl().purge(days);
      },
    },
    async syncRun(body) {
      // The old service's sync: here a verify of the sink against the source, repairing what differs.
      if (!state.verify || state.phase !== 'streaming')
        throw new Conflict(`cannot verify and repair now: the connector is ${state.phase}`);
      const req = state.verify.request(body, true);
      const t0 = Date.now();
      try {
        return syncRunAnswer(await state.verify.run(req));
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
    },
  };
}
