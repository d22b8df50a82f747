import type { Lsn } from '../checkpoint/lsn.js';
import type { PgoutputMessage, Relation, TupleValues } from '../decode/pgoutput.js';
import { SourceSetupError } from '../errors.js';
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
  type Trade,
  type TradeColumns,
} from './map.js';
import type { PoolCache } from './pools.js';
import { changeBytes, DEFAULT_MAX_ROW_BYTES } from './size.js';

export interface RouterOptions {
  /** SLOTLINE_SOURCE_SCHEMA */
  sourceSchema: string;
  /** SLOTLINE_APPLY_TRUNCATE (default true) */
  applyTruncate: boolean;
  /** SLOTLINE_IDLE_ACK_INTERVAL_MS (default 1 s): how often an idle WAL end may be checkpointed. */
  idleAckIntervalMs: number;
  /**
   * SLOTLINE_MAX_ROW_BYTES (default 512 KiB): a change estimated larger once
   * enriched and serialized is a `row_too_large` dead letter, not carried.
   */
  maxRowBytes?: number;
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
  /** A mapped table that lacks a column slotline maps (renamed or dropped). */
  | {
      kind: 'unmapped';
      table: 'trades' | 'pools';
      cols: { id: number };
      relation: Relation;
      rejection: Rejection;
    }
  | { kind: 'other' };

/** What a change to `target` is about: trades or pools. */
function tableOf(target: Exclude<Target, { kind: 'other' }>): 'trades' | 'pools' {
  return target.kind === 'unmapped' ? target.table : target.kind;
}

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
  private keylessSnapshotRows = 0;
  private lastQueued: Lsn = 0n;
  private pendingIdle: Lsn | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private readonly now: () => number;
  private readonly symbolOf: (ref: string) => string | null | undefined;
  private readonly maxRowBytes: number;
  private schema: string;

  constructor(
    private readonly queue: InflightQueue,
    private readonly pools: PoolCache,
    private readonly opts: RouterOptions,
    private readonly log: Logger,
  ) {
    this.now = opts.now ?? Date.now;
    this.maxRowBytes = opts.maxRowBytes ?? DEFAULT_MAX_ROW_BYTES;
    this.schema = opts.sourceSchema;
    this.symbolOf = (ref) => this.pools.symbolOf(ref);
  }

  /** The source schema whose tables are mapped (a Ponder deployment switch moves it). */
  get sourceSchema(): string {
    return this.schema;
  }

