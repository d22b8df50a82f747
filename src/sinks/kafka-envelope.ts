import { formatLsn } from '../checkpoint/lsn.js';
import { tradeVolume, type Pool, type Trade } from '../trades/map.js';
import type { Change } from './batch.js';

/**
 * Pure mapping from sink changes to Kafka records: values in the JSON envelope
 * of Debezium's PostgreSQL connector (schemas disabled), so existing Debezium
 * consumers read them unchanged
 * (https://debezium.io/documentation/reference/stable/connectors/postgresql.html#postgresql-events).
 *
 * Differences a consumer may notice:
 * - `source.connector` is `slotline`; `source.lsn` is the commit LSN of the
 *   source transaction (Debezium: the LSN of the row's own WAL record), and
 *   `source.ts_ms` its commit time. Together with the header `slotline.seq`
 *   (the change's position in its transaction) it identifies an event, so the
 *   duplicates a crash may cause can be dropped by (`slotline.lsn`, `slotline.seq`).
 * - numeric(78,0) columns (price, quantity, volume, …) are exact decimal
 *   strings, as Debezium's `decimal.handling.mode=string`; trades carry the
 *   enriched `symbol` and the exact `volume` (price × quantity) besides their columns.
 * - keys are JSON objects: trades `{"pool_id": …}` (so each pool keeps its
 *   order), pools `{"id": …}`. A trade delete carries only the trade id (the
 *   source table has the default replica identity), so its pool comes from the
 *   trades recently sent ({@link RecentTradePools}); when unknown, the delete is
 *   keyed `{"id": <trade id>}` and sent to every partition, so that it still
 *   follows the trade's insert in whichever partition that went to.
 * - a truncate (op `t`) is sent to every partition of its topic, keyed
 *   `{"table": "<schema>.<table>"}` (not null: compacted topics reject null keys).
 * - a tombstone (null value) follows a pool delete only when enabled; never a
 *   trade delete, whose key is its pool: compaction would erase the whole pool.
 */

export interface EnvelopeOptions {
  topics: { trades: string; pools: string };
  /** `source.version`: the connector's version. */
  version: string;
  /** `source.name`: the logical name of this source (the slot). */
  name: string;
  /** `source.db`: the source database. */
  db: string;
  /** `source.schema`: the schema of the Ponder tables. */
  schema: string;
  /** Follow pool deletes with a tombstone (SLOTLINE_KAFKA_TOMBSTONES, default false). */
  tombstones: boolean;
}

export const TRADES_TABLE_NAME = 'order_book_trades';
export const POOLS_TABLE_NAME = 'pools';

/** Header names: the commit LSN (X/Y) of the source transaction, and the change's position in it. */
export const LSN_HEADER = 'slotline.lsn';
export const SEQ_HEADER = 'slotline.seq';

export interface KafkaRecord {
  topic: string;
  key: string;
  /** null: a tombstone */
  value: string | null;
  headers: Record<string, string>;
  /** One copy goes to every partition of the topic (truncates, deletes of a trade whose pool is unknown). */
  everyPartition?: true;
}

export type DebeziumOp = 'c' | 'u' | 'd' | 'r' | 't';

/** Unix ms of 2000-01-01T00:00:00Z, the epoch of PostgreSQL's commit timestamps. */
const PG_EPOCH_UNIX_MS = 946_684_800_000;

/** PostgreSQL commit time (µs since 2000-01-01) as unix milliseconds. */
export function commitTimeMs(micros: bigint): number {
  return Number(micros / 1000n) + PG_EPOCH_UNIX_MS;
}

/**
 * The pools of the trades sent most recently, to key their deletes: a Ponder
 * reorg deletes trades of the last few blocks, which are still here. Bounded:
 * the oldest entry goes first.
 */
export class RecentTradePools {
  // Two generations instead of one LRU Map: evicting a Map's oldest key gets
  // slower as deleted entries pile up at its front (measured: 50 µs a call once
  // full), while swapping generations is O(1). A trade is remembered for at
  // least capacity/2 and at most `capacity` later trades.
  private young = new Map<string, string>();
  private old = new Map<string, string>();

  /** `capacity`: trades remembered (default 100,000: a few MiB). */
  constructor(private readonly capacity = 100_000) {}

  get size(): number {
    return this.young.size + this.old.size;
  }

  remember(tradeId: string, poolId: string): void {
    this.young.set(tradeId, poolId);
    if (this.young.size >= Math.max(1, Math.floor(this.capacity / 2))) {
      this.old = this.young;
      this.young = new Map();
    }
  }

  poolOf(tradeId: string): string | undefined {
    return this.young.get(tradeId) ?? this.old.get(tradeId);
  }

  forget(tradeId: string): void {
    this.young.delete(tradeId);
    this.old.delete(tradeId);
  }
}

function tradeRow(t: Trade) {
  // Original column names; chain_id and timestamp are validated int32 / unix seconds, exact as numbers.
  return {
    id: t.tradeId,
    chain_id: Number(t.chainId),
    price: t.price,
    quantity: t.quantity,
    timestamp: Number(t.time),
    transaction_id: t.transactionId,
    side: t.side,
    pool_id: t.poolId,
    symbol: t.symbol,
    volume: tradeVolume(t),
  };
}

const int = (v: string | null): number | null => (v === null ? null : Number(v));

