import { describe, expect, it } from 'vitest';
import { parseCopyTextRow } from '../source/copy-text.js';
import { copyChunks, CopyRows, copyTextField, copyTextRow } from './copy-in.js';
import { blockedIds, tradeCopyRow } from './timescale-copy.js';

const HOSTILE = [
  '',
  'plain',
  '\\',
  '\\N',
  'N',
  '\\.',
  '.',
  'a\tb',
  'a\nb',
  'a\rb',
  '\r\n',
  '\\\\t',
  '\t\\N\n',
  'tab\there\\and\\nnot-a-newline',
  '€ 日本 🦊',
  "'; DROP TABLE analytics_trades; --",
  '\b\f\v',
  'x'.repeat(100_000),
];

describe('copyTextField', () => {
  it('spells null as \\N and nothing else as it', () => {
    expect(copyTextField(null)).toBe('\\N');
    for (const s of HOSTILE) expect(copyTextField(s)).not.toBe('\\N');
  });

  it('leaves no raw tab, newline or carriage return, and no lone backslash', () => {
    for (const s of HOSTILE) {
      const f = copyTextField(s);
      expect(f).not.toMatch(/[\t\n\r]/);
      // Every backslash starts one of the escapes COPY reads back.
      expect(f.replace(/\\[\\tnr]/g, '')).not.toContain('\\');
    }
  });

  it('round-trips hostile strings through the COPY text parser', () => {
    const row = [...HOSTILE, null, ''];
    const line = copyTextRow(row);
    expect(line.endsWith('\n')).toBe(true);
    expect(line.slice(0, -1)).not.toContain('\n');
    expect(parseCopyTextRow(Buffer.from(line, 'utf8'))).toEqual(row);
  });

  it('packs rows into chunks that concatenate to the input', () => {
    const lines = Array.from({ length: 2000 }, (_, i) => copyTextRow([`id-${i}`, 'x'.repeat(i)]));
    const chunks = copyChunks(lines);
    expect(chunks.length).toBeGreaterThan(1);
    expect(Buffer.concat(chunks).toString('utf8')).toBe(lines.join(''));
    expect(copyChunks([])).toEqual([]);
  });
});

describe('CopyRows', () => {
  const spell = (v: string) => (v.includes('\0') ? null : copyTextField(v));

  it('writes what copyTextRow spells, in chunks that end at row ends', () => {
    const rows = new CopyRows();
    const lines: string[] = [];
    for (let i = 0; i < 1200; i++) {
      const fields = [`id-${i}`, HOSTILE[i % HOSTILE.length]!, i % 7 === 0 ? null : 'x'.repeat(i)];
      rows.begin();
      for (const f of fields) expect(rows.text(f, spell)).toBe(true);
      rows.raw(String(i));
      rows.end();
      lines.push(copyTextRow([...fields, String(i)]));
    }
    const chunks = rows.finish();
    expect(chunks.length).toBeGreaterThan(1);
    expect(Buffer.concat(chunks).toString('utf8')).toBe(lines.join(''));
    for (const c of chunks) expect(c[c.length - 1]).toBe(0x0a);
  });

  it('drops a row whose value cannot be spelled, even after the buffer grew', () => {
    const rows = new CopyRows();
    rows.begin();
    expect(rows.text('kept', spell)).toBe(true);
    rows.end();
    rows.begin();
    expect(rows.text('y'.repeat(300_000), spell)).toBe(true);
    expect(rows.text('a\0b', spell)).toBe(false);
    rows.drop();
    rows.begin();
    expect(rows.text('€', spell)).toBe(true);
    rows.end();
    expect(Buffer.concat(rows.finish()).toString('utf8')).toBe('kept\n€\n');
  });

  it('hands the same chunks to emit as it would keep, each a view valid during the call', () => {
    const kept = new CopyRows();
    const emitted: Buffer[] = [];
    const streamed = new CopyRows((view) => emitted.push(Buffer.from(view)));
    for (let i = 0; i < 3000; i++) {
      for (const rows of [kept, streamed]) {
        rows.begin();
        rows.text(`row-${i}-${HOSTILE[i % HOSTILE.length]!.slice(0, 5000)}`, spell);
        rows.raw(String(i));
        rows.end();
      }
    }
    expect(streamed.finish()).toEqual([]);
    const chunks = kept.finish();
    expect(emitted.length).toBeGreaterThan(1);
    // Compared as bytes: toEqual walks megabytes element by element (seconds on a busy machine).
    expect(emitted.map((c) => c.length)).toEqual(chunks.map((c) => c.length));
    expect(Buffer.concat(emitted).equals(Buffer.concat(chunks))).toBe(true);
  });

  it('gives no chunk for no rows', () => {
    expect(new CopyRows().finish()).toEqual([]);
  });
});