  /** From the next session on, map the tables of `schema` (the relations are resolved anew). */
  followSchema(schema: string): void {
    this.schema = schema;
    this.targets.clear();
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
      case 'relation': {
        const target = this.resolve(msg.relation);
        this.targets.set(msg.relation.oid, target);
        if (target.kind === 'unmapped')
          this.log.error(
            { table: `${msg.relation.schema}.${msg.relation.name}` },
            `${target.rejection.reason}: its inserts and updates become missing_column dead letters until the column is back`,
          );
        return;
      }
      case 'insert':
      case 'update':
      case 'delete':
        if (this.tx?.skip !== false) return;
        this.onRow(msg, bytes, this.tx.finalLsn, this.tx.commitTime);
        return;
      case 'truncate':
        if (this.tx?.skip !== false) return;
        this.onTruncate(msg, bytes, this.tx.finalLsn);
        return;
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

  private onTruncate(
    msg: Extract<PgoutputMessage, { tag: 'truncate' }>,
    bytes: number,
    lsn: Lsn,
  ): void {
    const tables: ('trades' | 'pools')[] = [];
    for (const r of msg.relations) {
      const t = this.targets.get(r.oid);
      if (t?.kind === 'trades' || t?.kind === 'pools') tables.push(t.kind);
    }
    if (tables.length === 0) return;
    // The cache follows the source whatever the sink does: later trades of a
    // truncated pool are unknown_pool letters, not trades with a stale symbol.
    if (tables.includes('pools')) this.pools.clear();
    if (!this.opts.applyTruncate) {
      this.log.warn(
        { tables },
        'TRUNCATE at the source not applied (SLOTLINE_APPLY_TRUNCATE=false)',
      );
      return;
    }
    this.log.warn({ tables }, 'TRUNCATE at the source: clearing the sink tables');
    this.push({ kind: 'truncate', lsn, tables }, bytes);
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
    else if (target.kind === 'unmapped')
      this.deadLetter(target, 'snapshot', values, lsn, null, target.rejection, bytes);
  }

  private resolve(relation: Relation): Target {
    if (relation.schema !== this.schema) return { kind: 'other' };
    try {
      if (relation.name === TRADES_TABLE) {
        const cols = tradeColumns(relation);
        warnKeylessIdentity(relation, cols.id, this.log);
        return { kind: 'trades', cols, relation };
      }
      if (relation.name === POOLS_TABLE)
        return { kind: 'pools', cols: poolColumns(relation), relation };
    } catch (err) {
      // Not fatal: the WAL before a fix would replay into the same crash on every
      // restart, even after the column is back. Each Relation message resolves anew.
      if (!(err instanceof SourceSetupError)) throw err;
      return {
        kind: 'unmapped',
        table: relation.name === TRADES_TABLE ? 'trades' : 'pools',
        cols: { id: relation.columns.findIndex((c) => c.name === 'id') },
        relation,
        rejection: { code: 'missing_column', reason: err.message },
      };
    }
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
        if (tableOf(target) === 'trades') this.watcher.onTradeKey(id);
        else this.watcher.onPoolKey?.(id);
      }
    }
    if (msg.tag === 'delete') {
      this.onDelete(target, msg.key ?? msg.old, lsn, commitTime, bytes);
      return;
    }
    // The key changed (UPDATE … SET id = …): the old id is gone. The old id comes
    // as `key` with the default identity, as the whole `old` row with FULL.
    const before = msg.tag === 'update' ? (msg.key ?? msg.old) : null;
    const oldId = before ? before[target.cols.id] : null;
    if (typeof oldId === 'string' && oldId !== msg.new[target.cols.id])
      this.removeKey(tableOf(target), oldId, lsn, 0);
    const op = msg.tag;
    if (target.kind === 'trades') this.routeTrade(target, op, msg.new, lsn, commitTime, bytes);
    else if (target.kind === 'pools') this.routePool(target, op, msg.new, lsn, commitTime, bytes);
    else this.deadLetter(target, op, msg.new, lsn, commitTime, target.rejection, bytes);
  }

  /** A delete needs only the key, so it applies even while a mapped column is missing. */
  private onDelete(
    target: Exclude<Target, { kind: 'other' }>,
    old: TupleValues | null,
    lsn: Lsn,
    commitTime: bigint,
    bytes: number,
  ): void {
    const id = old ? old[target.cols.id] : null;
    if (typeof id === 'string') {
      this.removeKey(tableOf(target), id, lsn, bytes);
      return;
    }
    const rejection: Rejection = { code: 'missing_key', reason: 'delete without a key' };
    this.deadLetter(target, 'delete', old ?? [], lsn, commitTime, rejection, bytes);
  }

  private removeKey(table: 'trades' | 'pools', id: string, lsn: Lsn, bytes: number): void {
    if (table === 'trades') {
      this.push({ kind: 'trade_delete', lsn, tradeId: id }, bytes);
      return;
    }
    this.pools.delete(id);
    this.push({ kind: 'pool_delete', lsn, poolId: id }, bytes);
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
    if (!m.ok) {
      this.deadLetter(target, op, values, lsn, commitTime, m.rejection, bytes);
      return;
    }
    const trade = m.value;
    const size = this.tradeBytes(trade, bytes);
    if (typeof size !== 'number') {
      this.deadLetter(target, op, values, lsn, commitTime, size, bytes);
      return;
    }
    const tx = this.tx;
    if (tx === null || op === 'snapshot') {
      this.push({ kind: 'trade_upsert', lsn, op, trade }, size);
      return;
    }
    // The hot path: the change made whole at once (as push() would complete it).
    this.stats.changes += 1;
    this.queue.push({ kind: 'trade_upsert', lsn, op, trade, tx: tx.source, seq: tx.seq++ }, size);
  }

  /**
   * What a mapped trade becomes with its symbol, or the rejection when that
   * is over maxRowBytes. A number or a Rejection, so no wrapper per trade.
   */
  private tradeBytes(trade: Trade, messageBytes: number): number | Rejection {
    const symbolBytes = this.pools.symbolBytes(trade.poolId);
    const bytes = changeBytes(messageBytes, symbolBytes);
    if (bytes <= this.maxRowBytes) return bytes;
    return tooLarge(
      bytes,
      this.maxRowBytes,
      `its pool's symbol is ${symbolBytes} bytes, copied into every trade`,
    );
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
    const size = changeBytes(bytes);
    if (!m.ok || size > this.maxRowBytes) {
      const rejection = m.ok
        ? tooLarge(size, this.maxRowBytes, 'the pool row itself')
        : m.rejection;
      this.deadLetter(target, op, values, lsn, commitTime, rejection, bytes);
      return;
    }
    const ref = this.pools.joinColumn === 'id' ? m.value.id : m.value.orderBook;
    const appeared = ref !== null && !this.pools.has(ref);
    this.pools.set(m.value);
    this.push({ kind: 'pool_upsert', lsn, op, pool: m.value }, size);
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
    const rawBytes = valuesBytes(values);
    const rejected = (rejection: Rejection): Rejection => {
      if (opts.deadLetter)
        this.deadLetter(
          target,
          'snapshot',
          values,
          lsn,
          this.tx?.commitTime ?? null,
          rejection,
          rawBytes,
        );
      return rejection;
    };
    if (target.kind === 'unmapped') return rejected(target.rejection);
    if (target.kind === 'trades') {
      const m = mapTrade(values, target.cols, this.symbolOf);
      if (!m.ok) return rejected(m.rejection);
      const size = this.tradeBytes(m.value, rawBytes);
      if (typeof size !== 'number') return rejected(size);
      this.push({ kind: 'trade_upsert', lsn, op: 'update', trade: m.value }, size);
      return null;
    }
    const p = mapPool(values, target.cols);
    const size = changeBytes(rawBytes);
    if (!p.ok) return rejected(p.rejection);
    if (size > this.maxRowBytes)
      return rejected(tooLarge(size, this.maxRowBytes, 'the pool row itself'));
    const ref = this.pools.joinColumn === 'id' ? p.value.id : p.value.orderBook;
    const appeared = ref !== null && !this.pools.has(ref);
    this.pools.set(p.value);
    this.push({ kind: 'pool_upsert', lsn, op: 'update', pool: p.value }, size);
    if (appeared) this.deadLetters?.onPoolAppeared(ref);
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
      rowKey: typeof id === 'string' && id !== '' ? id : this.missingKey(operation),
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
    this.push({ kind: 'dead_letter', lsn, letter }, changeBytes(bytes));
  }

  /**
   * The key of a letter whose row has no id. Letters are unique by (table, key,
   * LSN), so several keyless deletes of one statement would collapse into one
   * letter: each gets its position in the transaction (the same on a replay).
   * A row whose id is empty keeps '(missing)': the primary key allows one.
   */
  private missingKey(operation: DeadLetter['operation']): string {
    if (operation !== 'delete') return '(missing)';
    return `(missing) change ${this.tx ? this.tx.seq : this.keylessSnapshotRows++}`;
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

/** Setup refuses this identity; changed afterwards, every delete becomes a missing_key letter. */
function warnKeylessIdentity(relation: Relation, idCol: number, log: Logger): void {
  // Snapshot relations (RelationLike) carry no identity: only streamed ones are checked.
  if (relation.replicaIdentity !== 'i' || relation.columns[idCol]?.isKey !== false) return;
  log.warn(
    { table: `${relation.schema}.${relation.name}` },
    `${relation.schema}.${relation.name} has REPLICA IDENTITY USING INDEX without the id column: its deletes cannot be applied and become missing_key dead letters. Fix: ALTER TABLE ${relation.schema}.${relation.name} REPLICA IDENTITY DEFAULT (or FULL)`,
  );
}

function valuesBytes(values: TupleValues): number {
  let n = 0;
  for (const v of values) if (typeof v === 'string') n += v.length;
  return n;
}

function tooLarge(bytes: number, max: number, why: string): Rejection {
  return {
    code: 'row_too_large',
    reason: `the change would carry about ${bytes} bytes once enriched and serialized (${why}); SLOTLINE_MAX_ROW_BYTES is ${max}`,
  };
}

function fromSnapshot(c: Change): boolean {
  if (c.kind === 'trade_upsert' || c.kind === 'pool_upsert') return c.op === 'snapshot';
  return c.kind === 'dead_letter' && c.letter.operation === 'snapshot';
}
