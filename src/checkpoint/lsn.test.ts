import { describe, expect, it } from 'vitest';
import {
  formatLsn,
  isLsn,
  lsnDiff,
  maxLsn,
  minLsn,
  parseLsn,
  parseLsnOrNull,
  ZERO_LSN,
} from './lsn.js';

describe('parseLsn / formatLsn', () => {
  it.each([
    ['0/0', 0n],
    ['0/16B3748', 0x16b3748n],
    ['1/0', 1n << 32n],
    ['16/B374D848', (0x16n << 32n) | 0xb374d848n],
    ['FFFFFFFF/FFFFFFFF', 0xffff_ffff_ffff_ffffn],
  ])('%s round-trips', (text, value) => {
    expect(parseLsn(text)).toBe(value);
    expect(formatLsn(value)).toBe(text);
  });

  it('accepts lower case and leading zeros, formats canonically', () => {
    expect(parseLsn('16/b374d848')).toBe((0x16n << 32n) | 0xb374d848n);
    expect(formatLsn(parseLsn('0000000a/000000ff'))).toBe('A/FF');
    expect(parseLsn(' 1/2 ')).toBe((1n << 32n) | 2n);
  });

  it.each([
    '',
    '1/',
    '/1',
    'G/1',
    '1/G',
    '1/2/3',
    '123456789/0',
    '0/123456789',
    '-1/0',
    '1 /2',
    '0x1/2',
  ])('rejects %j with a RangeError naming the text', (text) => {
    expect(() => parseLsn(text)).toThrow(RangeError);
    expect(() => parseLsn(text)).toThrow(JSON.stringify(text));
    expect(isLsn(text)).toBe(false);
  });

  it('isLsn accepts what parseLsn accepts', () => {
    expect(isLsn('0/0')).toBe(true);
    expect(isLsn('ffffffff/ffffffff')).toBe(true);
  });

  it('formatLsn rejects values outside 64 unsigned bits', () => {
    expect(() => formatLsn(-1n)).toThrow(RangeError);
    expect(() => formatLsn(1n << 64n)).toThrow(RangeError);
  });

  it('parseLsnOrNull maps SQL NULL to null', () => {
    expect(parseLsnOrNull(null)).toBeNull();
    expect(parseLsnOrNull(undefined)).toBeNull();
    expect(parseLsnOrNull('0/10')).toBe(16n);
    expect(() => parseLsnOrNull('x')).toThrow(RangeError);
  });
});

describe('comparisons', () => {
  it('orders across the 32-bit boundary numerically, not textually', () => {
    const low = parseLsn('0/FFFFFFFF');
    const high = parseLsn('1/0');
    expect(high > low).toBe(true);
    expect(lsnDiff(high, low)).toBe(1n);
    expect(lsnDiff(low, high)).toBe(-1n);
    expect(parseLsn('A/0') > parseLsn('9/FFFFFFFF')).toBe(true);
  });

  it('minLsn is the smallest, null when empty', () => {
    expect(minLsn([])).toBeNull();
    expect(minLsn([5n, 2n, 9n])).toBe(2n);
    expect(minLsn(new Set([parseLsn('1/0'), parseLsn('0/FFFFFFFF')]))).toBe(0xffff_ffffn);
    expect(minLsn([ZERO_LSN, 3n])).toBe(0n);
  });

  it('maxLsn is the larger of two', () => {
    expect(maxLsn(1n, 2n)).toBe(2n);
    expect(maxLsn(2n, 1n)).toBe(2n);
    expect(maxLsn(7n, 7n)).toBe(7n);
  });

  it('lsnDiff counts bytes over the full 64-bit range', () => {
    expect(lsnDiff(parseLsn('FFFFFFFF/FFFFFFFF'), ZERO_LSN)).toBe(0xffff_ffff_ffff_ffffn);
    expect(lsnDiff(parseLsn('0/200'), parseLsn('0/100'))).toBe(256n);
  });
});
