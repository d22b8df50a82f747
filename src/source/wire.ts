/**
 * Framing of the CopyData sub-messages exchanged after START_REPLICATION
 * (PostgreSQL docs, "Streaming Replication Protocol":
 * https://www.postgresql.org/docs/current/protocol-replication.html).
 * Pure functions: the stream owns the socket.
 */
import type { Lsn } from '../checkpoint/lsn.js';
import { ProtocolError } from '../errors.js';

export type ReplicationFrame =
  /** XLogData: the payload (one pgoutput message) is chunk[payloadOffset..]. */
  | { tag: 'xlog'; dataStart: Lsn; walEnd: Lsn; sendTime: bigint; payloadOffset: number }
  /** Primary keepalive; `replyRequested` means reply now or be disconnected (wal_sender_timeout). */
  | { tag: 'keepalive'; walEnd: Lsn; sendTime: bigint; replyRequested: boolean };

// Byte1('w') Int64 dataStart, Int64 walEnd, Int64 sendTime, then the payload.
export const XLOG_HEADER = 25;
// Byte1('k') Int64 walEnd, Int64 sendTime, Byte1 replyRequested.
const KEEPALIVE_LENGTH = 18;
// Byte1('r') Int64 write, Int64 flush, Int64 apply, Int64 clock, Byte1 replyRequested.
const STATUS_UPDATE_LENGTH = 34;

/**
 * The data start of an XLogData message, whose payload is chunk[XLOG_HEADER..];
 * null for any other message (parse it with parseReplicationFrame). The
 * stream's per-row path: no frame object, and only the one LSN it needs.
 */
export function xlogDataStart(chunk: Buffer): Lsn | null {
  if (chunk[0] !== 0x77 /* w */ || chunk.length < XLOG_HEADER) return null;
  return chunk.readBigUInt64BE(1);
}

/** Parses one CopyData payload from the server: 'w' (XLogData) or 'k' (keepalive). */
export function parseReplicationFrame(chunk: Buffer): ReplicationFrame {
  if (chunk.length === 0)
    throw new ProtocolError('empty CopyData message on the replication stream');
  const type = chunk[0];
  if (type === 0x77 /* w */) {
    if (chunk.length < XLOG_HEADER) {
      throw new ProtocolError(
        `XLogData of ${chunk.length} bytes is shorter than its ${XLOG_HEADER}-byte header`,
      );
    }
    return {
      tag: 'xlog',
      dataStart: chunk.readBigUInt64BE(1),
      walEnd: chunk.readBigUInt64BE(9),
      sendTime: chunk.readBigInt64BE(17),
      payloadOffset: XLOG_HEADER,
    };
  }
  if (type === 0x6b /* k */) {
    if (chunk.length < KEEPALIVE_LENGTH) {
      throw new ProtocolError(`keepalive of ${chunk.length} bytes, expected ${KEEPALIVE_LENGTH}`);
    }
    return {
      tag: 'keepalive',
      walEnd: chunk.readBigUInt64BE(1),
      sendTime: chunk.readBigInt64BE(9),
      replyRequested: chunk[17] === 1,
    };
  }
  throw new ProtocolError(
    `unknown replication message type ${JSON.stringify(String.fromCharCode(type!))} (0x${type!.toString(16).padStart(2, '0')})`,
  );
}

/**
 * The standby status update ('r'). Each LSN is "the last WAL byte + 1" the
 * client has written / flushed / applied; the server frees WAL up to `flush`
 * and reports it as the slot's confirmed_flush_lsn.
 */
export function buildStandbyStatusUpdate(
  write: Lsn,
  flush: Lsn,
  apply: Lsn,
  clockMicros: bigint,
  replyRequested: boolean,
): Buffer {
  const buf = Buffer.allocUnsafe(STATUS_UPDATE_LENGTH);
  buf[0] = 0x72; // 'r'
  buf.writeBigUInt64BE(write, 1);
  buf.writeBigUInt64BE(flush, 9);
  buf.writeBigUInt64BE(apply, 17);
  buf.writeBigInt64BE(clockMicros, 25);
  buf[33] = replyRequested ? 1 : 0;
  return buf;
}

/** 2000-01-01T00:00:00Z in unix ms: the epoch of PostgreSQL timestamps on the wire. */
export const PG_EPOCH_MS = 946_684_800_000;
const PG_EPOCH_MS_BIG = BigInt(PG_EPOCH_MS);

/** Microseconds since 2000-01-01 to unix ms, rounded down to a whole ms (exact: no float on the way). */
export function pgMicrosToUnixMs(micros: bigint): number {
  let ms = micros / 1000n;
  if (micros < 0n && ms * 1000n !== micros) ms -= 1n; // floor, not truncation, before 2000
  return Number(ms + PG_EPOCH_MS_BIG);
}

/** Unix ms (fractions kept to the µs) to microseconds since 2000-01-01. */
export function unixMsToPgMicros(ms: number): bigint {
  if (!Number.isFinite(ms)) throw new RangeError(`not a finite time: ${ms}`);
  const whole = Math.floor(ms);
  // Split so the large whole part never goes through a float multiplication.
  return (BigInt(whole) - PG_EPOCH_MS_BIG) * 1000n + BigInt(Math.round((ms - whole) * 1000));
}
