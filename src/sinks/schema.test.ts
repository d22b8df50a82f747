import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { interval, splitSql } from './schema.js';

describe('splitSql', () => {
  it('splits on top-level semicolons and trims', () => {
    expect(splitSql('SELECT 1;\n  SELECT 2 ;SELECT 3')).toEqual([
      'SELECT 1',
      'SELECT 2',
      'SELECT 3',
    ]);
  });

  it('drops empty pieces', () => {
    expect(splitSql(';;  ;\n')).toEqual([]);
    expect(splitSql('')).toEqual([]);
  });

  it("keeps ';' inside single quotes, with doubled quotes", () => {
    expect(splitSql("SELECT 'a;b', 'it''s; fine';SELECT ''")).toEqual([
      "SELECT 'a;b', 'it''s; fine'",
      "SELECT ''",
    ]);
  });

  it("keeps ';' inside double-quoted identifiers", () => {
    expect(splitSql('SELECT 1 AS "a;""b";SELECT 2')).toEqual(['SELECT 1 AS "a;""b"', 'SELECT 2']);
  });

  it("keeps ';' inside $$ and $tag$ bodies", () => {
    const doBlock = "DO $$ BEGIN PERFORM 1; RAISE NOTICE 'x;y'; END $$";
    const fn =
      'CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$ BEGIN RETURN 1; END $body$';
    expect(splitSql(`${doBlock};\n${fn};\nSELECT 3;`)).toEqual([doBlock, fn, 'SELECT 3']);
  });

  it('a $tag$ body may contain $$', () => {
    const s = 'DO $outer$ BEGIN EXECUTE $$SELECT 1; SELECT 2$$; END $outer$';
    expect(splitSql(`${s}; SELECT 4`)).toEqual([s, 'SELECT 4']);
  });

  it('does not treat $1 parameters as dollar quotes', () => {
    expect(splitSql('SELECT $1; SELECT $2')).toEqual(['SELECT $1', 'SELECT $2']);
  });

  it("keeps ';' inside -- and /* */ comments", () => {
    expect(splitSql('SELECT 1 -- one; two\n, 2;\nSELECT /* a; b */ 3;')).toEqual([
      'SELECT 1 -- one; two\n, 2',
      'SELECT /* a; b */ 3',
    ]);
  });

  it('drops pieces that are only -- comments', () => {
    expect(splitSql('-- header; note\nSELECT 1;\n-- trailing; comment\n')).toEqual([
      '-- header; note\nSELECT 1',
    ]);
  });

  // BUG: push() only strips `--` comments when deciding whether a piece is empty,
  // so a trailing block comment is returned as a statement of its own.
  it('drops pieces that are only /* */ comments', () => {
    expect(splitSql('SELECT 1;\n/* the end; really */\n')).toEqual(['SELECT 1']);
  });

  // BUG: the dollar-quote tag pattern /^\$[A-Za-z_]*\$/ rejects digits, which
  // PostgreSQL allows after the first character ($fn1$).
  it('keeps a $tag1$ body whole', () => {
    const s = 'DO $fn1$ BEGIN PERFORM 1; END $fn1$';
    expect(splitSql(`${s}; SELECT 2`)).toEqual([s, 'SELECT 2']);
  });
});

describe('interval', () => {
  it('names the columnstore age in its largest whole unit, as the policy shows it', () => {
    expect(interval(7 * 86_400)).toBe('7 days');
    expect(interval(36 * 3_600)).toBe('36 hours');
    expect(interval(3_660)).toBe('61 minutes');
    expect(interval(3_601)).toBe('3601 seconds');
    expect(interval(0)).toBe(''); // no policy
  });
});

describe('splitSql on sql/', () => {
  const dir = new URL('../../sql/', import.meta.url);
  const files = readdirSync(dir).filter((f) => f.endsWith('.sql'));
  const stripComments = (s: string) =>
    s
      .replace(/--[^\n]*/g, '')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .trim();

  it('finds the SQL files', () => {
    expect(files).toEqual(
      expect.arrayContaining([
        '001_connector.sql',
        '002_sink_tables.sql',
        '003_ohlcv_plain.sql',
        '003_ohlcv_timescale.sql',
        '004_columnstore_timescale.sql',
      ]),
    );
  });

  it.each(files)('%s splits into whole statements', (file) => {
    const text = readFileSync(new URL(file, dir), 'utf8');
    const stmts = splitSql(text);
    expect(stmts.length).toBeGreaterThan(0);
    for (const s of stmts) {
      expect(stripComments(s)).toMatch(/^(CREATE|SELECT|DO|ALTER|DROP|INSERT|COMMENT)\b/i);
      expect(s.endsWith(';')).toBe(false);
      // balanced parentheses: no statement cut in half
      const body = stripComments(s).replace(/'(?:[^']|'')*'/g, "''");
      expect(body.split('(').length).toBe(body.split(')').length);
    }
    // nothing is lost: the pieces add back up to the file, minus comments and separators
    const squash = (x: string) => stripComments(x).replace(/[;\s]/g, '');
    expect(stmts.map(squash).join('')).toBe(squash(text));
  });

  it('keeps each DO block whole', () => {
    let blocks = 0;
    for (const file of files) {
      for (const s of splitSql(readFileSync(new URL(file, dir), 'utf8'))) {
        const m = /^DO\s+(\$[A-Za-z_]*\$)/m.exec(stripComments(s));
        if (!m) continue;
        blocks++;
        const tag = m[1]!;
        expect(s.split(tag)).toHaveLength(3);
        expect(s.trimEnd().endsWith(`END ${tag}`)).toBe(true);
      }
    }
    expect(blocks).toBeGreaterThan(0);
  });

  it('splits the known files into their statements', () => {
    const count = (f: string) => splitSql(readFileSync(new URL(f, dir), 'utf8')).length;
    expect(count('001_connector.sql')).toBeGreaterThanOrEqual(4);
    expect(count('002_sink_tables.sql')).toBeGreaterThanOrEqual(4);
    expect(count('003_ohlcv_plain.sql')).toBeGreaterThanOrEqual(2);
    expect(count('003_ohlcv_timescale.sql')).toBeGreaterThanOrEqual(6);
  });
});
