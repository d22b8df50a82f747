import { describe, expect, it } from 'vitest';
import { SlotlineError } from '../errors.js';
import { formatChecks, formatError } from './report.js';
import { ChecksFailed, assertPassed, failed, ok, warning } from './result.js';

const wrongPassword = new SlotlineError('auth_failed', 'source: authentication failed', {
  remedy: { side: 'source', variable: 'SLOTLINE_SOURCE_URL', fix: 'correct the password' },
});
const noDb = new SlotlineError('database_missing', 'sink: database "x" does not exist', {
  retriable: false,
  remedy: { side: 'sink', variable: 'SLOTLINE_SINK_URL', fix: 'create it' },
});

describe('formatError', () => {
  it('puts the code, side, variable and Fix on lines of their own', () => {
    expect(formatError(wrongPassword)).toBe(
      [
        'source: authentication failed',
        '  code: auth_failed',
        '  side: source',
        '  variable: SLOTLINE_SOURCE_URL',
        '  Fix: correct the password',
      ].join('\n'),
    );
    expect(wrongPassword.message).toBe('source: authentication failed. Fix: correct the password');
  });

  it('an error without a fix still names its code', () => {
    expect(formatError(new SlotlineError('protocol', 'bad byte'))).toBe(
      'bad byte\n  code: protocol',
    );
  });

  it('several failures: each block, indented', () => {
    const text = formatError(new ChecksFailed([wrongPassword, noDb]));
    expect(text.split('\n')[0]).toBe('2 checks failed:');
    expect(text).toContain('  sink: database "x" does not exist\n    code: database_missing');
  });
});

describe('assertPassed', () => {
  it('throws the one failure as it is, several as ChecksFailed, none when only warnings', () => {
    const warn = warning('max_slot_wal_keep_size', noDb);
    expect(() => assertPassed([ok('source', 'wal_level', 'logical'), warn])).not.toThrow();
    expect(() => assertPassed([failed('connect', wrongPassword), warn])).toThrow(wrongPassword);
    const both = (() => {
      try {
        assertPassed([failed('connect', wrongPassword), failed('connect', noDb)]);
      } catch (e) {
        return e;
      }
    })();
    expect(both).toBeInstanceOf(ChecksFailed);
    expect((both as ChecksFailed).retriable).toBe(false);
  });
});

describe('formatChecks', () => {
  it('one line per check, the fix under the ones that are not ok, and a verdict', () => {
    const text = formatChecks([
      ok('source', 'wal_level', 'logical'),
      failed('connect', noDb),
      warning('slots', wrongPassword),
    ]);
    expect(text).toBe(
      [
        'source wal_level  ok    logical',
        'sink   connect    FAIL  database "x" does not exist',
        '                        code: database_missing',
        '                        variable: SLOTLINE_SINK_URL',
        '                        Fix: create it',
        'source slots      warn  authentication failed',
        '                        code: auth_failed',
        '                        variable: SLOTLINE_SOURCE_URL',
        '                        Fix: correct the password',
        '',
        '3 checks, 1 failed, 1 warning: fix the failures above, then run `slotline check` again; setup changes nothing until they pass',
      ].join('\n'),
    );
  });
});
