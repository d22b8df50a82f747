import type { Lsn } from '../checkpoint/lsn.js';
import type { PgoutputMessage, Relation, TupleValues } from '../decode/pgoutput.js';
import type { Logger } from '../log.js';
import type { Change, DeadLetter, SourceTx } from '../sinks/batch.js';
import type { InflightQueue } from '../sinks/inflight.js';
import { POOLS_TABLE, TRADES_TABLE } from '../source/checks.js';
import {
  mapPool,
  mapTrade,
  poolColumns,
  rawValues,
  tradeColumns,
  type PoolColumns,
  type Rejection,
  type TradeColumns,
} from './map.js';
import type { PoolCache } from './pools.js';

export interface RouterOptions {
  /** SLOTLINE_SOURCE_SCHEMA */
  sourceSchema: string;
  /** SLOTLINE_APPLY_TRUNCATE (default true) */
  applyTruncate: boolean;
  /** SLOTLINE_IDLE_ACK_INTERVAL_MS (default 1 s): how often an idle WAL end may be checkpointed. */
  idleAckIntervalMs: number;
  /** Injected clock (ms). */
  now?: () => number;
}

/** Prefix of the backfill's low and high watermarks (pg_logical_emit_message). */
export const WATERMARK_PREFIX = 'slotline_watermark';

/**
 * A running backfill's view of the stream (DBLog watermarks): it sees its
 * watermarks in stream order, and every trade id the stream changes.
 */
export interface StreamWatcher {
  onWatermark(content: string, lsn: Lsn): void;
  onTradeKey(id: string): void;
  onPoolKey?(id: string): void;
}

/** Prefix of the connector's heartbeat messages (pg_logical_emit_message). */
export const HEARTBEAT_PREFIX = 'slotline_heartbeat';

type Target =
  | { kind: 'trades'; cols: TradeColumns; relation: Relation }
  | { kind: 'pools'; cols: PoolColumns; relation: Relation }
  | { kind: 'other' };

export type RelationLike = Pick<Relation, 'schema' | 'name' | 'columns'>;

export interface RouterStats {
  transactions: number;
  skippedTransactions: number;
  changes: number;
  deadLetters: number;
  heartbeats: number;
  /** Commit time (µs since 2000-01-01) of the last transaction routed. */
  lastCommitTime: bigint | null;
  lastCommitEnd: Lsn | null;
}

/**
 * Turns decoded pgoutput messages (and snapshot rows) into sink changes, in
 * stream order: trades are mapped against the pool cache as of their own
 * transaction, unmappable rows become dead letters, and transaction
 * boundaries become checkpoints in the in-flight queue. Transactions that
 * committed before `skipBefore` (already durable everywhere) are dropped.
 */
export class ChangeRouter {
  skipBefore: Lsn = 0n;
  /** Set while a backfill runs. */
  watcher: StreamWatcher | null = null;
  /** Told when a trade waits for a pool, and when a pool appears (automatic dead letter retry). */
  deadLetters: {
    onDeadLetter(): void;
    onUnknownPool(ref: string): void;
    onPoolAppeared(ref: string): void;
  } | null = null;
  readonly stats: RouterStats = {
    transactions: 0,
    skippedTransactions: 0,
    changes: 0,
    deadLetters: 0,
    heartbeats: 0,
    lastCommitTime: null,
    lastCommitEnd: null,
  };
  private readonly targets = new Map<number, Target>();
  private tx: {
    finalLsn: Lsn;
    commitTime: bigint;
    skip: boolean;
    source: SourceTx;
    seq: number;
  } | null = null;
  private lastIdleAt = 0;
  private lastQueued: Lsn = 0n;
  private pendingIdle: Lsn | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private readonly now: () => number;
  private readonly symbolOf: (ref: string) => string | null | undefined;

  constructor(
    private readonly queue: InflightQueue,
    private readonly pools: PoolCache,
    private readonly opts: RouterOptions,
    private readonly log: Logger,
  ) {
    this.now = opts.now ?? Date.now;
    this.symbolOf = (ref) => this.pools.symbolOf(ref);
  }

