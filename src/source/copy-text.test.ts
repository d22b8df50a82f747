import { describe, expect, it } from 'vitest';
import { parseCopyTextRow } from './copy-text.js';

const row = (s: string) => parseCopyTextRow(Buffer.from(s, 'latin1'));

describe('parseCopyTextRow', () => {
  it('parses a row captured from PostgreSQL 15', () => {
    // COPY (SELECT E'a\tb\nc\\d\r\b\f' || chr(11), NULL, '', 'prix 5€ — ü',
    //   <uint256 max>::numeric(78,0), E'\\N', 'x') TO STDOUT
    const chunk = Buffer.from(
      '615c74625c6e635c5c645c725c625c665c76095c4e0909707269782035e282ac20e2809420c3bc09313135' +
        '373932303839323337333136313935343233353730393835303038363837393037383533323639393834' +
        '363635363430353634303339343537353834303037393133313239363339393335095c5c4e09780a',
      'hex',
    );
    expect(parseCopyTextRow(chunk)).toEqual([
      'a\tb\nc\\d\r\b\f\v',
      null,
      '',
      'prix 5€ — ü',
      '115792089237316195423570985008687907853269984665640564039457584007913129639935',
      '\\N',
      'x',
    ]);
  });

  it('splits on tabs, with or without the final newline', () => {
    expect(row('a\tbc\t\td\n')).toEqual(['a', 'bc', '', 'd']);
    expect(row('a\tb')).toEqual(['a', 'b']);
    expect(row('\n')).toEqual(['']);
    expect(row('\t\n')).toEqual(['', '']);
    expect(row('\\N\n')).toEqual([null]);
    expect(row('\\N\t\\N\n')).toEqual([null, null]);
  });

  it('decodes escapes as the server does', () => {
    // COPY FROM on PostgreSQL 15 reads this field as bytes 41 42 07 08 31 78 5a 71 e2 82 ac 4e 04.
    expect(row('\\101\\x42\\7\\0101\\xZ\\q\\xe2\\x82\\xac\\N\\x4\n')).toEqual([
      'AB\x07\x081xZq€N\x04',
    ]);
    expect(row('\\b\\f\\n\\r\\t\\v\\\\\n')).toEqual(['\b\f\n\r\t\v\\']);
    expect(row('\\xAf\\x0G\n')).toEqual([Buffer.from([0xaf, 0x00, 0x47]).toString('utf8')]);
    expect(row('\\477\n')).toEqual(['?']); // the low byte of octal 477
    expect(row('a\\\n')).toEqual(['a\\']); // a lone trailing backslash stays
    expect(row('plain\tesc\\tape\tplain again\n')).toEqual(['plain', 'esc\tape', 'plain again']);
  });

  it('returns strings that do not reference the chunk', () => {
    const chunk = Buffer.from('abc\tx\\ty\t\\N\n');
    const fields = parseCopyTextRow(chunk);
    chunk.fill(0);
    expect(fields).toEqual(['abc', 'x\ty', null]);
  });
});
