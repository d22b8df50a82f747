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
  /** The envelope's JSON as UTF-8 (a view of a shared chunk: never written to); null: a tombstone */
  value: Buffer | null;
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
 * The envelopes are written as JSON bytes directly, not built as objects and
 * serialized, nor as strings: a catch-up makes one per change, and the
 * objects, then the strings (a concatenation's parts, then its flattened
 * copy, then its UTF-8 encoding in the produce request) were most of the
 * envelope's cost and most of the connector's garbage with Kafka enabled.
 * The output is byte for byte what JSON.stringify gives for the same fields
 * in the same order (kafka-envelope-identity.test.ts holds that reference and
 * compares).
 */

/** Text of a JSON number as JSON.stringify writes it (null when not finite). */
const numText = (v: number): string => (Number.isFinite(v) ? String(v) : 'null');

/** Bytes of the chunks records are written into; a larger record gets a chunk of its own size. */
const CHUNK_BYTES = 64 * 1024;

/**
 * Writes records' JSON into shared chunks and hands each record out as a view
 * of its bytes. A chunk is never written twice: once full, the next record
 * starts a new one, and the old one lives as long as the records viewing it
 * (a batch's). Not reentrant: one record at a time.
 */
class JsonBytes {
  private buf = Buffer.allocUnsafe(CHUNK_BYTES);
  private pos = 0;
  private start = 0;

  /** Starts a record. */
  begin(): void {
    this.start = this.pos;
  }

  /** The record begun last, as a view of its bytes. */
  end(): Buffer {
    return this.buf.subarray(this.start, this.pos);
  }

  /** Bytes as they are (fragments spelled once). */
  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** Text that is ASCII and needs no escape (the fragments, numbers, LSNs). */
  ascii(s: string): void {
    const n = s.length;
    this.reserve(n);
    const buf = this.buf;
    let pos = this.pos;
    for (let i = 0; i < n; i++) buf[pos++] = s.charCodeAt(i);
    this.pos = pos;
  }

  /**
   * A JSON string literal, as JSON.stringify writes it: printable ASCII
   * without a quote or backslash (most values) byte by byte, anything else
   * through JSON.stringify (its escapes, lone surrogates) and UTF-8.
   */
  str(v: string): void {
    const n = v.length;
    this.reserve(n + 2);
    const buf = this.buf;
    let pos = this.pos;
    buf[pos++] = 0x22;
    for (let i = 0; i < n; i++) {
      const c = v.charCodeAt(i);
      if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return this.escaped(v);
      buf[pos++] = c;
    }
    buf[pos++] = 0x22;
    this.pos = pos;
  }

  strOrNull(v: string | null): void {
    if (v === null) this.ascii('null');
    else this.str(v);
  }

  num(v: number): void {
    this.ascii(numText(v));
  }

  intOrNull(v: string | null): void {
    if (v === null) this.ascii('null');
    else this.num(Number(v));
  }

  private escaped(v: string): void {
    const json = JSON.stringify(v);
    const n = Buffer.byteLength(json, 'utf8');
    this.reserve(n);
    this.pos += this.buf.write(json, this.pos, n, 'utf8');
  }

  /** Room for `n` more bytes, the record begun so far moved to a new chunk when this one is full. */
  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const sofar = this.pos - this.start;
    const next = Buffer.allocUnsafe(Math.max(CHUNK_BYTES, 2 * (sofar + n)));
    this.buf.copy(next, 0, this.start, this.pos);
    this.buf = next;
    this.start = 0;
    this.pos = sofar;
  }
}

const out = new JsonBytes();

