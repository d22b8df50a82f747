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

describe('classifyError: the mistakes an operator fixes', () => {
  const netError = (code: string, message: string) =>
    Object.assign(new Error(message), { code, syscall: 'getaddrinfo' });

  it('a wrong password names the side, the variable and the fix', () => {
    for (const [where, variable] of [
      ['source', 'SLOTLINE_SOURCE_URL'],
      ['sink', 'SLOTLINE_SINK_URL'],
    ] as const) {
      const e = classifyError(
        pgError('28P01', 'password authentication failed for user "u"'),
        where,
      );
      expect(e).toBeInstanceOf(AuthError);
      expect(e.remedy).toMatchObject({ side: where, variable });
      expect(e.message).toMatch(
        new RegExp(`^${where}: .*\\. Fix: correct the user name and password in ${variable}`),
      );
    }
  });

  it('no pg_hba.conf entry points at pg_hba.conf', () => {
    const e = classifyError(pgError('28000', 'no pg_hba.conf entry for host "10.0.0.1"'), 'source');
    expect(e.code).toBe('auth_failed');
    expect(e.remedy?.fix).toMatch(/pg_hba\.conf has no line/);
  });

  it('a missing database is database_missing, not retried', () => {
    const e = classifyError(pgError('3D000', 'database "nope" does not exist'), 'sink');
    expect(e).toMatchObject({ code: 'database_missing', retriable: false });
    expect(e.remedy).toMatchObject({ side: 'sink', variable: 'SLOTLINE_SINK_URL' });
  });

  it('a host that does not resolve is retried, and the fix mentions percent-encoding', () => {
    const e = classifyError(netError('ENOTFOUND', 'getaddrinfo ENOTFOUND ss'), 'source');
    expect(e).toBeInstanceOf(ConnectionError);
    expect(e).toMatchObject({ code: 'host_not_found', retriable: true });
    expect(e.remedy?.fix).toMatch(/percent-encode the password \(@ as %40, # as %23/);
  });

  it('privileges: publication ones on the source, schema ones on the sink', () => {
    for (const message of [
      'must be owner of publication slotline',
      'permission denied for database ponder',
      'must be owner of table order_book_trades',
    ]) {
      const e = classifyError(pgError('42501', message), 'source');
      expect(e.code, message).toBe('publication_privilege');
      expect(e.remedy).toMatchObject({ side: 'source', variable: 'SLOTLINE_PUBLICATION' });
    }
    const sink = classifyError(
      pgError('42501', 'permission denied for database analytics'),
      'sink',
    );
    expect(sink.code).toBe('sink_privilege');
    expect(sink.remedy?.fix).toMatch(/sink_role\.sql/);
  });

  it('other boundaries keep the generic mapping', () => {
    expect(classifyError(pgError('42501', 'permission denied for table x'), 'verify').code).toBe(
      'pg_42501',
    );
    expect(classifyError(pgError('3D000', 'database "x" does not exist'), 'verify').remedy).toBe(
      null,
    );
  });
});
