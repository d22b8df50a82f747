import { describe, expect, it } from 'vitest';
import {
  AuthError,
  ConnectionError,
  SinkSchemaError,
  SlotInUseError,
  SlotlineError,
  classifyError,
} from './errors.js';

const pgError = (code: string, message: string) => Object.assign(new Error(message), { code });

describe('classifyError', () => {
  it('28P01 is a non-retriable AuthError', () => {
    const cause = pgError('28P01', 'password authentication failed for user "u"');
    const e = classifyError(cause, 'source');
    expect(e).toBeInstanceOf(AuthError);
    expect(e.retriable).toBe(false);
    expect(e.code).toBe('auth_failed');
    expect(e.message).toMatch(/^source: .*password authentication failed/);
    expect(e.cause).toBe(cause);
  });

  it('55006 "slot is active" is a retriable SlotInUseError', () => {
    const e = classifyError(pgError('55006', 'replication slot "x" is active for PID 1'), 'source');
    expect(e).toBeInstanceOf(SlotInUseError);
    expect(e.retriable).toBe(true);
    expect(e.code).toBe('slot_in_use');
  });

  it('a slot dropped or invalidated under the stream names the recovery', () => {
    const gone = classifyError(pgError('42704', 'replication slot "s" does not exist'), 'source');
    expect(gone.code).toBe('slot_missing');
    expect(gone.retriable).toBe(false);
    expect(gone.message).toMatch(/slotline setup --resnapshot/);
    const lost = classifyError(
      pgError('55000', 'can no longer get changes from replication slot "s"'),
      'source',
    );
    expect(lost.code).toBe('slot_invalidated');
    expect(lost.message).toMatch(/slotline setup --resnapshot/);
  });

  it('ECONNREFUSED is a retriable ConnectionError', () => {
    const e = classifyError(
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), {
        code: 'ECONNREFUSED',
        errno: -111,
        syscall: 'connect',
      }),
      'sink',
    );
    expect(e).toBeInstanceOf(ConnectionError);
    expect(e.retriable).toBe(true);
    expect(e.message).toContain('sink');
  });

  it('a terminated connection without a code is a ConnectionError', () => {
    const e = classifyError(new Error('Connection terminated unexpectedly'), 'source');
    expect(e).toBeInstanceOf(ConnectionError);
    expect(e.retriable).toBe(true);
  });

  it('42P01 is a non-retriable SinkSchemaError', () => {
    const e = classifyError(pgError('42P01', 'relation "analytics_trades" does not exist'), 'sink');
    expect(e).toBeInstanceOf(SinkSchemaError);
    expect(e.retriable).toBe(false);
  });

  it.each(['40001', '40P01', '08006', '53300', '57P01'])('SQLSTATE %s is retriable', (code) => {
    const e = classifyError(pgError(code, 'transient'), 'sink');
    expect(e.retriable).toBe(true);
    expect(e.code).toBe(`pg_${code}`);
  });

  it('unknown errors are not retriable', () => {
    expect(classifyError(new Error('boom'), 'x')).toMatchObject({
      retriable: false,
      code: 'unexpected',
    });
    expect(classifyError(pgError('23505', 'duplicate key'), 'x')).toMatchObject({
      retriable: false,
      code: 'pg_23505',
    });
    const e = classifyError('a string', 'x');
    expect(e.retriable).toBe(false);
    expect(e.message).toBe('x: a string');
    expect(classifyError(undefined, 'x').retriable).toBe(false);
  });

  it('returns a SlotlineError unchanged', () => {
    const original = new ConnectionError('down');
    expect(classifyError(original, 'x')).toBe(original);
    expect(original).toBeInstanceOf(SlotlineError);
    expect(original.name).toBe('ConnectionError');
  });
  it('treats a pg client that lost its connection as retriable', () => {
    for (const message of [
      'Client has encountered a connection error and is not queryable',
      'Connection terminated unexpectedly',
      'the database system is shutting down',
    ]) {
      const e = classifyError(new Error(message), 'sink');
      expect(e.retriable, message).toBe(true);
      expect(e.code).toBe('connection');
    }
  });
});
