import type pg from 'pg';
import { type Lsn, formatLsn, minLsn } from '../checkpoint/lsn.js';
import type { Config } from '../config.js';
import { SlotlineError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Sink } from '../sinks/sink.js';
import { TimescaleSink } from '../sinks/timescale.js';
import { verifySourceIdentity } from '../source/identity.js';
import { takeInitialSnapshot } from '../source/snapshot.js';
import { TRADES_TABLE } from '../source/checks.js';
import { foreignSlot, inspectSlot, slotGone, slotLost } from '../source/slot.js';
import { quoteIdent } from '../sql.js';
import type { PoolCache } from '../trades/pools.js';
import type { ChangeRouter } from '../trades/router.js';
import type { Pipeline } from './pipeline.js';

/** Where a leader starts: resume a streaming checkpoint, or take the initial snapshot. */
export type Start =
  /** `schema`: the source schema the sink's rows came from, when recorded. */
  { kind: 'stream'; lsn: Lsn; schema: string | null } | { kind: 'snapshot' };

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
  if (primary instanceof TimescaleSink)
    await verifySourceIdentity({
      url: d.cfg.sourceUrl,
      slot: d.cfg.slot,
      recorded: ck.source,
      checkpoint: ck.lsn,
      record: (id) => primary.recordSourceIdentity(id),
      log: d.log,
    });
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
  return { kind: 'stream', lsn: minLsn(lsns) ?? 0n, schema: ck.sourceSchema };
}

export interface SnapshotParts {
  /** The source schema to copy and stream. */
  schema: string;
  router: ChangeRouter;
  pipeline: Pipeline;
  pools: PoolCache;
  signal: AbortSignal;
}

/**
 * A new source history for the sink: the initial snapshot (or, with
 * SLOTLINE_SNAPSHOT=never, streaming from the slot `setup` made), in a new
 * source generation (see src/source/snapshot.ts). Returns null when stopped
 * before it completed.
 */
export function takeSnapshot(d: StartupDeps, p: SnapshotParts): Promise<Lsn | null> {
  const [primary] = d.sinks;
  if (!(primary instanceof TimescaleSink)) throw new Error('the first sink must be TimescaleDB');
  return takeInitialSnapshot({
    url: d.cfg.sourceUrl,
    slot: d.cfg.slot,
    schema: p.schema,
    mode: d.cfg.snapshot,
    source: d.source,
    sinks: [...d.sinks],
    primary,
    router: p.router,
    queue: p.pipeline.queue,
    pools: p.pools,
    loadPools: () => loadPools(d, p.pools, p.schema),
    signal: p.signal,
    log: d.log.child({ component: 'snapshot' }),
  });
}

/** Symbols from the sink's mirror (consistent with the checkpoint), then any pool only the source has. */
export async function loadPools(d: StartupDeps, pools: PoolCache, schema: string): Promise<void> {
  type Row = { id: string; order_book: string | null; coin: string | null };
  const q = (schema: string) => `SELECT id, order_book, coin FROM ${quoteIdent(schema)}.pools`;
  const fromSink = await d.sink.query<Row>(q(d.cfg.sinkSchema));
  for (const r of fromSink.rows) pools.set({ id: r.id, orderBook: r.order_book, coin: r.coin });
  const fromSource = await d.source.query<Row>(q(schema));
  for (const r of fromSource.rows)
    pools.setIfAbsent({ id: r.id, orderBook: r.order_book, coin: r.coin });
  d.log.info({ pools: pools.size }, 'pool symbols loaded');
}

/**
 * Follow mode: the deployment whose rows the sink holds. Recorded with the
 * checkpoint; a sink that streamed before it was recorded holds what the
 * publication covers.
 */
export async function heldSchema(d: StartupDeps, recorded: string | null): Promise<string | null> {
  if (recorded !== null) return recorded;
  const { rows } = await d.source.query<{ schemaname: string }>(
    `SELECT schemaname FROM pg_publication_tables WHERE pubname = $1 AND tablename = $2`,
    [d.cfg.publication, TRADES_TABLE],
  );
  return rows[0]?.schemaname ?? null;
}