  get inTransaction(): boolean {
    return this.tx !== null;
  }

  /** Forget per-connection state (relations, an open transaction) before reconnecting. */
  reset(): void {
    this.targets.clear();
    this.tx = null;
    this.pendingIdle = null;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  onMessage(msg: PgoutputMessage, bytes: number): void {
    switch (msg.tag) {
      case 'begin':
        this.tx = {
          finalLsn: msg.finalLsn,
          commitTime: msg.commitTime,
          skip: msg.finalLsn < this.skipBefore,
          source: { xid: msg.xid, commitTime: msg.commitTime },
          seq: 0,
        };
        return;
      case 'commit': {
        const tx = this.tx;
        this.tx = null;
        if (!tx || tx.skip) {
          this.stats.skippedTransactions += 1;
          return;
        }
        this.stats.transactions += 1;
        this.stats.lastCommitTime = msg.commitTime;
        this.stats.lastCommitEnd = msg.endLsn;
        this.lastQueued = msg.endLsn;
        this.queue.commit(msg.endLsn, msg.commitTime, true);
        return;
      }
      case 'relation':
        this.targets.set(msg.relation.oid, this.resolve(msg.relation));
        return;
      case 'insert':
      case 'update':
      case 'delete':
        if (this.tx?.skip !== false) return;
        this.onRow(msg, bytes, this.tx.finalLsn, this.tx.commitTime);
        return;
      case 'truncate': {
        if (this.tx?.skip !== false) return;
        const tables: ('trades' | 'pools')[] = [];
        for (const r of msg.relations) {
          const t = this.targets.get(r.oid);
          if (t?.kind === 'trades' || t?.kind === 'pools') tables.push(t.kind);
        }
        if (tables.length === 0) return;
        if (!this.opts.applyTruncate) {
          this.log.warn(
            { tables },
            'TRUNCATE at the source not applied (SLOTLINE_APPLY_TRUNCATE=false)',
          );
          return;
        }
        this.log.warn({ tables }, 'TRUNCATE at the source: clearing the sink tables');
        this.push({ kind: 'truncate', lsn: this.tx.finalLsn, tables }, bytes);
        return;
      }
      case 'message':
        if (msg.prefix === HEARTBEAT_PREFIX) this.stats.heartbeats += 1;
        else if (msg.prefix === WATERMARK_PREFIX && this.tx?.skip === false) {
          this.watcher?.onWatermark(msg.content.toString('utf8'), this.tx.finalLsn);
        }
        return;
      case 'origin':
      case 'type':
        return;
      default: {
        const never: never = msg;
        throw new Error(`unhandled pgoutput message ${JSON.stringify(never)}`);
      }
    }
  }

  /**
   * The server has sent everything up to `walEnd`. Outside a transaction that
   * is a point every sink may checkpoint once it has what came before, so an
   * idle slot stops holding WAL. Throttled to one per idleAckIntervalMs.
   */
  onKeepalive(walEnd: Lsn): void {
    // Inside a transaction its commit will carry the checkpoint further.
    if (this.tx !== null || walEnd <= this.lastQueued || walEnd < this.skipBefore) return;
    const wait = this.opts.idleAckIntervalMs - (this.now() - this.lastIdleAt);
    if (wait <= 0) {
      this.queueIdle(walEnd);
      return;
    }
    // Keep the latest and try again when the interval has passed: the server
    // sends no further keepalive until we answer, so dropping it would leave
    // the slot holding WAL until its next timeout.
    this.pendingIdle = walEnd;
    if (!this.idleTimer) {
      this.idleTimer = setTimeout(
        () => {
          this.idleTimer = null;
          const pending = this.pendingIdle;
          this.pendingIdle = null;
          if (pending !== null) this.onKeepalive(pending);
        },
        Math.max(wait, 10),
      );
      this.idleTimer.unref();
    }
  }

  private queueIdle(walEnd: Lsn): void {
    this.lastIdleAt = this.now();
    this.lastQueued = walEnd;
    this.queue.commit(walEnd, null, false);
  }

  /** A row read by the initial snapshot (or a backfill) as of `lsn`. */
  snapshotRow(relation: RelationLike, values: TupleValues, lsn: Lsn, bytes: number): void {
    const target = this.resolve(relation as Relation);
    if (target.kind === 'trades') this.routeTrade(target, 'snapshot', values, lsn, null, bytes);
    else if (target.kind === 'pools') this.routePool(target, 'snapshot', values, lsn, null, bytes);
  }

  private resolve(relation: Relation): Target {
    if (relation.schema !== this.opts.sourceSchema) return { kind: 'other' };
    if (relation.name === TRADES_TABLE)
      return { kind: 'trades', cols: tradeColumns(relation), relation };
    if (relation.name === POOLS_TABLE)
      return { kind: 'pools', cols: poolColumns(relation), relation };
    return { kind: 'other' };
  }

  private onRow(
    msg: Extract<PgoutputMessage, { tag: 'insert' | 'update' | 'delete' }>,
    bytes: number,
    lsn: Lsn,
    commitTime: bigint,
  ): void {
    const target = this.targets.get(msg.relation.oid) ?? this.resolve(msg.relation);
    if (target.kind === 'other') return;
    if (this.watcher) {
      for (const t of [
        msg.tag === 'insert' ? null : (msg.key ?? msg.old),
        msg.tag === 'delete' ? null : msg.new,
      ]) {
        const id = t?.[target.cols.id];
        if (typeof id !== 'string') continue;
        if (target.kind === 'trades') this.watcher.onTradeKey(id);
        else this.watcher.onPoolKey?.(id);
      }
    }
    if (msg.tag === 'delete') {
      const old = msg.key ?? msg.old;
      const idCol = target.cols.id;
      const id = old ? old[idCol] : null;
      if (typeof id !== 'string') {
        this.deadLetter(
          target,
          'delete',
          old ?? [],
          lsn,
          commitTime,
          { code: 'missing_key', reason: 'delete without a key' },
          bytes,
        );
        return;
      }
      if (target.kind === 'trades') this.push({ kind: 'trade_delete', lsn, tradeId: id }, bytes);
      else {
        this.pools.delete(id);
        this.push({ kind: 'pool_delete', lsn, poolId: id }, bytes);
      }
      return;
    }
    const op = msg.tag;
    // The key changed (UPDATE … SET id = …): the old id is gone.
    const oldId = msg.tag === 'update' && msg.key ? msg.key[target.cols.id] : null;
    const newId = msg.new[target.cols.id];
    if (typeof oldId === 'string' && oldId !== newId) {
      if (target.kind === 'trades') this.push({ kind: 'trade_delete', lsn, tradeId: oldId }, 0);
      else {
        this.pools.delete(oldId);
        this.push({ kind: 'pool_delete', lsn, poolId: oldId }, 0);
      }
    }
    if (target.kind === 'trades') this.routeTrade(target, op, msg.new, lsn, commitTime, bytes);
    else this.routePool(target, op, msg.new, lsn, commitTime, bytes);
  }

  private routeTrade(
    target: Extract<Target, { kind: 'trades' }>,
    op: 'insert' | 'update' | 'snapshot',
    values: TupleValues,
    lsn: Lsn,
    commitTime: bigint | null,
    bytes: number,
  ): void {
    const m = mapTrade(values, target.cols, this.symbolOf);
    if (m.ok) this.push({ kind: 'trade_upsert', lsn, op, trade: m.value }, bytes);
    else this.deadLetter(target, op, values, lsn, commitTime, m.rejection, bytes);
  }

  private routePool(
    target: Extract<Target, { kind: 'pools' }>,
    op: 'insert' | 'update' | 'snapshot',
    values: TupleValues,
    lsn: Lsn,
    commitTime: bigint | null,
    bytes: number,
  ): void {
    const m = mapPool(values, target.cols);
    if (!m.ok) {
      this.deadLetter(target, op, values, lsn, commitTime, m.rejection, bytes);
      return;
    }
    const ref = this.pools.joinColumn === 'id' ? m.value.id : m.value.orderBook;
    const appeared = ref !== null && !this.pools.has(ref);
    this.pools.set(m.value);
    this.push({ kind: 'pool_upsert', lsn, op, pool: m.value }, bytes);
    if (appeared) this.deadLetters?.onPoolAppeared(ref);
  }

  /**
   * A row re-read from the source now (a backfill chunk, a dead-letter retry),
   * applied at `lsn`, the high watermark whose transaction the stream is in:
   * pushed like a streamed update of that transaction, so it is newer than
   * what the sinks held when it was read, replaces versions of the trade at
   * other times, and loses to anything the stream brings later. A row that
   * cannot be mapped becomes a dead letter when `deadLetter` is set; the
   * rejection is returned either way.
   */
  remap(
    relation: RelationLike,
    values: TupleValues,
    lsn: Lsn,
    opts: { deadLetter: boolean },
  ): Rejection | null {
    const target = this.resolve(relation as Relation);
    if (target.kind === 'other')
      return {
        code: 'missing_key',
        reason: `${relation.schema}.${relation.name} is not a mapped table`,
      };
    let bytes = 64;
    for (const v of values) if (typeof v === 'string') bytes += v.length;
    const m = target.kind === 'trades' ? mapTrade(values, target.cols, this.symbolOf) : null;
    const p = target.kind === 'pools' ? mapPool(values, target.cols) : null;
    const rejection = m && !m.ok ? m.rejection : p && !p.ok ? p.rejection : null;
    if (rejection) {
      const commitTime = this.tx?.commitTime ?? null;
      if (opts.deadLetter)
        this.deadLetter(target, 'snapshot', values, lsn, commitTime, rejection, bytes);
      return rejection;
    }
    if (m?.ok) this.push({ kind: 'trade_upsert', lsn, op: 'update', trade: m.value }, bytes);
    if (p?.ok) {
      const ref = this.pools.joinColumn === 'id' ? p.value.id : p.value.orderBook;
      const appeared = ref !== null && !this.pools.has(ref);
      this.pools.set(p.value);
      this.push({ kind: 'pool_upsert', lsn, op: 'update', pool: p.value }, bytes);
      if (appeared) this.deadLetters?.onPoolAppeared(ref);
    }
    return null;
  }

  private deadLetter(
    target: Exclude<Target, { kind: 'other' }>,
    operation: DeadLetter['operation'],
    values: TupleValues,
    lsn: Lsn,
    commitTime: bigint | null,
    rejection: Rejection,
    bytes: number,
  ): void {
    const id = values[target.cols.id];
    const letter: DeadLetter = {
      sourceTable: `${target.relation.schema}.${target.relation.name}`,
      operation,
      rowKey: typeof id === 'string' && id !== '' ? id : '(missing)',
      commitTime,
      raw: rawValues(target.relation, values),
      code: rejection.code,
      reason: rejection.reason,
    };
    this.stats.deadLetters += 1;
    this.deadLetters?.onDeadLetter();
    if (rejection.code === 'unknown_pool' && target.kind === 'trades') {
      const ref = values[target.cols.poolId];
      if (typeof ref === 'string') this.deadLetters?.onUnknownPool(ref);
    }
    this.log.debug(
      { table: letter.sourceTable, key: letter.rowKey, code: letter.code },
      'row dead-lettered',
    );
    this.push({ kind: 'dead_letter', lsn, letter }, bytes);
  }

  private push(change: Change, bytes: number): void {
    // Rows of a snapshot (or backfill) belong to no streamed transaction.
    if (this.tx && !fromSnapshot(change)) {
      change.tx = this.tx.source;
      change.seq = this.tx.seq++;
    }
    this.stats.changes += 1;
    this.queue.push(change, bytes);
  }
}

function fromSnapshot(c: Change): boolean {
  if (c.kind === 'trade_upsert' || c.kind === 'pool_upsert') return c.op === 'snapshot';
  return c.kind === 'dead_letter' && c.letter.operation === 'snapshot';
}
