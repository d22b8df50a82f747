/**
 * Decoder of the `pgoutput` logical replication protocol, proto_version 1.
 * Byte layouts: PostgreSQL docs, "Logical Replication Message Formats"
 * (https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html).
 *
 * This is the hot path (one call per row), so the decoder keeps its read
 * position in fields instead of allocating a cursor, and allocates nothing but
 * the result. Nothing returned references the input buffer: the `pg` parser
 * reuses it for the next CopyData.
 */
import type { Lsn } from '../checkpoint/lsn.js';
import { ProtocolError } from '../errors.js';

/** A TOASTed value the update did not change: the server does not resend it ('u'). */
export const UNCHANGED_TOAST: unique symbol = Symbol('unchanged-toast');
export type ColumnValue = string | null | typeof UNCHANGED_TOAST;
/** Positional, aligned with `relation.columns`. */
export type TupleValues = ColumnValue[];

export interface Column {
  name: string;
  typeOid: number;
  typmod: number;
  /** Part of the replica identity (the primary key unless REPLICA IDENTITY says otherwise). */
  isKey: boolean;
}

export interface Relation {
  oid: number;
  /** Empty for pg_catalog, as the server sends it. */
  schema: string;
  name: string;
  /** REPLICA IDENTITY: default, nothing, full, index. */
  replicaIdentity: 'd' | 'n' | 'f' | 'i';
  columns: Column[];
}

export type PgoutputMessage =
  | { tag: 'begin'; finalLsn: Lsn; commitTime: bigint /* µs since 2000-01-01 UTC */; xid: number }
  | { tag: 'commit'; flags: number; commitLsn: Lsn; endLsn: Lsn; commitTime: bigint }
  | { tag: 'origin'; originLsn: Lsn; name: string }
  | { tag: 'relation'; relation: Relation }
  | { tag: 'type'; oid: number; schema: string; name: string }
  | { tag: 'insert'; relation: Relation; new: TupleValues }
  | {
      tag: 'update';
      relation: Relation;
      /** REPLICA IDENTITY DEFAULT/INDEX and the key changed: key columns set, the others null. */
      key: TupleValues | null;
      /** REPLICA IDENTITY FULL: the whole old row. */
      old: TupleValues | null;
      new: TupleValues;
    }
  | { tag: 'delete'; relation: Relation; key: TupleValues | null; old: TupleValues | null }
  | { tag: 'truncate'; relations: Relation[]; cascade: boolean; restartIdentity: boolean }
  | { tag: 'message'; transactional: boolean; lsn: Lsn; prefix: string; content: Buffer };

const EMPTY = Buffer.alloc(0);

// Truncate option bits (docs: "Truncate").
const TRUNCATE_CASCADE = 1;
const TRUNCATE_RESTART_IDENTITY = 2;

export class PgoutputDecoder {
  private readonly relations = new Map<number, Relation>();
  private buf: Buffer = EMPTY;
  private pos = 0;
  private end = 0;

  /** Decodes one pgoutput message occupying buf[offset..end). */
  decode(buf: Buffer, offset = 0, end = buf.length): PgoutputMessage {
    if (offset < 0 || end > buf.length || offset >= end) {
      throw new ProtocolError(`empty or out-of-range pgoutput message [${offset}, ${end})`);
    }
    this.buf = buf;
    this.pos = offset + 1;
    this.end = end;
    try {
      const msg = this.decodeBody(buf[offset]!);
      if (this.pos !== end) {
        throw new ProtocolError(
          `pgoutput '${String.fromCharCode(buf[offset]!)}' message has ${end - this.pos} trailing bytes`,
        );
      }
      return msg;
    } finally {
      // Do not keep the caller's (reused, possibly large) buffer alive.
      this.buf = EMPTY;
    }
  }

  relation(oid: number): Relation | undefined {
    return this.relations.get(oid);
  }

  /** Forgets cached relations: a new connection resends Relation messages before use. */
  reset(): void {
    this.relations.clear();
  }

