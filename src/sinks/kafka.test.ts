import {
  KafkaJSConnectionError,
  KafkaJSError,
  KafkaJSGroupCoordinatorNotFound,
  KafkaJSNonRetriableError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSProtocolError,
  KafkaJSSASLAuthenticationError,
  logLevel,
} from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config.js';
import { SlotlineError } from '../errors.js';
import { createLogger } from '../log.js';
import { createSinks } from './index.js';
import { classifyKafkaError, isFenced, kafkaLogger, needsNewProducer } from './kafka-errors.js';

/** A protocol error as kafkajs builds it from a broker's error code. */
function protocol(type: string, retriable: boolean): KafkaJSProtocolError {
  return new KafkaJSProtocolError({
    message: `broker says ${type}`,
    type,
    code: 1,
    retriable,
  } as unknown as string);
}

/** What kafkajs' retrier throws once its attempts are spent. */
function exhausted(last: Error): KafkaJSNumberOfRetriesExceeded {
  return new KafkaJSNumberOfRetriesExceeded(last, { retryCount: 4, retryTime: 2000 });
}

/** How kafkajs' retrier passes on an error it does not retry: wrapped, with the original as cause. */
function wrapped(e: Error): KafkaJSNonRetriableError {
  const Ctor = KafkaJSNonRetriableError as unknown as new (
    e: Error,
    meta: { cause: Error },
  ) => KafkaJSNonRetriableError;
  return new Ctor(e, { cause: e });
}

describe('classifyKafkaError', () => {
  it('a broker that is down is retriable, also once kafkajs gave up retrying', () => {
    const refused = new KafkaJSConnectionError(
      'Connection error: connect ECONNREFUSED 127.0.0.1:9092',
    );
    for (const err of [refused, exhausted(refused), wrapped(exhausted(refused))]) {
      const e = classifyKafkaError(err);
      expect(e).toBeInstanceOf(SlotlineError);
      expect(e.retriable).toBe(true);
      expect(e.code).toBe('kafka_unavailable');
      expect(e.message).toMatch(/^kafka: .*ECONNREFUSED/);
    }
  });

  it('leader elections, timeouts and other kafkajs trouble are retriable', () => {
    expect(classifyKafkaError(protocol('NOT_LEADER_FOR_PARTITION', true)).retriable).toBe(true);
    expect(classifyKafkaError(exhausted(protocol('REQUEST_TIMED_OUT', true))).retriable).toBe(true);
    // kafkajs calls this one non-retriable; for a sink it is a broker that is not there yet.
    expect(classifyKafkaError(protocol('BROKER_NOT_AVAILABLE', false)).retriable).toBe(true);
    expect(classifyKafkaError(new KafkaJSError('The producer is disconnected')).retriable).toBe(
      true,
    );
    // A transaction coordinator not found (its broker down or loading) is not a bug either.
    // (kafkajs' typings omit this constructor's message argument)
    const coordinator = new (
      KafkaJSGroupCoordinatorNotFound as unknown as new (m: string) => Error
    )('Failed to find group coordinator');
    expect(classifyKafkaError(coordinator).retriable).toBe(true);
  });

  it('refused credentials, missing rights and rejected records are not retriable', () => {
    const auth = classifyKafkaError(
      // (kafkajs' typings omit this constructor's message argument)
      new (KafkaJSSASLAuthenticationError as unknown as new (m: string) => Error)(
        'SASL SCRAM SHA256 authentication failed',
      ),
    );
    expect(auth.retriable).toBe(false);
    expect(auth.code).toBe('auth_failed');
    const acl = classifyKafkaError(exhausted(protocol('TOPIC_AUTHORIZATION_FAILED', false)));
    expect(acl.retriable).toBe(false);
    expect(acl.code).toBe('kafka_topic_authorization_failed');
    expect(acl.message).toContain('TOPIC_AUTHORIZATION_FAILED');
    expect(classifyKafkaError(protocol('MESSAGE_TOO_LARGE', false)).retriable).toBe(false);
  });

  it('sockets are retriable, bugs (ours or a request kafkajs refuses) are not', () => {
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    expect(classifyKafkaError(reset).retriable).toBe(true);
    expect(classifyKafkaError(new TypeError('x is undefined')).retriable).toBe(false);
    const refused = classifyKafkaError(new KafkaJSNonRetriableError('Invalid topic'));
    expect(refused.retriable).toBe(false);
    expect(refused.code).toBe('kafka_error');
    const own = new SlotlineError('kafka_topic_missing', 'topic missing', { retriable: true });
    expect(classifyKafkaError(own)).toBe(own);
  });
});

