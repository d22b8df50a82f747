import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseLsn, type Lsn } from '../checkpoint/lsn.js';
import { ProtocolError } from '../errors.js';
import { PgoutputDecoder, UNCHANGED_TOAST, type PgoutputMessage } from './pgoutput.js';

/** One message as the server reported it (see fixtures/README.md). */
interface Captured {
  lsn: Lsn;
  xid: number;
  bytes: Buffer;
}

/** The capture, by step title. */
function loadCapture(): Map<string, Captured[]> {
  const text = readFileSync(new URL('./fixtures/pg15-pgoutput-v1.hex', import.meta.url), 'utf8');
  const steps = new Map<string, Captured[]>();
  let current: Captured[] | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('# captured by')) continue;
    if (line.startsWith('# ')) {
      current = [];
      steps.set(line.slice(2), current);
    } else if (line.trim() !== '') {
      const [lsn, xid, hex] = line.split(' ');
      current!.push({ lsn: parseLsn(lsn!), xid: Number(xid), bytes: Buffer.from(hex!, 'hex') });
    }
  }
  return steps;
}

const capture = loadCapture();
const STEP = {
  insert: 'insert: pool, then a trade with 78-digit price/quantity and NULL transaction_id',
  update: 'update, default replica identity, key unchanged (new tuple only)',
  updateKey: 'update, default replica identity, key changed (K tuple)',
  updateFull: 'update after REPLICA IDENTITY FULL (Relation again, O tuple)',
  enumToast: 'enum column (Type message) and a 3000-byte out-of-line text',
  unchangedToast: 'update leaving the TOASTed column unchanged (u)',
  delete: 'delete with REPLICA IDENTITY FULL (O) and default (K)',
  truncate: 'truncate two tables, RESTART IDENTITY CASCADE',
  messages: 'transactional and non-transactional logical messages',
  origin: 'change replayed from a replication origin (Origin message)',
} as const;

/** Decodes every step in capture order with one decoder, as a stream would. */
function decodeAll(): Map<string, { msg: PgoutputMessage; captured: Captured }[]> {
  const decoder = new PgoutputDecoder();
  const out = new Map<string, { msg: PgoutputMessage; captured: Captured }[]>();
  for (const [title, rows] of capture) {
    out.set(
      title,
      rows.map((captured) => ({ msg: decoder.decode(captured.bytes), captured })),
    );
  }
  return out;
}

const decoded = decodeAll();

function step(title: string): PgoutputMessage[] {
  const rows = decoded.get(title);
  if (rows === undefined) throw new Error(`fixture has no step ${JSON.stringify(title)}`);
  return rows.map((r) => r.msg);
}

function only<T extends PgoutputMessage['tag']>(
  title: string,
  tag: T,
): Extract<PgoutputMessage, { tag: T }>[] {
  return step(title).filter((m): m is Extract<PgoutputMessage, { tag: T }> => m.tag === tag);
}

const UINT256_MAX =
  '115792089237316195423570985008687907853269984665640564039457584007913129639935';
const QUANTITY = '100000000000000000000000000000000000000000000000000000000000000000000000000001';
// numeric(78,0): typmod is ((precision << 16) | scale) + VARHDRSZ.
const NUMERIC_78_0 = ((78 << 16) | 0) + 4;

