import type pg from 'pg';
import { type Lsn, formatLsn, minLsn } from '../checkpoint/lsn.js';
import { setCheckpointState } from '../checkpoint/store.js';
import type { Config } from '../config.js';
import { SlotlineError } from '../errors.js';
import type { Logger } from '../log.js';
import { foreignSlot, slotGone, slotLost } from '../setup.js';
import type { Sink } from '../sinks/sink.js';
import { TIMESCALE_SINK } from '../sinks/timescale.js';
import { copySnapshot } from '../source/snapshot.js';
import { createSlot, createSlotWithSnapshot, dropSlot, inspectSlot } from '../source/slot.js';
import { quoteIdent } from '../sql.js';
import type { PoolCache } from '../trades/pools.js';
import type { ChangeRouter } from '../trades/router.js';
import type { Pipeline } from './pipeline.js';

/** Where a leader starts: resume a streaming checkpoint, or take the initial snapshot. */
export type Start = { kind: 'stream'; lsn: Lsn } | { kind: 'snapshot' };

export interface StartupDeps {
  cfg: Config;
  source: pg.Pool;
  sink: pg.Pool;
  /** TimescaleDB first: its checkpoint row carries the slot's lifecycle. */
  sinks: readonly Sink[];
  log: Logger;
}

/**
 * A missing or invalidated slot needs an operator (`slotline setup --resnapshot`).
 * At start-up the connector waits for that, retrying with backoff, rather than
 * exiting: its readiness names the recovery and its metrics (slot_exists,
 * slot_wal_status) stay scrapeable for the alerts, and once the operator has
 * run it, the next attempt takes the fresh snapshot.
 */
export function awaitOperator(e: SlotlineError): SlotlineError {
  if (e.code !== 'slot_missing' && e.code !== 'slot_invalidated') return e;
  return new SlotlineError(e.code, e.message, { retriable: true, cause: e });
}

export async function resumePoint(d: StartupDeps): Promise<Start> {
  const [primary] = d.sinks;
  if (!primary) throw new Error('no sink');
  const ck = await primary.checkpoint();
  const slot = await inspectSlot(d.source, d.cfg.slot);
  if (ck?.state !== 'streaming') {
    if (slot && !ck) throw foreignSlot(d.cfg.slot);
    return { kind: 'snapshot' };
  }
  if (!slot) throw slotGone(d.cfg.slot, ck.lsn === null ? '?' : formatLsn(ck.lsn));
  if (slot.walStatus === 'lost') throw slotLost(d.cfg.slot);
  const lsns: Lsn[] = [];
  for (const s of d.sinks) {
    const c = s === primary ? ck : await s.checkpoint();
    if (c?.lsn == null) continue;
    lsns.push(c.lsn);
    // The slot was acknowledged past this sink (it was disabled for a while,
    // or its checkpoint was edited): the changes in between cannot be streamed again.
    if (slot.confirmedFlushLsn !== null && c.lsn < slot.confirmedFlushLsn) {
      d.log.warn(
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

export interface SnapshotParts {
  router: ChangeRouter;
  pipeline: Pipeline;
  pools: PoolCache;
  signal: AbortSignal;
}

/**
 * First start: a new slot with an exported snapshot, the tables copied in it,
 * then everything the snapshot did not see removed from the sink and the
 * checkpoint set to the slot's consistent point, in one sink transaction. An
 * interrupted copy leaves state 'snapshotting', and the next start redoes it
 * with a new slot. Returns null when stopped before it completed.
 */
export async function takeSnapshot(d: StartupDeps, p: SnapshotParts): Promise<Lsn | null> {
  const { cfg } = d;
  const log = d.log.child({ component: 'snapshot' });
  if (cfg.snapshot === 'never') return startWithoutSnapshot(d, p, log);
  // A slot made by `setup` (or by an interrupted snapshot) has no usable snapshot any more.
  await dropSlot(d.source, cfg.slot);
  await setCheckpointState(d.sink, cfg.slot, TIMESCALE_SINK, 'snapshotting', null, null);
  const exported = await createSlotWithSnapshot(cfg.sourceUrl, cfg.slot);
  try {
    const lsn = exported.consistentPoint;
    await setCheckpointState(d.sink, cfg.slot, TIMESCALE_SINK, 'snapshotting', null, lsn);
    log.info({ lsn: formatLsn(lsn) }, 'initial snapshot started');
    p.pools.clear();
    const t0 = Date.now();
    const counts = await copySnapshot({
      url: cfg.sourceUrl,
      snapshotName: exported.snapshotName,
      lsn,
      schema: cfg.sourceSchema,
      router: p.router,
      queue: p.pipeline.queue,
      signal: p.signal,
      log,
    });
    // Snapshot rows belong to no transaction: all of them are written.
    await p.pipeline.flushAll();
    if (p.signal.aborted) return null;
    await completeSnapshot(d.sinks, lsn);
    log.info({ lsn: formatLsn(lsn), ...counts, ms: Date.now() - t0 }, 'initial snapshot complete');
    return lsn;
  } finally {
    await exported.connection.end().catch(() => undefined);
  }
}

/**
 * SLOTLINE_SNAPSHOT=never: no history is copied, and nothing in the sink is
 * removed (it may hold rows from before slotline, such as the old polling
 * service's). The slot `setup` made is kept, so changes written between
 * `setup` and the first `run` are streamed; pool symbols come from the source.
 */
async function startWithoutSnapshot(d: StartupDeps, p: SnapshotParts, log: Logger): Promise<Lsn> {
  const { cfg } = d;
  const slot = await inspectSlot(d.source, cfg.slot);
  const lsn =
    slot?.confirmedFlushLsn != null && slot.walStatus !== 'lost'
      ? slot.confirmedFlushLsn
      : await createSlot(d.source, cfg.slot);
  await loadPools(d, p.pools);
  await completeSnapshot(d.sinks, lsn, false);
  log.info(
    { lsn: formatLsn(lsn), slot: slot ? 'kept' : 'created' },
    'streaming without an initial snapshot (SLOTLINE_SNAPSHOT=never); the sink keeps what it holds',
  );
  return lsn;
}

/** The other sinks first: the primary's 'streaming' state is what marks the snapshot done. */
async function completeSnapshot(sinks: readonly Sink[], lsn: Lsn, copied = true): Promise<void> {
  const [primary, ...others] = sinks;
  for (const s of others) await s.completeSnapshot(lsn, copied);
  await primary?.completeSnapshot(lsn, copied);
}

/** Symbols from the sink's mirror (consistent with the checkpoint), then any pool only the source has. */
export async function loadPools(d: StartupDeps, pools: PoolCache): Promise<void> {
  type Row = { id: string; order_book: string | null; coin: string | null };
  const q = (schema: string) => `SELECT id, order_book, coin FROM ${quoteIdent(schema)}.pools`;
  const fromSink = await d.sink.query<Row>(q(d.cfg.sinkSchema));
  for (const r of fromSink.rows) pools.set({ id: r.id, orderBook: r.order_book, coin: r.coin });
  const fromSource = await d.source.query<Row>(q(d.cfg.sourceSchema));
  for (const r of fromSource.rows)
    pools.setIfAbsent({ id: r.id, orderBook: r.order_book, coin: r.coin });
  d.log.info({ pools: pools.size }, 'pool symbols loaded');
}
