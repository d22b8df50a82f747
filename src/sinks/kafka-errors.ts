import type { LogEntry } from 'kafkajs';
import { AuthError, classifyError, SlotlineError } from '../errors.js';
import { scrubSecrets, type Logger } from '../log.js';

/** Protocol errors that mean the producer's id or sequence numbers went bad: start a new producer. */
const PRODUCER_STATE = new Set([
  'OUT_OF_ORDER_SEQUENCE_NUMBER',
  'DUPLICATE_SEQUENCE_NUMBER',
  'INVALID_PRODUCER_EPOCH',
  'INVALID_PRODUCER_ID_MAPPING',
  'UNKNOWN_PRODUCER_ID',
  'PRODUCER_FENCED',
]);

/** Protocol errors an operator must fix; retrying cannot help. */
const FATAL = new Set([
  'TOPIC_AUTHORIZATION_FAILED',
  'CLUSTER_AUTHORIZATION_FAILED',
  'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
  'SASL_AUTHENTICATION_FAILED',
  'UNSUPPORTED_SASL_MECHANISM',
  'ILLEGAL_SASL_STATE',
  'MESSAGE_TOO_LARGE',
  'RECORD_LIST_TOO_LARGE',
  'INVALID_RECORD',
  'INVALID_TOPIC_EXCEPTION',
  'INVALID_REQUIRED_ACKS',
  'INVALID_PARTITIONS',
  'INVALID_REPLICATION_FACTOR',
  'INVALID_CONFIG',
  'POLICY_VIOLATION',
  'UNSUPPORTED_VERSION',
  'UNSUPPORTED_FOR_MESSAGE_FORMAT',
  'SECURITY_DISABLED',
]);

/** kafkajs errors of a broker that is down, slow or electing (kafkajs gives up on these only after retrying). */
const TRANSIENT = new Set([
  'KafkaJSNumberOfRetriesExceeded',
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSRequestTimeoutError',
  'KafkaJSBrokerNotFound',
  'KafkaJSNoBrokerAvailableError',
  'KafkaJSMetadataNotLoaded',
  'KafkaJSTopicMetadataNotLoaded',
  'KafkaJSLockTimeout',
  'KafkaJSTimeout',
  // The transaction (or group) coordinator is not known while its broker is down or loading.
  'KafkaJSGroupCoordinatorNotFound',
  'KafkaJSStaleTopicMetadataAssignment',
]);

interface KafkaJsErrorLike {
  name?: string;
  message?: string;
  type?: string;
  retriable?: boolean;
  code?: string | number;
  cause?: unknown;
  originalError?: unknown;
}

/** The error and what it wraps (kafkajs nests the last attempt's error in `cause`). */
function chain(err: unknown): KafkaJsErrorLike[] {
  const out: KafkaJsErrorLike[] = [];
  let e: unknown = err;
  while (e !== null && typeof e === 'object' && out.length < 8 && !out.includes(e)) {
    const x = e as KafkaJsErrorLike;
    out.push(x);
    e = x.cause ?? x.originalError;
  }
  return out;
}

function describe(errs: KafkaJsErrorLike[]): string {
  const parts: string[] = [];
  for (const e of errs) {
    const text = e.type && !e.message?.includes(e.type) ? `${e.message} (${e.type})` : e.message;
    if (text && !parts.includes(text)) parts.push(text);
  }
  return parts.join(': ') || 'unknown error';
}

/**
 * Maps what kafkajs throws to a SlotlineError. Brokers that are down, slow,
 * electing leaders or busy are retriable (the worker backs off, nothing is
 * acknowledged meanwhile); refused credentials, missing rights and records the
 * brokers reject are not. Other protocol errors are retried too (an operator
 * sees the warnings, and no change is lost while they look); an argument
 * kafkajs itself refuses is a bug, and stops the connector.
 */
