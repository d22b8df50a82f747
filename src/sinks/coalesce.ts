import type { Pool, Trade } from '../trades/map.js';
import type { Change, DeadLetter } from './batch.js';
import { compareVersions, versionOf, type RowVersion } from './version.js';

/**
 * Folds a batch into the newest state of each key, so the sink can write it
 * with one set-based statement per kind (an INSERT … ON CONFLICT may not touch
 * the same row twice). "Newest" is by version, not by arrival: a dead-letter
 * retry queued after a streamed delete of the same key loses to it here as it
 * would in the sink. Batches are cut at TRUNCATE: what came before it is
 * written, then the truncate, then what follows.
 */
export interface TradeUpsertRow {
  trade: Trade;
  version: RowVersion;
  /**
   * The sink may hold this trade id at another time (its time moved, and
   * (trade_id, time) is the sink's key) or a newer version of it: check every
   * row of the id, and remove the older ones at other times. False only for a
   * streamed insert that nothing else in the batch touched, the hot path: the
   * stream applies in order, so at most a replay finds a sibling, and the
   * replay itself removes it again.
   */
  replace: boolean;
}

export interface Segment {
  tradeUpserts: TradeUpsertRow[];
  tradeDeletes: { tradeId: string; version: RowVersion }[];
  poolUpserts: { pool: Pool; version: RowVersion }[];
  poolDeletes: { poolId: string; version: RowVersion }[];
  deadLetters: { letter: DeadLetter; version: RowVersion }[];
  /** Applied after everything above. */
  truncate: { tables: ('trades' | 'pools')[]; version: RowVersion } | null;
}

/** The segment's own entries serve as the state: no wrapper object per trade. */
type TradeDelete = Segment['tradeDeletes'][number];
type TradeState = TradeUpsertRow | TradeDelete;
type PoolState =
  { kind: 'upsert'; pool: Pool; version: RowVersion } | { kind: 'delete'; version: RowVersion };

/** `next` replaces `prev` unless it is older (a late retry of an older version). */
function supersedes(prev: { version: RowVersion } | undefined, next: RowVersion): boolean {
  return prev === undefined || compareVersions(next, prev.version) >= 0;
}

const isUpsert = (s: TradeState): s is TradeUpsertRow => 'trade' in s;

/** `gen` is the sink's current source generation (for changes that carry none). */
export function coalesce(changes: readonly Change[], gen = 0): Segment[] {
  const segments: Segment[] = [];
  let trades = new Map<string, TradeState>();
  let pools = new Map<string, PoolState>();
  let letters = new Map<string, { letter: DeadLetter; version: RowVersion }>();

  const close = (truncate: Segment['truncate']) => {
    const seg: Segment = {
      tradeUpserts: [],
      tradeDeletes: [],
      poolUpserts: [],
      poolDeletes: [],
      deadLetters: [...letters.values()],
      truncate,
    };
    for (const s of trades.values()) {
      if (isUpsert(s)) seg.tradeUpserts.push(s);
      else seg.tradeDeletes.push(s);
    }
    for (const [poolId, s] of pools) {
      if (s.kind === 'upsert') seg.poolUpserts.push({ pool: s.pool, version: s.version });
      else seg.poolDeletes.push({ poolId, version: s.version });
    }
    segments.push(seg);
    trades = new Map();
    pools = new Map();
    letters = new Map();
  };

  for (const c of changes) {
    const version = versionOf(c, gen);
    switch (c.kind) {
      case 'trade_upsert': {
        const prev = trades.get(c.trade.tradeId);
        if (!supersedes(prev, version)) break;
        const hot = prev === undefined && c.op === 'insert' && c.tx !== undefined;
        trades.set(c.trade.tradeId, { trade: c.trade, version, replace: !hot });
        break;
      }
      case 'trade_delete':
        if (supersedes(trades.get(c.tradeId), version))
          trades.set(c.tradeId, { tradeId: c.tradeId, version });
        break;
      case 'pool_upsert':
        if (supersedes(pools.get(c.pool.id), version))
          pools.set(c.pool.id, { kind: 'upsert', pool: c.pool, version });
        break;
      case 'pool_delete':
        if (supersedes(pools.get(c.poolId), version))
          pools.set(c.poolId, { kind: 'delete', version });
        break;
      case 'dead_letter': {
        const l = c.letter;
        letters.set(`${l.sourceTable}\u0000${l.rowKey}\u0000${c.lsn}`, { letter: l, version });
        break;
      }
      case 'truncate':
        close({ tables: c.tables, version });
        break;
      default: {
        const never: never = c;
        throw new Error(`unhandled change ${JSON.stringify(never)}`);
      }
    }
  }
  if (trades.size > 0 || pools.size > 0 || letters.size > 0 || segments.length === 0) close(null);
  return segments;
}
