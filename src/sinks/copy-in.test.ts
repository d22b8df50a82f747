import { describe, expect, it } from 'vitest';
import { parseCopyTextRow } from '../source/copy-text.js';
import { copyChunks, copyTextField, copyTextRow } from './copy-in.js';
import { tradeCopyRow } from './timescale-copy.js';

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
