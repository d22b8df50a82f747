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

/*
 * The envelopes are written as JSON text directly, not built as objects and
 * then serialized: a catch-up makes one per change, and the objects were most
 * of the envelope's cost (and garbage). The output is byte for byte what
 * JSON.stringify gives for the same fields in the same order
 * (kafka-envelope.test.ts holds that reference and compares).
 */

/**
 * What JSON.stringify escapes in a string: quote, backslash, control
 * characters, and lone surrogates (any surrogate here: then it decides).
 */
// eslint-disable-next-line no-control-regex -- control characters are what is looked for
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;
/** A JSON string literal, as JSON.stringify writes it; most values need no escape. */
const str = (v: string): string => (NEEDS_ESCAPE.test(v) ? JSON.stringify(v) : '"' + v + '"');
const strOrNull = (v: string | null): string => (v === null ? 'null' : str(v));
/** A JSON number as JSON.stringify writes it (null when not finite). */
const num = (v: number): string => (Number.isFinite(v) ? String(v) : 'null');
const intOrNull = (v: string | null): string => (v === null ? 'null' : num(Number(v)));

function tradeRowJson(t: Trade): string {
  // Original column names; chain_id and timestamp are validated int32 / unix seconds, exact as numbers.
  return (
    '{"id":' +
    str(t.tradeId) +
    ',"chain_id":' +
    num(Number(t.chainId)) +
    ',"price":' +
    str(t.price) +
    ',"quantity":' +
    str(t.quantity) +
    ',"timestamp":' +
    num(Number(t.time)) +
    ',"transaction_id":' +
    strOrNull(t.transactionId) +
    ',"side":' +
    str(t.side) +
    ',"pool_id":' +
    str(t.poolId) +
    ',"symbol":' +
    strOrNull(t.symbol) +
    ',"volume":' +
    str(tradeVolume(t)) +
    '}'
  );
}

function poolRowJson(p: Pool): string {
  return (
    '{"id":' +
    str(p.id) +
    ',"chain_id":' +
    intOrNull(p.chainId) +
    ',"coin":' +
    strOrNull(p.coin) +
    ',"order_book":' +
    strOrNull(p.orderBook) +
    ',"base_currency":' +
    strOrNull(p.baseCurrency) +
    ',"quote_currency":' +
    strOrNull(p.quoteCurrency) +
    ',"base_decimals":' +
    intOrNull(p.baseDecimals) +
    ',"quote_decimals":' +
    intOrNull(p.quoteDecimals) +
    ',"volume":' +
    strOrNull(p.volume) +
    ',"volume_in_quote":' +
    strOrNull(p.volumeInQuote) +
    ',"price":' +
    strOrNull(p.price) +
    ',"timestamp":' +
    intOrNull(p.timestamp) +
    '}'
  );
}

const OPS = { insert: 'c', update: 'u', snapshot: 'r' } as const;

/**
 * What one change's records share, computed once per source transaction or
 * LSN rather than per change: consecutive changes mostly share both.
 */
class Shared {
  private lsn: bigint | null = null;
  private lsnText = '';
  private lsnJson = '';
  private txCommit: bigint | null = null;
  private txXid = 0;
  private txMs = '';
  private txId = '';
  private sourceFor: EnvelopeOptions | null = null;
  private sourceSchema = '';
  /** `"source":{…,"name":…,"ts_ms":` and `,"db":…,"schema":…,"table":` */
  private head = '';
  private tail = '';
  private readonly keys = { pool_id: new Map<string, string>(), id: new Map<string, string>() };

  lsnHeader(lsn: bigint): string {
    this.setLsn(lsn);
    return this.lsnText;
  }