export function classifyKafkaError(err: unknown): SlotlineError {
  if (err instanceof SlotlineError) return err;
  const errs = chain(err);
  const message = `kafka: ${describe(errs)}`;
  if (errs.some((e) => e.name === 'KafkaJSSASLAuthenticationError'))
    return new AuthError(message, err);
  const fatal = errs.find((e) => e.type !== undefined && FATAL.has(e.type));
  if (fatal) {
    return fatal.type === 'SASL_AUTHENTICATION_FAILED'
      ? new AuthError(message, err)
      : new SlotlineError(`kafka_${(fatal.type as string).toLowerCase()}`, message, { cause: err });
  }
  const transient = errs.some(
    (e) => e.retriable === true || e.type !== undefined || TRANSIENT.has(e.name ?? ''),
  );
  if (transient) {
    return new SlotlineError('kafka_unavailable', message, { retriable: true, cause: err });
  }
  if (errs.some((e) => e.name?.startsWith('KafkaJS'))) {
    // kafkajs refused the request itself (a bad argument): a bug, retrying cannot help.
    return new SlotlineError('kafka_error', message, { cause: err });
  }
  // Not from kafkajs: a socket error is still retriable, a bug is not.
  return classifyError(err, 'kafka');
}

/** Whether the producer must be replaced before the next attempt. */
export function needsNewProducer(err: unknown): boolean {
  return chain(err).some(
    (e) =>
      (e.type !== undefined && PRODUCER_STATE.has(e.type)) ||
      /producer is disconnect/i.test(e.message ?? ''),
  );
}

/** kafkajs' idempotent producer warns when its retries are bounded; ours are, on purpose. */
const EXPECTED = new Set([
  'Limiting retries for the idempotent producer may invalidate EoS guarantees',
]);
/**
 * A transaction started while the brokers still write the previous one's
 * markers is refused with CONCURRENT_TRANSACTIONS and retried a few ms later:
 * routine under load, not worth a warning.
 */
const CONCURRENT = /another concurrent operation on the same transaction/;
/** The same kafkajs message is logged at most once per this interval. */
const REPEAT_MS = 30_000;

/**
 * kafkajs' log lines (warn and error only) as pino warnings: the retry loop
 * reports failures itself, so these are context. Only a few known fields are
 * kept, secrets are scrubbed, and a message repeating while a broker is down
 * is logged once per 30 s with the count of those suppressed.
 */
export function kafkaLogger(
  log: Logger,
  secrets: readonly string[],
  now: () => number = Date.now,
): (entry: LogEntry) => void {
  const seen = new Map<string, { at: number; suppressed: number }>();
  return ({ namespace, log: line }) => {
    const { message } = line;
    if (EXPECTED.has(message)) return;
    if (CONCURRENT.test(message) || CONCURRENT.test(String(line.error ?? ''))) return;
    const key = `${namespace}\u0000${message}`;
    const t = now();
    const last = seen.get(key);
    if (last && t - last.at < REPEAT_MS) {
      last.suppressed += 1;
      return;
    }
    if (seen.size > 1000) seen.clear();
    seen.set(key, { at: t, suppressed: 0 });
    const fields: Record<string, unknown> = { kafkajs: namespace };
    for (const k of ['broker', 'clientId', 'error', 'retryCount', 'retryTime', 'topic'] as const) {
      const v: unknown = line[k];
      if (v !== undefined) fields[k] = typeof v === 'string' ? scrubSecrets(v, secrets) : v;
    }
    if (last && last.suppressed > 0) fields.suppressed = last.suppressed;
    log.warn(fields, scrubSecrets(message, secrets));
  };
}

/** Another producer of the same transactional id has initialized since (or the brokers expired ours). */
const FENCED = new Set([
  'INVALID_PRODUCER_EPOCH',
  'PRODUCER_FENCED',
  'TRANSACTION_COORDINATOR_FENCED',
]);

/** Whether `err` says this transactional producer is fenced. */
export function isFenced(err: unknown): boolean {
  return chain(err).some(
    (e) =>
      (e.type !== undefined && FENCED.has(e.type)) ||
      // PRODUCER_FENCED (90) is newer than kafkajs' table of error codes.
      (e.type === 'KAFKAJS_UNKNOWN_ERROR_CODE' && e.code === 90),
  );
}
