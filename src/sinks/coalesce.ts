import type { Lsn } from '../checkpoint/lsn.js';
import type { Pool, Trade } from '../trades/map.js';
import type { Change, DeadLetter } from './batch.js';

/**
 * Folds a batch into the final state of each key, so the sink can write it
 * with one set-based statement per kind (an INSERT … ON CONFLICT may not touch
 * the same row twice). Batches are cut at TRUNCATE: what came before it is
 * written, then the truncate, then what follows.
 */
export interface TradeUpsertRow {
  trade: Trade;
  lsn: Lsn;
  /**
   * Remove versions of this trade id at other times first: the trade was
   * updated (its time may have moved, and (trade_id, time) is the sink's key)
   * or deleted earlier in the batch.
   */
  replace: boolean;
}

export interface Segment {
  tradeUpserts: TradeUpsertRow[];
  tradeDeletes: { tradeId: string; lsn: Lsn }[];
  poolUpserts: { pool: Pool; lsn: Lsn }[];
  poolDeletes: { poolId: string; lsn: Lsn }[];
  deadLetters: { letter: DeadLetter; lsn: Lsn }[];
  /** Applied after everything above. */
  truncate: { tables: ('trades' | 'pools')[]; lsn: Lsn } | null;
}

type TradeState = { kind: 'upsert'; row: TradeUpsertRow } | { kind: 'delete'; lsn: Lsn };
type PoolState = { kind: 'upsert'; pool: Pool; lsn: Lsn } | { kind: 'delete'; lsn: Lsn };

export function coalesce(changes: readonly Change[]): Segment[] {
  const segments: Segment[] = [];
  let trades = new Map<string, TradeState>();
  let pools = new Map<string, PoolState>();
  let letters = new Map<string, { letter: DeadLetter; lsn: Lsn }>();

  const close = (truncate: Segment['truncate']) => {
    const seg: Segment = {
      tradeUpserts: [],
      tradeDeletes: [],
      poolUpserts: [],
      poolDeletes: [],
      deadLetters: [],
      truncate,
    };
    for (const [tradeId, s] of trades) {
      if (s.kind === 'upsert') seg.tradeUpserts.push(s.row);
      else seg.tradeDeletes.push({ tradeId, lsn: s.lsn });
    }
    for (const [poolId, s] of pools) {
      if (s.kind === 'upsert') seg.poolUpserts.push({ pool: s.pool, lsn: s.lsn });
      else seg.poolDeletes.push({ poolId, lsn: s.lsn });
    }
    seg.deadLetters = [...letters.values()];
    segments.push(seg);
    trades = new Map();
    pools = new Map();
    letters = new Map();
  };

  for (const c of changes) {
    switch (c.kind) {
      case 'trade_upsert': {
        const prev = trades.get(c.trade.tradeId);
        trades.set(c.trade.tradeId, {
          kind: 'upsert',
          row: { trade: c.trade, lsn: c.lsn, replace: prev !== undefined || c.op === 'update' },
        });
        break;
      }
      case 'trade_delete':
        trades.set(c.tradeId, { kind: 'delete', lsn: c.lsn });
        break;
      case 'pool_upsert':
        pools.set(c.pool.id, { kind: 'upsert', pool: c.pool, lsn: c.lsn });
        break;
      case 'pool_delete':
        pools.set(c.poolId, { kind: 'delete', lsn: c.lsn });
        break;
      case 'dead_letter': {
        const l = c.letter;
        letters.set(`${l.sourceTable}\u0000${l.rowKey}\u0000${c.lsn}`, { letter: l, lsn: c.lsn });
        break;
      }
      case 'truncate':
        close({ tables: c.tables, lsn: c.lsn });
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
