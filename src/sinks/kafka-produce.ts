/**
 * Produce requests encoded in one pass, for kafkajs.
 *
 * kafkajs 2.2.4 builds each record in a zero-filled buffer of its own (512
 * bytes, grown by copying), each header in another, each varint in an array
 * turned into a Buffer and each 64-bit varint through BigInt-backed Longs;
 * then it copies a partition's batch four times on its way into the request,
 * and computes its CRC32C byte by byte. For records of the sink's shape that
 * is 17–24 µs of CPU per record, and most of the connector's garbage with
 * Kafka enabled (docs/performance.md).
 *
 * encodeProduceRequest writes the same bytes (kafka-produce.test.ts compares
 * them with kafkajs' own encoder) into one buffer of the exact size, sizes
 * first, then bytes, the CRC32C eight bytes at a time: 1.7–2.8 µs per record
 * (bench/micro-kafka-encode.ts measures both).
 * It covers what the sink sends: no compression, no per-message timestamps,
 * keys, values and header values that are strings, Buffers or null. For
 * anything else it returns null and kafkajs encodes the request itself.
 *
 * The layout (https://kafka.apache.org/protocol#The_Messages_Produce and
 * https://kafka.apache.org/documentation/#recordbatch) is the one kafkajs
 * sends for produce versions 3 to 7:
 *
 *   transactional_id: nullable string (int16 length), acks: int16, timeout: int32,
 *   [topic: string, [partition: int32, record_set: int32 length + one RecordBatch]]
 *   RecordBatch: baseOffset int64 (0), batchLength int32, partitionLeaderEpoch int32 (0),
 *     magic int8 (2), crc uint32 (CRC32C of what follows), attributes int16
 *     (0x10 when transactional), lastOffsetDelta int32, firstTimestamp int64,
 *     maxTimestamp int64, producerId int64, producerEpoch int16, baseSequence int32,
 *     records: int32 count, then each record
 *   Record: length varint, attributes int8 (0), timestampDelta varlong (0),
 *     offsetDelta varint, key (varint length, -1 = null), value (the same),
 *     headers: varint count, each key (varint length + UTF-8) and value (as a value)
 */

export interface ProduceMessage {
  key?: unknown;
  value?: unknown;
  headers?: unknown;
  timestamp?: unknown;
  partition?: unknown;
}

export interface ProducePartition {
  partition: number;
  firstSequence?: number | null;
  messages: readonly ProduceMessage[];
}

/** What kafkajs passes to its produce request (requests/produce/v3/request.js). */
export interface ProduceArgs {
  acks: number;
  timeout: number;
  transactionalId?: string | null;
  /** kafkajs' Long, a number or a bigint; -1 when absent. */
  producerId?: unknown;
  producerEpoch?: number;
  compression?: number;
  topicData: readonly { topic: string; partitions: readonly ProducePartition[] }[];
}

/** 8 × 256 tables of the Castagnoli polynomial (reflected 0x82f63b78), for slicing by 8. */
const CRC_TABLES = (() => {
  const t = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n]!;
    for (let k = 1; k < 8; k++) {
      c = t[c & 0xff]! ^ (c >>> 8);
      t[k * 256 + n] = c;
    }
  }
  return t;
})();