function writeTradeRow(w: JsonBytes, t: Trade): void {
  // Original column names; chain_id and timestamp are validated int32 / unix seconds, exact as numbers.
  w.ascii('{"id":');
  w.str(t.tradeId);
  w.ascii(',"chain_id":');
  w.num(Number(t.chainId));
  w.ascii(',"price":');
  w.str(t.price);
  w.ascii(',"quantity":');
  w.str(t.quantity);
  w.ascii(',"timestamp":');
  w.num(Number(t.time));
  w.ascii(',"transaction_id":');
  w.strOrNull(t.transactionId);
  w.ascii(',"side":');
  w.str(t.side);
  w.ascii(',"pool_id":');
  w.str(t.poolId);
  w.ascii(',"symbol":');
  w.strOrNull(t.symbol);
  w.ascii(',"volume":');
  w.str(tradeVolume(t));
  w.ascii('}');
}

function writePoolRow(w: JsonBytes, p: Pool): void {
  w.ascii('{"id":');
  w.str(p.id);
  w.ascii(',"chain_id":');
  w.intOrNull(p.chainId);
  w.ascii(',"coin":');
  w.strOrNull(p.coin);
  w.ascii(',"order_book":');
  w.strOrNull(p.orderBook);
  w.ascii(',"base_currency":');
  w.strOrNull(p.baseCurrency);
  w.ascii(',"quote_currency":');
  w.strOrNull(p.quoteCurrency);
  w.ascii(',"base_decimals":');
  w.intOrNull(p.baseDecimals);
  w.ascii(',"quote_decimals":');
  w.intOrNull(p.quoteDecimals);
  w.ascii(',"volume":');
  w.strOrNull(p.volume);
  w.ascii(',"volume_in_quote":');
  w.strOrNull(p.volumeInQuote);
  w.ascii(',"price":');
  w.strOrNull(p.price);
  w.ascii(',"timestamp":');
  w.intOrNull(p.timestamp);
  w.ascii('}');
}

/** A deleted row's key: `{"id":…}`, with the trade's pool when known. */
function writeKeyRow(w: JsonBytes, id: string, poolId?: string | null): void {
  w.ascii('{"id":');
  w.str(id);
  if (poolId !== undefined) {
    w.ascii(',"pool_id":');
    w.strOrNull(poolId);
  }
  w.ascii('}');
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
  /** `,"source":{…,"name":…,"ts_ms":` and `,"db":…,"schema":…,"table":`, as UTF-8 */
  private head = Buffer.alloc(0);
  private tail = Buffer.alloc(0);
  private readonly keys = { pool_id: new Map<string, string>(), id: new Map<string, string>() };

  lsnHeader(lsn: bigint): string {
    this.setLsn(lsn);
    return this.lsnText;
  }

  /** Writes what comes after the row before and after: the source, the op, the time. */
  close(
    w: JsonBytes,
    c: Change,
    o: EnvelopeOptions,
    nowMs: number,
    table: string,
    op: DebeziumOp,
  ): void {
    this.setLsn(c.lsn);
    if (this.sourceFor !== o || this.sourceSchema !== o.schema) this.setSource(o);
    w.bytes(this.head);
    if (c.tx) {
      if (this.txCommit !== c.tx.commitTime || this.txXid !== c.tx.xid) {
        this.txCommit = c.tx.commitTime;
        this.txXid = c.tx.xid;
        this.txMs = numText(commitTimeMs(c.tx.commitTime));
        this.txId = numText(c.tx.xid);
      }
      w.ascii(this.txMs);
    } else {
      // Snapshot rows have no commit: Debezium stamps them with the time they were read.
      w.num(nowMs);
    }
    w.ascii(op === 'r' ? ',"snapshot":"true"' : ',"snapshot":"false"');
    w.bytes(this.tail);
    w.ascii(table);
    w.ascii(',"txId":');
    w.ascii(c.tx ? this.txId : 'null');
    // An LSN is 64 bits; a JSON number is exact up to 2^53 (8 PiB of WAL).
    w.ascii(',"lsn":');
    w.ascii(this.lsnJson);
    w.ascii('},"op":"');
    w.ascii(op);
    w.ascii('","ts_ms":');
    w.num(nowMs);
    w.ascii('}');
  }

  /** `{"<field>":<id>}`, remembered: the keys of a batch are few (pools). */
  key(field: 'pool_id' | 'id', id: string): string {
    const keys = this.keys[field];
    let k = keys.get(id);
    if (k === undefined) {
      if (keys.size >= 10_000) keys.clear();
      k = '{"' + field + '":' + JSON.stringify(id) + '}';
      keys.set(id, k);
    }
    return k;
  }

  private setLsn(lsn: bigint): void {
    if (this.lsn === lsn) return;
    this.lsn = lsn;
    this.lsnText = formatLsn(lsn);
    this.lsnJson = numText(Number(lsn));
  }

  private setSource(o: EnvelopeOptions): void {
    this.sourceFor = o;
    this.sourceSchema = o.schema;
    const head =
      ',"source":{"version":' +
      JSON.stringify(o.version) +
      ',"connector":"slotline","name":' +
      JSON.stringify(o.name) +
      ',"ts_ms":';
    this.head = Buffer.from(head, 'utf8');
    const tail =
      ',"db":' + JSON.stringify(o.db) + ',"schema":' + JSON.stringify(o.schema) + ',"table":';
    this.tail = Buffer.from(tail, 'utf8');
  }
}