  /** The envelope's JSON. */
  envelope(c: Change, o: EnvelopeOptions, nowMs: number, e: EnvelopeParts): string {
    this.setLsn(c.lsn);
    if (this.sourceFor !== o || this.sourceSchema !== o.schema) this.setSource(o);
    let tsMs: string;
    let txId: string;
    if (c.tx) {
      if (this.txCommit !== c.tx.commitTime || this.txXid !== c.tx.xid) {
        this.txCommit = c.tx.commitTime;
        this.txXid = c.tx.xid;
        this.txMs = num(commitTimeMs(c.tx.commitTime));
        this.txId = num(c.tx.xid);
      }
      tsMs = this.txMs;
      txId = this.txId;
    } else {
      // Snapshot rows have no commit: Debezium stamps them with the time they were read.
      tsMs = num(nowMs);
      txId = 'null';
    }
    return (
      '{"before":' +
      e.before +
      ',"after":' +
      e.after +
      this.head +
      tsMs +
      (e.op === 'r' ? ',"snapshot":"true"' : ',"snapshot":"false"') +
      this.tail +
      e.table +
      ',"txId":' +
      txId +
      // An LSN is 64 bits; a JSON number is exact up to 2^53 (8 PiB of WAL).
      ',"lsn":' +
      this.lsnJson +
      '},"op":"' +
      e.op +
      '","ts_ms":' +
      num(nowMs) +
      '}'
    );
  }

  /** `{"<field>":<id>}`, remembered: the keys of a batch are few (pools). */
  key(field: 'pool_id' | 'id', id: string): string {
    const keys = this.keys[field];
    let k = keys.get(id);
    if (k === undefined) {
      if (keys.size >= 10_000) keys.clear();
      k = '{"' + field + '":' + str(id) + '}';
      keys.set(id, k);
    }
    return k;
  }

  private setLsn(lsn: bigint): void {
    if (this.lsn === lsn) return;
    this.lsn = lsn;
    this.lsnText = formatLsn(lsn);
    this.lsnJson = num(Number(lsn));
  }

  private setSource(o: EnvelopeOptions): void {
    this.sourceFor = o;
    this.sourceSchema = o.schema;
    this.head =
      ',"source":{"version":' +
      str(o.version) +
      ',"connector":"slotline","name":' +
      str(o.name) +
      ',"ts_ms":';
    this.tail = ',"db":' + str(o.db) + ',"schema":' + str(o.schema) + ',"table":';
  }
}

interface EnvelopeParts {
  /** JSON of the table name */
  table: string;
  op: DebeziumOp;
  /** JSON of the row before / after */
  before: string;
  after: string;
}

const shared = new Shared();
const TRADES_TABLE_JSON = str(TRADES_TABLE_NAME);
const POOLS_TABLE_JSON = str(POOLS_TABLE_NAME);

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
  const lsn = shared.lsnHeader(c.lsn);
  const headers: Record<string, string> =
    c.seq !== undefined
      ? { [LSN_HEADER]: lsn, [SEQ_HEADER]: String(c.seq) }
      : { [LSN_HEADER]: lsn };
  const envelope = (table: string, op: DebeziumOp, before: string, after: string): string =>
    shared.envelope(c, o, nowMs, { table, op, before, after });

  switch (c.kind) {
    case 'trade_upsert': {
      recent.remember(c.trade.tradeId, c.trade.poolId);
      const value = envelope(TRADES_TABLE_JSON, OPS[c.op], 'null', tradeRowJson(c.trade));
      return [
        { topic: o.topics.trades, key: shared.key('pool_id', c.trade.poolId), value, headers },
      ];
    }
    case 'trade_delete': {
      const poolId = recent.poolOf(c.tradeId) ?? null;
      recent.forget(c.tradeId);
      const before = '{"id":' + str(c.tradeId) + ',"pool_id":' + strOrNull(poolId) + '}';
      const value = envelope(TRADES_TABLE_JSON, 'd', before, 'null');
      if (poolId !== null)
        return [{ topic: o.topics.trades, key: shared.key('pool_id', poolId), value, headers }];
      return [
        {
          topic: o.topics.trades,
          key: '{"id":' + str(c.tradeId) + '}',
          value,
          headers,
          everyPartition: true,
        },
      ];
    }
    case 'pool_upsert': {
      const value = envelope(POOLS_TABLE_JSON, OPS[c.op], 'null', poolRowJson(c.pool));
      return [{ topic: o.topics.pools, key: shared.key('id', c.pool.id), value, headers }];
    }
    case 'pool_delete': {
      const key = shared.key('id', c.poolId);
      const value = envelope(POOLS_TABLE_JSON, 'd', '{"id":' + str(c.poolId) + '}', 'null');
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
          value: envelope(str(table), 't', 'null', 'null'),
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