describe('PgoutputDecoder on bytes captured from PostgreSQL 15', () => {
  it('captured every step', () => {
    expect([...capture.keys()]).toEqual(Object.values(STEP));
  });

  it('reports the LSNs and xids the server reported', () => {
    for (const rows of decoded.values()) {
      const begin = rows.find((r) => r.msg.tag === 'begin');
      const commit = rows.find((r) => r.msg.tag === 'commit');
      if (begin?.msg.tag !== 'begin' || commit?.msg.tag !== 'commit') {
        throw new Error('step without begin/commit');
      }
      // The slot function reports a commit at its end LSN, and every row with the xact's xid.
      expect(commit.msg.endLsn).toBe(commit.captured.lsn);
      expect(begin.msg.finalLsn).toBe(commit.msg.commitLsn);
      expect(commit.msg.endLsn > commit.msg.commitLsn).toBe(true);
      expect(begin.msg.xid).toBe(begin.captured.xid);
      expect(begin.msg.commitTime).toBe(commit.msg.commitTime);
      expect(commit.msg.flags).toBe(0);
      for (const r of rows) {
        if (r.msg.tag === 'message') expect(r.msg.lsn).toBe(r.captured.lsn);
      }
    }
  });

  it('decodes Relation messages', () => {
    const [pools, trades] = only(STEP.insert, 'relation').map((m) => m.relation);
    expect(pools).toMatchObject({ schema: 'public', name: 'pools', replicaIdentity: 'd' });
    expect(pools!.columns.map((c) => c.name)).toEqual([
      'id',
      'chain_id',
      'coin',
      'order_book',
      'base_currency',
      'quote_currency',
      'base_decimals',
      'quote_decimals',
      'volume',
      'volume_in_quote',
      'price',
      'timestamp',
    ]);
    expect(trades).toMatchObject({
      schema: 'public',
      name: 'order_book_trades',
      replicaIdentity: 'd',
    });
    expect(trades!.columns).toEqual([
      { name: 'id', typeOid: 25, typmod: -1, isKey: true },
      { name: 'chain_id', typeOid: 23, typmod: -1, isKey: false },
      { name: 'price', typeOid: 1700, typmod: NUMERIC_78_0, isKey: false },
      { name: 'quantity', typeOid: 1700, typmod: NUMERIC_78_0, isKey: false },
      { name: 'timestamp', typeOid: 23, typmod: -1, isKey: false },
      { name: 'transaction_id', typeOid: 25, typmod: -1, isKey: false },
      { name: 'side', typeOid: 1043, typmod: -1, isKey: false },
      { name: 'pool_id', typeOid: 25, typmod: -1, isKey: false },
    ]);
  });

  it('decodes an insert with 78-digit numerics and a NULL', () => {
    const [pool, trade] = only(STEP.insert, 'insert');
    expect(pool!.relation.name).toBe('pools');
    expect(pool!.new).toEqual([
      '0xpool',
      '31337',
      'MWETH/MUSDC',
      '0xbook',
      '0xweth',
      '0xusdc',
      '18',
      '6',
      '0',
      '0',
      UINT256_MAX,
      '1700000000',
    ]);
    expect(trade!.relation.name).toBe('order_book_trades');
    expect(trade!.new).toEqual([
      '0xtx-0',
      '31337',
      UINT256_MAX,
      QUANTITY,
      '1700000001',
      null,
      'buy',
      '0xbook',
    ]);
  });

  it('decodes updates: new only, with a changed key, with REPLICA IDENTITY FULL', () => {
    const [plain] = only(STEP.update, 'update');
    expect(plain).toMatchObject({ key: null, old: null });
    expect(plain!.new).toEqual([
      '0xtx-0',
      '31337',
      UINT256_MAX,
      QUANTITY,
      '1700000001',
      null,
      'sell',
      '0xbook',
    ]);

    const [rekeyed] = only(STEP.updateKey, 'update');
    expect(rekeyed!.old).toBeNull();
    // The key tuple is positional too: key columns set, the rest null.
    expect(rekeyed!.key).toEqual(['0xtx-0', null, null, null, null, null, null, null]);
    expect(rekeyed!.new[0]).toBe('0xtx-1');

    const [relation] = only(STEP.updateFull, 'relation');
    expect(relation!.relation.replicaIdentity).toBe('f');
    expect(relation!.relation.columns.every((c) => c.isKey)).toBe(true);
    const [full] = only(STEP.updateFull, 'update');
    expect(full!.relation).toBe(relation!.relation);
    expect(full!.key).toBeNull();
    expect(full!.old).toEqual([
      '0xtx-1',
      '31337',
      UINT256_MAX,
      QUANTITY,
      '1700000001',
      null,
      'sell',
      '0xbook',
    ]);
    expect(full!.new).toEqual([
      '0xtx-1',
      '31337',
      UINT256_MAX,
      '7',
      '1700000001',
      null,
      'sell',
      '0xbook',
    ]);
  });

  it('decodes a Type message for an enum column and a large out-of-line text', () => {
    const [type] = only(STEP.enumToast, 'type');
    const [relation] = only(STEP.enumToast, 'relation');
    expect(type).toMatchObject({ schema: 'public', name: 'trade_kind' });
    expect(relation!.relation.columns[1]).toEqual({
      name: 'kind',
      typeOid: type!.oid,
      typmod: -1,
      isKey: false,
    });
    const [insert] = only(STEP.enumToast, 'insert');
    expect(insert!.new).toEqual(['1', 'limit', '0123456789'.repeat(300)]);
  });

  it('marks an unchanged TOASTed value', () => {
    const [update] = only(STEP.unchangedToast, 'update');
    expect(update!.new).toEqual(['1', 'market', UNCHANGED_TOAST]);
  });

  it('decodes deletes with the old row (FULL) and with the key (DEFAULT)', () => {
    const [trade, pool] = only(STEP.delete, 'delete');
    expect(trade!.relation.name).toBe('order_book_trades');
    expect(trade!.key).toBeNull();
    expect(trade!.old).toEqual([
      '0xtx-1',
      '31337',
      UINT256_MAX,
      '7',
      '1700000001',
      null,
      'sell',
      '0xbook',
    ]);
    expect(pool!.relation.name).toBe('pools');
    expect(pool!.old).toBeNull();
    expect(pool!.key).toEqual(['0xpool', ...Array<null>(11).fill(null)]);
  });

  it('decodes a truncate of two relations with its options', () => {
    const [truncate] = only(STEP.truncate, 'truncate');
    expect(truncate!.relations.map((r) => r.name)).toEqual(['pools', 'order_book_trades']);
    expect(truncate!.cascade).toBe(true);
    expect(truncate!.restartIdentity).toBe(true);
  });

  it('decodes transactional and non-transactional logical messages', () => {
    const messages = only(STEP.messages, 'message');
    expect(messages.map((m) => [m.transactional, m.prefix, m.content.toString()])).toEqual([
      // The non-transactional one is sent at once, ahead of its transaction's Begin.
      [false, 'slotline-heartbeat', '1700000002'],
      [true, 'slotline', 'in-txn'],
    ]);
    expect(step(STEP.messages).map((m) => m.tag)).toEqual([
      'message',
      'begin',
      'message',
      'type',
      'relation',
      'insert',
      'commit',
    ]);
    expect(only(STEP.messages, 'insert')[0]!.new).toEqual(['2', 'market', null]);
  });

  it('decodes an Origin message', () => {
    const [origin] = only(STEP.origin, 'origin');
    expect(origin).toEqual({ tag: 'origin', originLsn: parseLsn('0/ABCDEF0'), name: 'upstream' });
    // pg_replication_origin_xact_setup also sets the commit time the subscriber sees.
    const micros =
      BigInt(Date.parse('2024-01-02T03:04:05Z') - Date.parse('2000-01-01T00:00:00Z')) * 1000n;
    expect(only(STEP.origin, 'commit')[0]!.commitTime).toBe(micros);
    expect(only(STEP.origin, 'begin')[0]!.commitTime).toBe(micros);
  });
});

