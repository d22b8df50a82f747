/**
 * The benchmark's Debezium side, the parts that are pure: reading the embedded
 * program's output, its timing, and the properties files handed to Debezium
 * and Kafka Connect (a password with special characters must reach the JVM
 * unchanged).
 */
import { describe, expect, it } from 'vitest';
import {
  connectorProperties,
  engineProperties,
  engineTiming,
  parseEngineLine,
  pgConn,
  toProperties,
  workerProperties,
} from '../../bench/debezium.js';

/** java.util.Properties' reading of what toProperties writes, for the characters it escapes. */
function readProperties(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let key = '';
    let i = 0;
    for (; i < line.length; i++) {
      const c = line[i] as string;
      if (c === '\\') key += unescape(line[++i] as string);
      else if (c === '=' || c === ':') break;
      else key += c;
    }
    let value = '';
    for (i++; i < line.length; i++) {
      const c = line[i] as string;
      value += c === '\\' ? unescape(line[++i] as string) : c;
    }
    out[key] = value;
  }
  return out;
}

function unescape(c: string): string {
  return ({ n: '\n', r: '\r', t: '\t' } as Record<string, string>)[c] ?? c;
}

describe('the embedded program output', () => {
  it('reads task-started and done lines, ignores the rest', () => {
    expect(parseEngineLine('{"event":"task-started","atMs":1234.5}')).toEqual({
      event: 'task-started',
      atMs: 1234.5,
    });
    const done = parseEngineLine(
      '{"event":"done","count":500000,"taskStartedAtMs":1000.0,"firstAtMs":1500.0,"lastAtMs":21000.0,"snapshotReads":0}',
    );
    expect(done).toEqual({
      event: 'done',
      count: 500000,
      taskStartedAtMs: 1000,
      firstAtMs: 1500,
      lastAtMs: 21000,
      snapshotReads: 0,
    });
    expect(parseEngineLine('{"event":"failed","message":"slot \\"x\\" is active"}')).toEqual({
      event: 'failed',
      message: 'slot "x" is active',
    });
    expect(parseEngineLine('[main] INFO io.debezium.Foo - {"event":"done"}')).toBeNull();
    expect(parseEngineLine('{"event":"done",')).toBeNull();
    expect(parseEngineLine('{"event":"other"}')).toBeNull();
  });

  it('times from the task start, or from the first record when the start is unknown', () => {
    const d = {
      event: 'done' as const,
      count: 10,
      taskStartedAtMs: 1000,
      firstAtMs: 1500,
      lastAtMs: 21000,
      snapshotReads: 0,
    };
    expect(engineTiming(d)).toEqual({ seconds: 20, firstToLastSeconds: 19.5 });
    // The program writes null for a task that never reported its start.
    const noStart = parseEngineLine(
      '{"event":"done","count":10,"taskStartedAtMs":null,"firstAtMs":1500,"lastAtMs":21000,"snapshotReads":0}',
    );
    expect(noStart?.event).toBe('done');
    if (noStart?.event === 'done') expect(engineTiming(noStart).seconds).toBe(19.5);
  });
});

describe('the properties files', () => {
  const conn = pgConn('postgres://slot%20user:p%40ss%3Dw%3Ard%23!@127.0.0.1:40001/bench_src');

  it('takes the connection from the URL, decoded', () => {
    expect(conn).toEqual({
      host: '127.0.0.1',
      port: '40001',
      user: 'slot user',
      password: 'p@ss=w:rd#!',
      dbname: 'bench_src',
    });
  });

  it('round-trips keys and values through java.util.Properties escaping', () => {
    const p = { 'a key=with:specials': ' leading space, = and : inside\tand\\', plain: 'x' };
    expect(readProperties(toProperties(p))).toEqual(p);
    const engine = engineProperties(conn, 'dbz_embedded', 'bench', 'dbz_embedded');
    expect(readProperties(toProperties(engine))['database.password']).toBe('p@ss=w:rd#!');
  });

  it('streams from the existing slot and publication, without a snapshot', () => {
    for (const p of [
      engineProperties(conn, 's', 'bench', 's'),
      connectorProperties('defaults', conn, 's', 'bench', 's'),
      connectorProperties('tuned', conn, 's', 'bench', 's'),
    ]) {
      expect(p).toMatchObject({
        'plugin.name': 'pgoutput',
        'slot.name': 's',
        'publication.name': 'bench',
        'publication.autocreate.mode': 'disabled',
        'snapshot.mode': 'no_data',
      });
    }
  });

  it('differs between defaults and tuned only in converters and batching', () => {
    const d = workerProperties('defaults', 'b:9092', '/tmp/o', 1);
    const t = workerProperties('tuned', 'b:9092', '/tmp/o', 1);
    expect(d['value.converter.schemas.enable']).toBe('true');
    expect(t['value.converter.schemas.enable']).toBe('false');
    expect(d['producer.batch.size']).toBeUndefined();
    expect(Number(t['producer.batch.size'])).toBeGreaterThan(16_384);
    const dc = connectorProperties('defaults', conn, 's', 'bench', 's');
    const tc = connectorProperties('tuned', conn, 's', 'bench', 's');
    expect(dc['max.batch.size']).toBeUndefined();
    expect(Number(tc['max.queue.size'])).toBeGreaterThan(Number(tc['max.batch.size']));
  });
});
