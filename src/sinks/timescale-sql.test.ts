import { describe, expect, it } from 'vitest';
import { textArray } from './timescale-sql.js';

describe('textArray', () => {
  it('quotes every element, escaping quotes and backslashes', () => {
    expect(textArray([])).toBe('{}');
    expect(textArray(['a'])).toBe('{"a"}');
    expect(textArray(['0x1-0', 'NULL', '', 'a,b', '{x}'])).toBe('{"0x1-0","NULL","","a,b","{x}"}');
    expect(textArray(['plain', 'q"uote', 'back\\slash'])).toBe(
      '{"plain","q\\"uote","back\\\\slash"}',
    );
  });
});