// Hand-built messages for what a capture cannot easily show.
class Bytes {
  private readonly parts: Buffer[] = [];
  u8(v: number): this {
    this.parts.push(Buffer.from([v]));
    return this;
  }
  u16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    this.parts.push(b);
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v);
    this.parts.push(b);
    return this;
  }
  i32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    this.parts.push(b);
    return this;
  }
  str(s: string): this {
    this.parts.push(Buffer.from(`${s}\0`));
    return this;
  }
  char(c: string): this {
    return this.u8(c.charCodeAt(0));
  }
  text(s: string): this {
    const b = Buffer.from(s);
    return this.char('t').u32(b.length).bytes(b);
  }
  bytes(b: Buffer): this {
    this.parts.push(b);
    return this;
  }
  build(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function relationMessage(oid: number, columns: string[]): Buffer {
  const b = new Bytes().char('R').u32(oid).str('public').str('t').char('d').u16(columns.length);
  columns.forEach((name, i) =>
    b
      .u8(i === 0 ? 1 : 0)
      .str(name)
      .u32(25)
      .i32(-1),
  );
  return b.build();
}

function insertMessage(oid: number, values: string[]): Buffer {
  const b = new Bytes().char('I').u32(oid).char('N').u16(values.length);
  for (const v of values) b.text(v);
  return b.build();
}

function errorOf(fn: () => unknown): ProtocolError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    return err as ProtocolError;
  }
  throw new Error('expected a ProtocolError');
}