function poolRow(p: Pool) {
  return {
    id: p.id,
    chain_id: int(p.chainId),
    coin: p.coin,
    order_book: p.orderBook,
    base_currency: p.baseCurrency,
    quote_currency: p.quoteCurrency,
    base_decimals: int(p.baseDecimals),
    quote_decimals: int(p.quoteDecimals),
    volume: p.volume,
    volume_in_quote: p.volumeInQuote,
    price: p.price,
    timestamp: int(p.timestamp),
  };
}

const OPS = { insert: 'c', update: 'u', snapshot: 'r' } as const;

/**
 * The records of one change, in the order they must be written. Updates
 * `recent` as trades pass (remember on upsert, forget on delete). Dead letters
 * give none: they are in slotline.dead_letters.
 */
export function changeRecords(
  c: Change,
  o: EnvelopeOptions,
  recent: RecentTradePools,
  nowMs: number,
): KafkaRecord[] {
  const headers: Record<string, string> = { [LSN_HEADER]: formatLsn(c.lsn) };
  if (c.seq !== undefined) headers[SEQ_HEADER] = String(c.seq);
  const envelope = (
    table: string,
    op: DebeziumOp,
    before: object | null,
    after: object | null,
  ): string => envelopeJson(c, o, nowMs, { table, op, before, after });

  switch (c.kind) {
    case 'trade_upsert': {
      recent.remember(c.trade.tradeId, c.trade.poolId);
      const value = envelope(TRADES_TABLE_NAME, OPS[c.op], null, tradeRow(c.trade));
      return [{ topic: o.topics.trades, key: poolKey(c.trade.poolId), value, headers }];
    }
    case 'trade_delete': {
      const poolId = recent.poolOf(c.tradeId) ?? null;
      recent.forget(c.tradeId);
      const value = envelope(TRADES_TABLE_NAME, 'd', { id: c.tradeId, pool_id: poolId }, null);
      if (poolId !== null)
        return [{ topic: o.topics.trades, key: poolKey(poolId), value, headers }];
      return [
        {
          topic: o.topics.trades,
          key: JSON.stringify({ id: c.tradeId }),
          value,
          headers,
          everyPartition: true,
        },
      ];
    }
    case 'pool_upsert': {
      const value = envelope(POOLS_TABLE_NAME, OPS[c.op], null, poolRow(c.pool));
      return [{ topic: o.topics.pools, key: idKey(c.pool.id), value, headers }];
    }
    case 'pool_delete': {
      const key = idKey(c.poolId);
      const value = envelope(POOLS_TABLE_NAME, 'd', { id: c.poolId }, null);
      const out: KafkaRecord[] = [{ topic: o.topics.pools, key, value, headers }];
      if (o.tombstones) out.push({ topic: o.topics.pools, key, value: null, headers });
      return out;
    }
    case 'truncate':
      return c.tables.map((t) => {
        const table = t === 'trades' ? TRADES_TABLE_NAME : POOLS_TABLE_NAME;
        return {
          topic: t === 'trades' ? o.topics.trades : o.topics.pools,
          key: JSON.stringify({ table: `${o.schema}.${table}` }),
          value: envelope(table, 't', null, null),
          headers,
          everyPartition: true,
        };
      });
    case 'dead_letter':
      return [];
    default: {
      const never: never = c;
      throw new Error(`unhandled change ${JSON.stringify(never)}`);
    }
  }
}

/** A Debezium-shaped change event of one row, as JSON. */
function envelopeJson(
  c: Change,
  o: EnvelopeOptions,
  nowMs: number,
  e: { table: string; op: DebeziumOp; before: object | null; after: object | null },
): string {
  return JSON.stringify({
    before: e.before,
    after: e.after,
    source: {
      version: o.version,
      connector: 'slotline',
      name: o.name,
      // Snapshot rows have no commit: Debezium stamps them with the time they were read.
      ts_ms: c.tx ? commitTimeMs(c.tx.commitTime) : nowMs,
      snapshot: e.op === 'r' ? 'true' : 'false',
      db: o.db,
      schema: o.schema,
      table: e.table,
      txId: c.tx ? c.tx.xid : null,
      // An LSN is 64 bits; a JSON number is exact up to 2^53 (8 PiB of WAL).
      lsn: Number(c.lsn),
    },
    op: e.op,
    ts_ms: nowMs,
  });
}

function poolKey(poolId: string): string {
  return JSON.stringify({ pool_id: poolId });
}

function idKey(id: string): string {
  return JSON.stringify({ id });
}

/** What a record costs in a produce request, roughly: key, value, headers and per-record framing. */
export function recordBytes(r: KafkaRecord): number {
  let n = 32 + Buffer.byteLength(r.key) + (r.value === null ? 0 : Buffer.byteLength(r.value));
  for (const [k, v] of Object.entries(r.headers)) n += 8 + k.length + v.length;
  return n;
}

/**
 * Splits records, in order, into runs of at most `maxBytes` (a record larger
 * than that goes alone), so that no produce request exceeds what the brokers
 * accept. Sent one after another, the runs keep every partition's order.
 */
export function chunkRecords<R extends KafkaRecord>(
  records: readonly R[],
  maxBytes: number,
): R[][] {
  const chunks: R[][] = [];
  let current: R[] = [];
  let bytes = 0;
  for (const r of records) {
    const size = recordBytes(r);
    if (current.length > 0 && bytes + size > maxBytes) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(r);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}
