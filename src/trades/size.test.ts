import { describe, expect, it } from 'vitest';
import { changeBytes, CHANGE_OVERHEAD_BYTES, jsonStringBytes } from './size.js';

describe('jsonStringBytes', () => {
  it('is the serialized length, quotes and escapes included', () => {
    for (const s of ['', 'MWETH/MUSDC', 'a"b', 'back\\slash', 'line\nbreak', '\u0001', 'é€😀']) {
      expect(jsonStringBytes(s)).toBe(Buffer.byteLength(JSON.stringify(s), 'utf8'));
    }
    expect(jsonStringBytes(null)).toBe(4);
  });

  it('a 60 KiB coin counts 60 KiB in every trade of its pool', () => {
    const coin = 'C'.repeat(60 * 1024);
    expect(changeBytes(200, jsonStringBytes(coin))).toBe(
      200 + 60 * 1024 + 2 + CHANGE_OVERHEAD_BYTES,
    );
  });
});