describe('PgoutputDecoder', () => {
  it('replaces a cached relation when a new Relation message arrives', () => {
    const decoder = new PgoutputDecoder();
    decoder.decode(relationMessage(42, ['id', 'a']));
    expect(decoder.decode(insertMessage(42, ['1', 'x']))).toMatchObject({ new: ['1', 'x'] });
    // ALTER TABLE ... ADD COLUMN: the server sends the relation again before the next change.
    decoder.decode(relationMessage(42, ['id', 'a', 'b']));
    expect(decoder.relation(42)!.columns.map((c) => c.name)).toEqual(['id', 'a', 'b']);
    const insert = decoder.decode(insertMessage(42, ['2', 'y', 'z']));
    expect(insert).toMatchObject({ tag: 'insert', new: ['2', 'y', 'z'] });
    // A tuple that does not match the cached relation is an error, not a misaligned row.
    expect(errorOf(() => decoder.decode(insertMessage(42, ['3', 'w']))).message).toMatch(
      /2 columns.*had 3/,
    );
  });

  it('rejects a change to an unknown relation oid, naming it', () => {
    const captured = capture.get(STEP.insert)!.find((c) => c.bytes[0] === 0x49)!;
    const oid = captured.bytes.readUInt32BE(1);
    expect(errorOf(() => new PgoutputDecoder().decode(captured.bytes)).message).toContain(
      `oid ${oid}`,
    );

    const decoder = new PgoutputDecoder();
    decoder.decode(relationMessage(7, ['id']));
    decoder.reset();
    expect(decoder.relation(7)).toBeUndefined();
    expect(errorOf(() => decoder.decode(insertMessage(7, ['1']))).message).toContain('oid 7');
    const truncate = new Bytes().char('T').u32(1).u8(0).u32(8).build();
    expect(errorOf(() => decoder.decode(truncate)).message).toContain('oid 8');
  });

  it('rejects binary values', () => {
    const decoder = new PgoutputDecoder();
    decoder.decode(relationMessage(42, ['id']));
    const binary = new Bytes().char('I').u32(42).char('N').u16(1).char('b').u32(1).u8(1).build();
    expect(errorOf(() => decoder.decode(binary)).message).toMatch(/column id: binary/);
  });

  it('returns nothing that references the input buffer', () => {
    const decoder = new PgoutputDecoder();
    const buffers = [
      ...capture.get(STEP.insert)!.map((c) => Buffer.from(c.bytes)),
      ...capture.get(STEP.messages)!.map((c) => Buffer.from(c.bytes)),
    ];
    const fresh = new PgoutputDecoder();
    const messages = buffers.map((b) => {
      const msg = decoder.decode(b);
      b.fill(0); // what the pg parser's buffer reuse amounts to
      return msg;
    });
    const expected = [
      ...capture.get(STEP.insert)!.map((c) => fresh.decode(c.bytes)),
      ...capture.get(STEP.messages)!.map((c) => fresh.decode(c.bytes)),
    ];
    expect(messages).toEqual(expected);
  });

  it('decodes a message inside a larger buffer', () => {
    const msg = new Bytes()
      .char('O')
      .bytes(Buffer.from('00000001000000ff', 'hex'))
      .str('up')
      .build();
    const buf = Buffer.concat([Buffer.from('garbage'), msg, Buffer.from('more garbage')]);
    expect(new PgoutputDecoder().decode(buf, 7, 7 + msg.length)).toEqual({
      tag: 'origin',
      originLsn: parseLsn('1/FF'),
      name: 'up',
    });
  });

  it('rejects unknown, streaming, truncated and over-long messages', () => {
    const decoder = new PgoutputDecoder();
    expect(errorOf(() => decoder.decode(Buffer.from('Zxyz'))).message).toContain(`"Z" (0x5a)`);
    for (const c of 'SEcA') {
      expect(errorOf(() => decoder.decode(Buffer.from(c))).message).toContain('proto_version 1');
    }
    const begin = capture.get(STEP.insert)![0]!.bytes;
    expect(errorOf(() => decoder.decode(begin, 0, begin.length - 1)).message).toContain(
      'truncated',
    );
    expect(
      errorOf(() => decoder.decode(Buffer.concat([begin, Buffer.from([0])]))).message,
    ).toContain('trailing');
    expect(errorOf(() => decoder.decode(Buffer.from('Y\0\0\0\x01public'))).message).toContain(
      'unterminated string',
    );
    expect(errorOf(() => decoder.decode(Buffer.alloc(0))).message).toContain('empty');
  });
});