  // eslint-disable-next-line max-lines-per-function -- the protocol's switch over message tags: one short case per tag, read against the PostgreSQL docs
  private decodeBody(type: number): PgoutputMessage {
    switch (type) {
      case 0x42 /* B */: {
        const finalLsn = this.lsn();
        const commitTime = this.int64();
        return { tag: 'begin', finalLsn, commitTime, xid: this.uint32() };
      }
      case 0x43 /* C */: {
        const flags = this.uint8();
        const commitLsn = this.lsn();
        const endLsn = this.lsn();
        return { tag: 'commit', flags, commitLsn, endLsn, commitTime: this.int64() };
      }
      case 0x4f /* O */: {
        const originLsn = this.lsn();
        return { tag: 'origin', originLsn, name: this.cstring() };
      }
      case 0x52 /* R */:
        return { tag: 'relation', relation: this.relationBody() };
      case 0x59 /* Y */: {
        const oid = this.uint32();
        const schema = this.cstring();
        return { tag: 'type', oid, schema, name: this.cstring() };
      }
      case 0x49 /* I */: {
        const relation = this.knownRelation();
        this.expectTupleKind(0x4e /* N */, 'insert');
        return { tag: 'insert', relation, new: this.tuple(relation) };
      }
      case 0x55 /* U */: {
        const relation = this.knownRelation();
        let key: TupleValues | null = null;
        let old: TupleValues | null = null;
        // Optional 'K' (key changed) or 'O' (REPLICA IDENTITY FULL), then 'N' (docs: "Update").
        let kind = this.uint8();
        if (kind === 0x4b /* K */) {
          key = this.tuple(relation);
          kind = this.uint8();
        } else if (kind === 0x4f /* O */) {
          old = this.tuple(relation);
          kind = this.uint8();
        }
        if (kind !== 0x4e /* N */) throw this.badTupleKind(kind, 'update');
        return { tag: 'update', relation, key, old, new: this.tuple(relation) };
      }
      case 0x44 /* D */: {
        const relation = this.knownRelation();
        const kind = this.uint8();
        if (kind === 0x4b /* K */) {
          return { tag: 'delete', relation, key: this.tuple(relation), old: null };
        }
        if (kind === 0x4f /* O */) {
          return { tag: 'delete', relation, key: null, old: this.tuple(relation) };
        }
        throw this.badTupleKind(kind, 'delete');
      }
      case 0x54 /* T */: {
        const count = this.uint32();
        const options = this.uint8();
        const relations: Relation[] = [];
        for (let i = 0; i < count; i++) relations.push(this.knownRelation());
        return {
          tag: 'truncate',
          relations,
          cascade: (options & TRUNCATE_CASCADE) !== 0,
          restartIdentity: (options & TRUNCATE_RESTART_IDENTITY) !== 0,
        };
      }
      case 0x4d /* M */: {
        // Only sent with the `messages` option; flags bit 1 = transactional (docs: "Message").
        const transactional = (this.uint8() & 1) !== 0;
        const lsn = this.lsn();
        const prefix = this.cstring();
        const length = this.uint32();
        this.need(length);
        // A copy: the caller's buffer is reused after we return.
        const content = Buffer.from(this.buf.subarray(this.pos, this.pos + length));
        this.pos += length;
        return { tag: 'message', transactional, lsn, prefix, content };
      }
      case 0x53 /* S */:
      case 0x45 /* E */:
      case 0x63 /* c */:
      case 0x41 /* A */:
        // Stream Start/Stop/Commit/Abort exist only with proto_version >= 2 and `streaming`.
        throw new ProtocolError(
          `pgoutput streaming message '${String.fromCharCode(type)}' received: proto_version 1 is expected (no streaming)`,
        );
      case 0x62 /* b */:
      case 0x50 /* P */:
      case 0x4b /* K */:
      case 0x72 /* r */:
      case 0x70 /* p */:
        // Two-phase commit messages exist only with proto_version >= 3 and `two_phase`.
        throw new ProtocolError(
          `pgoutput two-phase message '${String.fromCharCode(type)}' received: proto_version 1 is expected (no two_phase)`,
        );
      default:
        throw new ProtocolError(
          `unknown pgoutput message type ${JSON.stringify(String.fromCharCode(type))} (0x${type.toString(16).padStart(2, '0')})`,
        );
    }
  }