/** CRC32C (Castagnoli, as Kafka's record batches use) of `buf[start, end)`. */
export function crc32c(buf: Uint8Array, start = 0, end = buf.length): number {
  const t = CRC_TABLES;
  let crc = -1;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const a = crc ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    crc =
      t[1792 + (a & 0xff)]! ^
      t[1536 + ((a >>> 8) & 0xff)]! ^
      t[1280 + ((a >>> 16) & 0xff)]! ^
      t[1024 + (a >>> 24)]! ^
      t[768 + buf[i + 4]!]! ^
      t[512 + buf[i + 5]!]! ^
      t[256 + buf[i + 6]!]! ^
      t[buf[i + 7]!]!;
  }
  for (; i < end; i++) crc = t[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

/** Bytes of a zigzag varint (Kafka's signed varint) of a 32-bit value. */
function varintSize(v: number): number {
  const u = ((v << 1) ^ (v >> 31)) >>> 0;
  return u < 0x80 ? 1 : u < 0x4000 ? 2 : u < 0x200000 ? 3 : u < 0x10000000 ? 4 : 5;
}

function putVarint(b: Buffer, o: number, v: number): number {
  let u = ((v << 1) ^ (v >> 31)) >>> 0;
  while (u >= 0x80) {
    b[o++] = (u & 0x7f) | 0x80;
    u >>>= 7;
  }
  b[o++] = u;
  return o;
}

/** A key, value or header value the fast path writes: its byte length, -1 for null; else undefined. */
function bytesOf(v: unknown): number | undefined {
  if (v === null || v === undefined) return -1;
  if (typeof v === 'string') return Buffer.byteLength(v, 'utf8');
  if (Buffer.isBuffer(v)) return v.length;
  return undefined;
}

function putBytes(b: Buffer, o: number, v: unknown, n: number): number {
  if (n <= 0) return o;
  if (typeof v === 'string') b.write(v, o, n, 'utf8');
  else (v as Buffer).copy(b, o);
  return o + n;
}

function putInt64(b: Buffer, o: number, v: unknown): number {
  const n =
    v === null || v === undefined
      ? -1n
      : typeof v === 'bigint'
        ? v
        : BigInt(typeof v === 'number' ? v : String(v));
  b.writeBigInt64BE(BigInt.asIntN(64, n), o);
  return o + 8;
}

function putString(b: Buffer, o: number, s: string | null | undefined): number {
  if (s === null || s === undefined) {
    b.writeInt16BE(-1, o);
    return o + 2;
  }
  const n = Buffer.byteLength(s, 'utf8');
  b.writeInt16BE(n, o);
  b.write(s, o + 2, n, 'utf8');
  return o + 2 + n;
}

/** Record batch header bytes, baseOffset and batchLength included (records count too). */
const BATCH_HEADER = 61;

/**
 * The byte lengths measure() finds, in the order writeBatch() writes them: per
 * record its key, value and body (after the length varint), its headers'
 * count, then each header's name and value. Reused between requests (grown, never shrunk past a
 * request's need).
 */
let sizes = new Int32Array(3 * 1024);
let noted = 0;
let taken = 0;

function note(n: number): void {
  if (noted === sizes.length) {
    const grown = new Int32Array(2 * sizes.length);
    grown.set(sizes);
    sizes = grown;
  }
  sizes[noted++] = n;
}

const take = (): number => sizes[taken++]!;

/**
 * The produce request body kafkajs would send for `args` (`now`: the batches'
 * timestamp, kafkajs' Date.now()), or null when it is not one this encoder covers.
 */
export function encodeProduceRequest(args: ProduceArgs, now = Date.now): Buffer | null {
  const size = measure(args);
  if (size === null) return null;
  const b = Buffer.allocUnsafe(size);
  const tx = args.transactionalId ?? null;
  let o = putString(b, 0, tx);
  b.writeInt16BE(args.acks, o);
  b.writeInt32BE(args.timeout, o + 2);
  b.writeInt32BE(args.topicData.length, o + 6);
  o += 10;
  taken = 0;
  for (const t of args.topicData) {
    o = putString(b, o, t.topic);
    b.writeInt32BE(t.partitions.length, o);
    o += 4;
    for (const p of t.partitions) o = writeBatch(b, o, p, args, now());
  }
  if (o !== size) throw new Error(`produce request encoded in ${o} bytes, sized ${size}`);
  return b;
}

/** The request's size, its byte lengths noted in `sizes`; null when not covered. */
function measure(args: ProduceArgs): number | null {
  if ((args.compression ?? 0) !== 0) return null;
  const tx = args.transactionalId ?? null;
  let size = 2 + (tx === null ? 0 : Buffer.byteLength(tx, 'utf8')) + 2 + 4 + 4;
  noted = 0;
  for (const t of args.topicData) {
    size += 2 + Buffer.byteLength(t.topic, 'utf8') + 4;
    for (const p of t.partitions) {
      let records = 0;
      const ms = p.messages;
      for (let i = 0; i < ms.length; i++) {
        const m = ms[i]!;
        if (m.timestamp !== null && m.timestamp !== undefined) return null;
        const k = bytesOf(m.key);
        const v = bytesOf(m.value);
        if (k === undefined || v === undefined) return null;
        const bodyAt = noted + 2;
        note(k);
        note(v);
        note(0);
        const h = headersSize(m.headers);
        if (h === undefined) return null;
        // attributes and timestampDelta (0) take a byte each.
        const body =
          2 + varintSize(i) + varintSize(k) + Math.max(k, 0) + varintSize(v) + Math.max(v, 0) + h;
        sizes[bodyAt] = body;
        records += varintSize(body) + body;
      }
      size += 4 + 4 + BATCH_HEADER + records;
    }
  }
  return size;
}

/** Bytes of a record's headers (count included), their lengths noted; undefined when not covered. */
function headersSize(h: unknown): number | undefined {
  if (h === null || h === undefined) return varintSize(0);
  if (typeof h !== 'object') return undefined;
  let size = 0;
  let count = 0;
  const countAt = noted;
  note(0);
  // for…in, not Object.keys: no array per record. kafkajs reads own keys only: an
  // inherited one (never the sink's) leaves the request to kafkajs.
  for (const name in h) {
    if (!Object.hasOwn(h, name)) return undefined;
    const hv = bytesOf((h as Record<string, unknown>)[name]);
    // kafkajs spreads an array into several headers and fails on a missing value.
    if (hv === undefined || hv < 0) return undefined;
    const kl = Buffer.byteLength(name, 'utf8');
    note(kl);
    note(hv);
    size += varintSize(kl) + kl + varintSize(hv) + hv;
    count++;
  }
  sizes[countAt] = count;
  return size + varintSize(count);
}

/** One partition's record_set (its length, then the batch) at `o`; its byte lengths taken from `sizes`. */
function writeBatch(
  b: Buffer,
  o: number,
  p: ProducePartition,
  args: ProduceArgs,
  ts: number,
): number {
  const ms = p.messages;
  b.writeInt32BE(p.partition, o);
  const recordSetAt = o + 4;
  const batchAt = o + 8;
  const lengthAt = putInt64(b, batchAt, 0); // baseOffset
  b.writeInt32BE(0, lengthAt + 4); // partitionLeaderEpoch
  b[lengthAt + 8] = 2; // magic
  const crcAt = lengthAt + 9;
  const crcFrom = lengthAt + 13;
  b.writeInt16BE(args.transactionalId ? 0x10 : 0, crcFrom); // attributes
  b.writeInt32BE(ms.length - 1, crcFrom + 2); // lastOffsetDelta
  o = putInt64(b, crcFrom + 6, ts);
  o = putInt64(b, o, ts);
  o = putInt64(b, o, args.producerId);
  b.writeInt16BE(args.producerEpoch ?? 0, o);
  b.writeInt32BE(p.firstSequence ?? 0, o + 2);
  b.writeInt32BE(ms.length, o + 6);
  o += 10;
  for (let i = 0; i < ms.length; i++) {
    const m = ms[i]!;
    const k = take();
    const v = take();
    o = putVarint(b, o, take());
    b[o++] = 0; // attributes
    b[o++] = 0; // timestampDelta
    o = putVarint(b, o, i);
    o = putBytes(b, putVarint(b, o, k), m.key, k);
    o = putBytes(b, putVarint(b, o, v), m.value, v);
    o = writeHeaders(b, o, m.headers as Record<string, unknown> | null | undefined);
  }
  b.writeInt32BE(o - batchAt, recordSetAt);
  b.writeInt32BE(o - lengthAt - 4, lengthAt);
  b.writeUInt32BE(crc32c(b, crcFrom, o), crcAt);
  return o;
}

function writeHeaders(b: Buffer, o: number, h: Record<string, unknown> | null | undefined): number {
  if (h === null || h === undefined) return putVarint(b, o, 0);
  o = putVarint(b, o, take());
  for (const name in h) {
    const kl = take();
    o = putBytes(b, putVarint(b, o, kl), name, kl);
    const vl = take();
    o = putBytes(b, putVarint(b, o, vl), h[name], vl);
  }
  return o;
}

/**
 * Messages grouped by the partition the partitioner picks, each group in the
 * messages' order: kafkajs' groupMessagesPerPartition gives the same, but
 * copies a partition's whole group for every message added to it (quadratic
 * in a batch's records per partition).
 */
export function groupMessagesPerPartition<M>(args: {
  topic: string;
  partitionMetadata: readonly unknown[];
  messages: readonly M[];
  partitioner: (a: { topic: string; partitionMetadata: readonly unknown[]; message: M }) => number;
}): Record<number, M[]> {
  const { topic, partitionMetadata, messages, partitioner } = args;
  const groups: Record<number, M[]> = {};
  if (partitionMetadata.length === 0) return groups;
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message });
    (groups[partition] ??= []).push(message);
  }
  return groups;
}
