import { describe, expect, it } from 'vitest';
import { parseLsn } from '../checkpoint/lsn.js';
import { ProtocolError } from '../errors.js';
import {
  PG_EPOCH_MS,
  buildStandbyStatusUpdate,
  parseReplicationFrame,
  pgMicrosToUnixMs,
  unixMsToPgMicros,
  XLOG_HEADER,
  xlogDataStart,
} from './wire.js';

describe('parseReplicationFrame', () => {
  it('parses XLogData and points at its payload', () => {
    // 'w', dataStart 0/1550040, walEnd 0/1550308, sendTime, then a pgoutput Begin.
    const chunk = Buffer.from(
      '77' +
        '0000000001550040' +
        '0000000001550308' +
        '0002b0ec8515f340' +
        '4200000000015502d8000303eec5ec8abe000002db',
      'hex',
    );
    expect(parseReplicationFrame(chunk)).toEqual({
      tag: 'xlog',
      dataStart: parseLsn('0/1550040'),
      walEnd: parseLsn('0/1550308'),
      sendTime: 0x0002b0ec8515f340n,
      payloadOffset: 25,
    });
    expect(chunk[25]).toBe(0x42);
    expect(xlogDataStart(chunk)).toBe(parseLsn('0/1550040'));
    expect(XLOG_HEADER).toBe(25);
  });

  it('takes only XLogData as XLogData: keepalives and short frames go to the full parser', () => {
    expect(xlogDataStart(Buffer.alloc(24, 'w'))).toBeNull();
    expect(xlogDataStart(Buffer.alloc(18, 'k'))).toBeNull();
    expect(xlogDataStart(Buffer.alloc(0))).toBeNull();
  });

  it('parses keepalives with and without a reply request', () => {
    const keepalive = (reply: number) =>
      Buffer.concat([
        Buffer.from('6b' + 'ffffffff00000010' + 'fffffffffffffffe', 'hex'),
        Buffer.from([reply]),
      ]);
    expect(parseReplicationFrame(keepalive(1))).toEqual({
      tag: 'keepalive',
      walEnd: parseLsn('FFFFFFFF/10'),
      sendTime: -2n, // signed
      replyRequested: true,
    });
    expect(parseReplicationFrame(keepalive(0))).toMatchObject({ replyRequested: false });
  });

  it('rejects other and short messages', () => {
    expect(() => parseReplicationFrame(Buffer.from('x'))).toThrow(ProtocolError);
    expect(() => parseReplicationFrame(Buffer.from('x'))).toThrow(/"x" \(0x78\)/);
    expect(() => parseReplicationFrame(Buffer.alloc(0))).toThrow(ProtocolError);
    expect(() => parseReplicationFrame(Buffer.alloc(24, 'w'))).toThrow(/header/);
    expect(() => parseReplicationFrame(Buffer.alloc(17, 'k'))).toThrow(/keepalive/);
  });
});

describe('buildStandbyStatusUpdate', () => {
  it('lays out the 34-byte status update', () => {
    const buf = buildStandbyStatusUpdate(
      parseLsn('1/2'),
      parseLsn('0/3'),
      parseLsn('ABCDEF01/23456789'),
      0x0102030405060708n,
      true,
    );
    expect(buf.toString('hex')).toBe(
      '72' +
        '0000000100000002' +
        '0000000000000003' +
        'abcdef0123456789' +
        '0102030405060708' +
        '01',
    );
    expect(buildStandbyStatusUpdate(0n, 0n, 0n, -1n, false).toString('hex')).toBe(
      '72' + '00'.repeat(24) + 'ff'.repeat(8) + '00',
    );
  });

  it('round-trips its fields', () => {
    const write = parseLsn('16/B374D848');
    const clock = unixMsToPgMicros(1_700_000_000_123);
    const buf = buildStandbyStatusUpdate(write, write - 8n, write - 16n, clock, false);
    expect(buf.length).toBe(34);
    expect(buf.readBigUInt64BE(1)).toBe(write);
    expect(buf.readBigUInt64BE(9)).toBe(write - 8n);
    expect(buf.readBigUInt64BE(17)).toBe(write - 16n);
    expect(pgMicrosToUnixMs(buf.readBigInt64BE(25))).toBe(1_700_000_000_123);
    expect(buf[33]).toBe(0);
  });
});

describe('PostgreSQL epoch conversions', () => {
  it('matches 2000-01-01', () => {
    expect(PG_EPOCH_MS).toBe(Date.parse('2000-01-01T00:00:00Z'));
    expect(pgMicrosToUnixMs(0n)).toBe(PG_EPOCH_MS);
    expect(unixMsToPgMicros(PG_EPOCH_MS)).toBe(0n);
  });

  it('converts exactly, flooring to the ms', () => {
    // The commit time pg_replication_origin_xact_setup('..., 2024-01-02 03:04:05+00') produced.
    expect(pgMicrosToUnixMs(0x0002b0ec8515f340n)).toBe(Date.parse('2024-01-02T03:04:05Z'));
    expect(pgMicrosToUnixMs(757_479_845_000_999n)).toBe(Date.parse('2024-01-02T03:04:05Z'));
    expect(pgMicrosToUnixMs(-1n)).toBe(PG_EPOCH_MS - 1);
    expect(pgMicrosToUnixMs(-1000n)).toBe(PG_EPOCH_MS - 1);
    expect(unixMsToPgMicros(Date.parse('2024-01-02T03:04:05Z'))).toBe(0x0002b0ec8515f340n);
    expect(unixMsToPgMicros(1_700_000_000_000.5)).toBe(753_315_200_000_500n);
    expect(() => unixMsToPgMicros(Number.NaN)).toThrow(RangeError);
  });
});