  /** Relation body (docs: "Relation"); replaces the cached entry, as after ALTER TABLE. */
  private relationBody(): Relation {
    const oid = this.uint32();
    const schema = this.cstring();
    const name = this.cstring();
    const identity = this.uint8();
    if (identity !== 0x64 && identity !== 0x6e && identity !== 0x66 && identity !== 0x69) {
      throw new ProtocolError(
        `relation ${oid}: unknown replica identity 0x${identity.toString(16).padStart(2, '0')}`,
      );
    }
    const count = this.uint16();
    const columns: Column[] = [];
    for (let i = 0; i < count; i++) {
      // Column flags: bit 1 = part of the key.
      const isKey = (this.uint8() & 1) !== 0;
      const colName = this.cstring();
      const typeOid = this.uint32();
      columns.push({ name: colName, typeOid, typmod: this.int32(), isKey });
    }
    const relation: Relation = {
      oid,
      schema,
      name,
      replicaIdentity: String.fromCharCode(identity) as Relation['replicaIdentity'],
      columns,
    };
    this.relations.set(oid, relation);
    return relation;
  }

  private knownRelation(): Relation {
    const oid = this.uint32();
    const relation = this.relations.get(oid);
    if (relation === undefined) {
      // The server sends Relation before the first change of each relation per session.
      throw new ProtocolError(
        `pgoutput change for relation oid ${oid} before its Relation message`,
      );
    }
    return relation;
  }

  private expectTupleKind(want: number, what: string): void {
    const kind = this.uint8();
    if (kind !== want) throw this.badTupleKind(kind, what);
  }

  private badTupleKind(kind: number, what: string): ProtocolError {
    return new ProtocolError(
      `pgoutput ${what}: unexpected tuple kind ${JSON.stringify(String.fromCharCode(kind))} (0x${kind.toString(16).padStart(2, '0')})`,
    );
  }

  /** TupleData (docs: "TupleData"): Int16 count, then per column 'n' | 'u' | 't' Int32 len bytes. */
  private tuple(relation: Relation): TupleValues {
    const count = this.uint16();
    if (count !== relation.columns.length) {
      throw new ProtocolError(
        `relation ${relation.oid} (${relation.schema}.${relation.name}): tuple has ${count} columns, Relation message had ${relation.columns.length}`,
      );
    }
    const buf = this.buf;
    // Sized once: pushing onto [] grows it to 17 slots at the first push.
    const values: TupleValues = new Array<ColumnValue>(count);
    for (let i = 0; i < count; i++) {
      this.need(1);
      const kind = buf[this.pos++];
      if (kind === 0x74 /* t */) {
        const length = this.uint32();
        this.need(length);
        // toString copies, so the value survives reuse of buf.
        values[i] = buf.toString('utf8', this.pos, this.pos + length);
        this.pos += length;
      } else if (kind === 0x6e /* n */) {
        values[i] = null;
      } else if (kind === 0x75 /* u */) {
        values[i] = UNCHANGED_TOAST;
      } else if (kind === 0x62 /* b */) {
        throw new ProtocolError(
          `relation ${relation.oid} column ${relation.columns[i]!.name}: binary value, but the binary option is never requested`,
        );
      } else {
        throw new ProtocolError(
          `relation ${relation.oid} column ${relation.columns[i]!.name}: unknown value kind 0x${kind!.toString(16).padStart(2, '0')}`,
        );
      }
    }
    return values;
  }

  private need(n: number): void {
    if (this.pos + n > this.end) {
      throw new ProtocolError(
        `pgoutput message truncated: need ${n} bytes at offset ${this.pos}, message ends at ${this.end}`,
      );
    }
  }

  private uint8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  private uint16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  private uint32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  private int32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  private lsn(): Lsn {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  /** Timestamps are signed (microseconds relative to 2000-01-01). */
  private int64(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  /** A NUL-terminated string (docs: "Message Data Types", String(s)). */
  private cstring(): string {
    const nul = this.buf.indexOf(0, this.pos);
    if (nul < 0 || nul >= this.end) {
      throw new ProtocolError(
        `pgoutput message truncated: unterminated string at offset ${this.pos}`,
      );
    }
    const s = this.buf.toString('utf8', this.pos, nul);
    this.pos = nul + 1;
    return s;
  }
}