describe('tradeCopyRow', () => {
  const trade = {
    tradeId: 'tr\t1\\N',
    time: '1700000000',
    chainId: '1',
    poolId: 'pool\n1',
    symbol: null as string | null,
    side: 'buy',
    price: '123456789012345678901234567890',
    quantity: '1000000000000000000',
    transactionId: '0xabc',
  };
  const version = { gen: 2, lsn: 0x16b3748n, seq: -1 };

  it('spells the values the upsert casts would make', () => {
    const line = tradeCopyRow({ trade, version });
    expect(line).not.toBeNull();
    expect(parseCopyTextRow(Buffer.from(line!, 'utf8'))).toEqual([
      'tr\t1\\N',
      '2023-11-14T22:13:20.000Z',
      '1',
      'pool\n1',
      null,
      'buy',
      '123456789012345678901234567890',
      '1000000000000000000',
      '123456789012345678901234567890000000000000000000',
      '0xabc',
      '0/16B3748',
      '2',
      '-1',
    ]);
  });

  it('spells each time as toISOString does, across minutes, days and years', () => {
    const times = [1, 59, 60, 61, 86_399, 86_400, 951_782_400, 1_700_000_000, 253_402_300_799];
    for (let i = 0; i < 500; i++) times.push(1_699_999_000 + i * 7);
    for (const s of times) {
      const line = tradeCopyRow({ trade: { ...trade, time: String(s) }, version });
      expect(parseCopyTextRow(Buffer.from(line!, 'utf8'))[1]).toBe(
        new Date(s * 1000).toISOString(),
      );
    }
  });

  it('leaves to the upsert what it cannot spell the same way', () => {
    const no = (t: Partial<typeof trade>) => tradeCopyRow({ trade: { ...trade, ...t }, version });
    expect(no({ time: '1.5' })).toBeNull();
    expect(no({ time: '0' })).toBeNull();
    expect(no({ time: '-5' })).toBeNull();
    expect(no({ time: '99999999999999' })).toBeNull();
    expect(no({ price: '1.5' })).toBeNull();
    expect(no({ quantity: '-1' })).toBeNull();
    expect(no({ quantity: '1e3' })).toBeNull();
    expect(no({ tradeId: 'a\0b' })).toBeNull();
    expect(no({ symbol: 'x\ud800y' })).toBeNull();
    expect(no({ symbol: '🦊' })).not.toBeNull();
  });
});

describe('blockedIds', () => {
  const row = (id: string, gen: number, lsn: bigint, seq: number) => ({
    trade: {
      tradeId: id,
      time: '1700000000',
      chainId: '1',
      poolId: 'p',
      symbol: null,
      side: 'buy',
      price: '1',
      quantity: '1',
      transactionId: '0x1',
    },
    version: { gen, lsn, seq },
  });
  const copy = [row('a', 1, 0x200n, 0), row('b', 1, 0x200n, 1), row('c', 2, 0x100n, -1)];

  it('keeps out exactly the rows whose tombstone is newer, as tradeInsert would', () => {
    const tombstones = [
      ['a', '1', '0/300', '0'], // newer LSN: blocks a
      ['b', '1', '0/200', '1'], // the same version: tradeInsert writes b
      ['c', '1', 'FF/0', '9'], // an older generation, whatever its LSN: writes c
      ['x', '9', '0/1', '0'], // not copied
    ];
    expect([...blockedIds(copy, tombstones)]).toEqual(['a']);
    expect([...blockedIds(copy, [['b', '1', '0/200', '2']])]).toEqual(['b']);
    expect([...blockedIds(copy, [['c', '2', '0/100', '0']])]).toEqual(['c']);
    expect(blockedIds(copy, []).size).toBe(0);
  });
});