const shared = new Shared();

/** The table's name as the `table` field's JSON. */
const TRADES_TABLE_JSON = JSON.stringify(TRADES_TABLE_NAME);
const POOLS_TABLE_JSON = JSON.stringify(POOLS_TABLE_NAME);

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
  const w = out;
  w.begin();
  switch (c.kind) {
    case 'trade_upsert': {
      recent.remember(c.trade.tradeId, c.trade.poolId);
      w.ascii('{"before":null,"after":');
      writeTradeRow(w, c.trade);
      shared.close(w, c, o, nowMs, TRADES_TABLE_JSON, OPS[c.op]);
      const key = shared.key('pool_id', c.trade.poolId);
      return [{ topic: o.topics.trades, key, value: w.end(), headers }];
    }
    case 'trade_delete': {
      const poolId = recent.poolOf(c.tradeId) ?? null;
      recent.forget(c.tradeId);
      w.ascii('{"before":');
      writeKeyRow(w, c.tradeId, poolId);
      w.ascii(',"after":null');
      shared.close(w, c, o, nowMs, TRADES_TABLE_JSON, 'd');
      const value = w.end();
      if (poolId !== null)
        return [{ topic: o.topics.trades, key: shared.key('pool_id', poolId), value, headers }];
      const key = '{"id":' + JSON.stringify(c.tradeId) + '}';
      return [{ topic: o.topics.trades, key, value, headers, everyPartition: true }];
    }
    case 'pool_upsert': {
      w.ascii('{"before":null,"after":');
      writePoolRow(w, c.pool);
      shared.close(w, c, o, nowMs, POOLS_TABLE_JSON, OPS[c.op]);
      return [{ topic: o.topics.pools, key: shared.key('id', c.pool.id), value: w.end(), headers }];
    }
    case 'pool_delete': {
      w.ascii('{"before":');
      writeKeyRow(w, c.poolId);
      w.ascii(',"after":null');
      shared.close(w, c, o, nowMs, POOLS_TABLE_JSON, 'd');
      const key = shared.key('id', c.poolId);
      const records: KafkaRecord[] = [{ topic: o.topics.pools, key, value: w.end(), headers }];
      if (o.tombstones) records.push({ topic: o.topics.pools, key, value: null, headers });
      return records;
    }
    case 'truncate':
      return c.tables.map((t) => {
        const table = t === 'trades' ? TRADES_TABLE_NAME : POOLS_TABLE_NAME;
        w.begin();
        w.ascii('{"before":null,"after":null');
        shared.close(w, c, o, nowMs, JSON.stringify(table), 't');
        return {
          topic: t === 'trades' ? o.topics.trades : o.topics.pools,
          key: JSON.stringify({ table: `${o.schema}.${table}` }),
          value: w.end(),
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
  let n = 32 + Buffer.byteLength(r.key) + (r.value === null ? 0 : r.value.length);
  for (const k in r.headers) n += 8 + k.length + r.headers[k]!.length;
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