describe('needsNewProducer', () => {
  it('only when the producer id or its sequence numbers went bad', () => {
    expect(needsNewProducer(exhausted(protocol('OUT_OF_ORDER_SEQUENCE_NUMBER', false)))).toBe(true);
    expect(needsNewProducer(protocol('UNKNOWN_PRODUCER_ID', true))).toBe(true);
    expect(needsNewProducer(new KafkaJSError('The producer is disconnected'))).toBe(true);
    // A broker that is down: keep the producer, so a re-send reuses its sequence numbers.
    expect(needsNewProducer(exhausted(new KafkaJSConnectionError('Connection error')))).toBe(false);
    expect(needsNewProducer(protocol('NOT_LEADER_FOR_PARTITION', true))).toBe(false);
  });
});

describe('isFenced', () => {
  it('another producer of the transactional id took over (or the brokers expired ours)', () => {
    expect(isFenced(exhausted(protocol('INVALID_PRODUCER_EPOCH', false)))).toBe(true);
    expect(isFenced(wrapped(protocol('PRODUCER_FENCED', false)))).toBe(true);
    expect(isFenced(protocol('NOT_LEADER_FOR_PARTITION', true))).toBe(false);
    expect(isFenced(new KafkaJSConnectionError('Connection error'))).toBe(false);
  });
});

describe('kafkaLogger', () => {
  function capture() {
    const lines: Record<string, unknown>[] = [];
    const log = createLogger({
      level: 'debug',
      destination: { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) },
    });
    return { log, lines };
  }
  const entry = (message: string, extra: Record<string, unknown> = {}) => ({
    namespace: 'Connection',
    level: logLevel.ERROR,
    label: 'ERROR',
    log: { timestamp: 'now', message, ...extra },
  });

  it('logs warnings with known fields only, and scrubs secrets', () => {
    const { log, lines } = capture();
    const write = kafkaLogger(log, ['hunter2-password']);
    write(
      entry('auth failed for hunter2-password', {
        broker: 'b:9092',
        error: 'bad hunter2-password',
        payload: { price: '1' },
      }),
    );
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'warn', kafkajs: 'Connection', broker: 'b:9092' });
    expect(lines[0]?.payload).toBeUndefined();
    expect(JSON.stringify(lines[0])).not.toContain('hunter2');
  });

  it('logs a repeating message once per 30 s, then says how many were suppressed', () => {
    const { log, lines } = capture();
    let t = 0;
    const write = kafkaLogger(log, [], () => t);
    for (let i = 0; i < 50; i++) {
      write(entry('Connection error: connect ECONNREFUSED'));
      t += 100;
    }
    expect(lines).toHaveLength(1);
    t = 31_000;
    write(entry('Connection error: connect ECONNREFUSED'));
    expect(lines).toHaveLength(2);
    expect(lines[1]?.suppressed).toBe(49);
  });

  it("drops kafkajs' warning about bounded idempotent retries (bounded on purpose)", () => {
    const { log, lines } = capture();
    kafkaLogger(
      log,
      [],
    )(entry('Limiting retries for the idempotent producer may invalidate EoS guarantees'));
    expect(lines).toEqual([]);
  });

  it('drops the routine CONCURRENT_TRANSACTIONS refusals between two transactions', () => {
    const { log, lines } = capture();
    const write = kafkaLogger(log, []);
    const concurrent =
      'The producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing';
    write(entry('Response AddPartitionsToTxn(key: 24, version: 1)', { error: concurrent }));
    write(entry(`Failed to send messages: ${concurrent}`));
    expect(lines).toEqual([]);
  });
});

describe('createSinks', () => {
  const base = {
    SLOTLINE_SOURCE_URL: 'postgres://u:p@source/ponder',
    SLOTLINE_SINK_URL: 'postgres://u:p@sink/analytics',
  };
  const log = createLogger({ level: 'silent' });

  it('without SLOTLINE_KAFKA_BROKERS: TimescaleDB only', () => {
    expect(createSinks(loadConfig(base), log).map((s) => s.name)).toEqual(['timescale']);
  });

  it('with brokers: TimescaleDB first, then Kafka', () => {
    const cfg = loadConfig({ ...base, SLOTLINE_KAFKA_BROKERS: 'k1:9092' });
    expect(createSinks(cfg, log).map((s) => s.name)).toEqual(['timescale', 'kafka']);
  });
});
