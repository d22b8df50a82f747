import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { Admin, ITopicConfig, Kafka, LogEntry, Message, Producer, SASLOptions } from 'kafkajs';
import pg from 'pg';
import type { Lsn } from '../checkpoint/lsn.js';
import { formatLsn } from '../checkpoint/lsn.js';
import {
  advanceCheckpoint,
  readCheckpoint,
  resetCheckpoint,
  setCheckpointState,
  type Checkpoint,
} from '../checkpoint/store.js';
import type { KafkaSasl } from '../config.js';
import { AuthError, classifyError, ConfigError, SlotlineError } from '../errors.js';
import { scrubSecrets, type Logger } from '../log.js';
import type { Batch } from './batch.js';
import {
  changeRecords,
  chunkRecords,
  RecentTradePools,
  type EnvelopeOptions,
  type KafkaRecord,
} from './kafka-envelope.js';
import type { Sink } from './sink.js';
import { TIMESCALE_SINK } from './timescale.js';

export const KAFKA_SINK = 'kafka';

export interface KafkaSinkOptions {
  /** SLOTLINE_KAFKA_BROKERS */
  brokers: string[];
  /** SLOTLINE_KAFKA_CLIENT_ID (default slotline) */
  clientId: string;
  /** SLOTLINE_KAFKA_TOPIC_TRADES / _POOLS (default ponder.order_book_trades / ponder.pools) */
  topics: { trades: string; pools: string };
  /** Create missing topics (SLOTLINE_KAFKA_CREATE_TOPICS, default true). */
  createTopics: boolean;
  /** Partitions of created topics (SLOTLINE_KAFKA_TOPIC_PARTITIONS, default 6). */
  partitions: number;
  /** Replication factor of created topics; null: the brokers' default (SLOTLINE_KAFKA_REPLICATION_FACTOR). */
  replicationFactor: number | null;
  /** SLOTLINE_KAFKA_TOMBSTONES (default false) */
  tombstones: boolean;
  /** SLOTLINE_KAFKA_SSL, SLOTLINE_KAFKA_SSL_CA_FILE */
  ssl: boolean;
  sslCaFile: string | null;
  /** SLOTLINE_KAFKA_SASL_* */
  sasl: KafkaSasl | null;
  /** The sink database, which holds this sink's row in slotline.checkpoints. */
  checkpointUrl: string;
  slot: string;
  /** For the envelope's `source`: the source database and schema. */
  sourceDb: string;
  sourceSchema: string;
  log: Logger;
  /**
   * Most record bytes in one produce request (default 900 KiB): a batch is
   * sent in runs under the brokers' default message.max.bytes (1 MiB).
   */
  maxRequestBytes?: number;
  /** Trades whose pool is remembered to key their deletes (default 100,000). */
  rememberTrades?: number;
}

type KafkaJs = typeof import('kafkajs');
type OutRecord = KafkaRecord & { partition?: number };

const DEFAULT_MAX_REQUEST_BYTES = 900 * 1024;
/**
 * kafkajs' own retries ride out a leader move or a short blip (about 3 s);
 * beyond that the write fails, and the sink worker retries it with the
 * connector's capped backoff (the one place that decides).
 */
const KAFKAJS_RETRY = { retries: 4, initialRetryTime: 200, maxRetryTime: 2_000 };
const CLOSE_TIMEOUT_MS = 5_000;

const VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string })
  .version;

/**
 * Sends every change to Kafka: an idempotent producer (acks from all in-sync
 * replicas, one request in flight), each batch's records in change order,
 * awaited. Once the brokers have acknowledged a batch, its checkpoint is
 * stored in the sink database (row (slot, 'kafka') of slotline.checkpoints);
 * the slot is never acknowledged past it, and a restart re-sends only what
 * follows it. Duplicates are thus confined to the records sent after the last
 * stored checkpoint, and carry the same `slotline.lsn`/`slotline.seq` headers.
 *
 * kafkajs is loaded in open(), so a connector without SLOTLINE_KAFKA_BROKERS
 * never loads it.
 */
export class KafkaSink implements Sink {
  readonly name = KAFKA_SINK;
  private kafkajs: KafkaJs | null = null;
  private kafka: Kafka | null = null;
  private producer: Producer | null = null;
  private db: pg.Pool | null = null;
  private readonly log: Logger;
  private readonly envelope: EnvelopeOptions;
  private readonly recent: RecentTradePools;
  private readonly partitionCounts = new Map<string, number>();
  private topicsReady = false;
  /** The checkpoint stored last: transactions it covers are in Kafka already. */
  private durable: Lsn | null = null;
  /**
   * The batch being written. Its records are built once (building them
   * updates `recent`), so a retry sends the very same records, which the
   * idempotent producer can deduplicate, and resumes after the runs the
   * brokers already acknowledged.
   */
  private pending: {
    batch: Batch;
    records: KafkaRecord[];
    runs: { topic: string; messages: Message[] }[][] | null;
    sent: number;
  } | null = null;

  constructor(private readonly opts: KafkaSinkOptions) {
    this.log = opts.log;
    this.envelope = {
      topics: opts.topics,
      version: VERSION,
      name: opts.slot,
      db: opts.sourceDb,
      schema: opts.sourceSchema,
      tombstones: opts.tombstones,
    };
    this.recent = new RecentTradePools(opts.rememberTrades);
  }

  async open(): Promise<void> {
    if (this.db) return;
    let ca: string | null = null;
    if (this.opts.sslCaFile !== null) {
      try {
        ca = await readFile(this.opts.sslCaFile, 'utf8');
      } catch (err) {
        throw new ConfigError(
          `SLOTLINE_KAFKA_SSL_CA_FILE ${JSON.stringify(this.opts.sslCaFile)}: ${(err as Error).message}`,
        );
      }
    }
    const kafkajs = await import('kafkajs');
    this.kafkajs = kafkajs;
    const secrets = this.opts.sasl ? [this.opts.sasl.password] : [];
    this.kafka = new kafkajs.Kafka({
      clientId: this.opts.clientId,
      brokers: this.opts.brokers,
      ssl: this.opts.ssl ? (ca === null ? true : { ca: [ca] }) : false,
      sasl: this.opts.sasl ? (this.opts.sasl as SASLOptions) : undefined,
      connectionTimeout: 5_000,
      requestTimeout: 30_000,
      retry: KAFKAJS_RETRY,
      logLevel: kafkajs.logLevel.WARN,
      logCreator: () => kafkaLogger(this.log, secrets),
    });
    this.db = new pg.Pool({
      connectionString: this.opts.checkpointUrl,
      max: 1,
      application_name: 'slotline-kafka-checkpoint',
    });
    this.db.on('error', (err) =>
      this.log.warn({ err: classifyError(err, 'sink') }, 'idle checkpoint connection failed'),
    );
  }

  private pool(): pg.Pool {
    if (!this.db) throw new Error('KafkaSink used before open()');
    return this.db;
  }

  /**
   * This sink's checkpoint. A Kafka sink enabled on a slot that already
   * streams has no row yet: it gets one at the TimescaleDB checkpoint, so it
   * starts from now (history is not sent; a backfill can send it).
   */
  async checkpoint(): Promise<Checkpoint | null> {
    const created = await this.pool().query<{ lsn: string | null }>(
      `INSERT INTO slotline.checkpoints (slot, sink, lsn, state, commit_time)
       SELECT slot, $2, lsn, 'streaming', commit_time
         FROM slotline.checkpoints
        WHERE slot = $1 AND sink = $3 AND state = 'streaming'
       ON CONFLICT (slot, sink) DO NOTHING
       RETURNING lsn::text`,
      [this.opts.slot, KAFKA_SINK, TIMESCALE_SINK],
    );
    const row = created.rows[0];
    if (row) {
      this.log.warn(
        { lsn: row.lsn },
        'Kafka sink newly enabled on a streaming slot: it starts at the current checkpoint; earlier changes are not sent to Kafka',
      );
    }
    const ck = await readCheckpoint(this.pool(), this.opts.slot, KAFKA_SINK);
    this.durable = ck?.state === 'streaming' ? ck.lsn : null;
    return ck;
  }

  async write(batch: Batch): Promise<void> {
    try {
      await this.send(batch);
    } catch (err) {
      const e = classifyKafkaError(err);
      if (needsNewProducer(err)) await this.dropProducer();
      // A topic deleted while we run is created again (when allowed) on the next attempt.
      if (e.message.includes('UNKNOWN_TOPIC_OR_PARTITION')) this.topicsReady = false;
      throw e;
    }
    if (batch.checkpoint !== null) {
      try {
        await advanceCheckpoint(
          this.pool(),
          this.opts.slot,
          KAFKA_SINK,
          batch.checkpoint,
          batch.commitTime,
        );
      } catch (err) {
        // The records stay acknowledged: the retry only stores the checkpoint.
        throw classifyError(err, 'kafka checkpoint');
      }
      if (this.durable === null || batch.checkpoint > this.durable) this.durable = batch.checkpoint;
    }
    this.pending = null;
  }

  private async send(batch: Batch): Promise<void> {
    if (this.pending?.batch !== batch) {
      const now = Date.now();
      const records: KafkaRecord[] = [];
      for (const c of batch.changes) {
        // The stream restarts at the lowest checkpoint of all sinks (or where a
        // broken connection left off): a transaction that committed before this
        // sink's own checkpoint is in Kafka already. Same rule as the router's skip.
        if (c.tx !== undefined && this.durable !== null && c.lsn < this.durable) continue;
        for (const r of changeRecords(c, this.envelope, this.recent, now)) records.push(r);
      }
      this.pending = { batch, records, runs: null, sent: 0 };
    }
    const p = this.pending;
    if (p.records.length === 0) return;
    const producer = await this.connect();
    p.runs ??= await this.runsOf(p.records);
    for (; p.sent < p.runs.length; p.sent++) {
      await producer.sendBatch({ acks: -1, topicMessages: p.runs[p.sent] });
    }
  }

  /** Records as produce requests: copies for every partition where asked, then runs under the size bound. */
  private async runsOf(
    records: KafkaRecord[],
  ): Promise<{ topic: string; messages: Message[] }[][]> {
    let out: OutRecord[] = records;
    if (records.some((r) => r.everyPartition)) {
      await this.refreshPartitionCounts();
      out = [];
      for (const r of records) {
        if (!r.everyPartition) out.push(r);
        else {
          const n = this.partitionCounts.get(r.topic) ?? 1;
          for (let partition = 0; partition < n; partition++) out.push({ ...r, partition });
        }
      }
    }
    const max = this.opts.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
    return chunkRecords(out, max).map((chunk) => {
      // One entry per topic, records in change order: what counts is the order per partition.
      const byTopic = new Map<string, Message[]>();
      for (const r of chunk) {
        let list = byTopic.get(r.topic);
        if (!list) byTopic.set(r.topic, (list = []));
        const m: Message = { key: r.key, value: r.value, headers: r.headers };
        if (r.partition !== undefined) m.partition = r.partition;
        list.push(m);
      }
      return [...byTopic].map(([topic, messages]) => ({ topic, messages }));
    });
  }

  /** The producer, connected, with the topics in place. */
  private async connect(): Promise<Producer> {
    if (this.producer) return this.producer;
    const kafkajs = this.kafkajs;
    const kafka = this.kafka;
    if (!kafkajs || !kafka) throw new Error('KafkaSink used before open()');
    if (!this.topicsReady) {
      await this.prepareTopics();
      this.topicsReady = true;
    }
    const producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      // Java's murmur2 partitioning: a key lands where a Java producer would put it.
      createPartitioner: kafkajs.Partitioners.DefaultPartitioner,
      retry: KAFKAJS_RETRY,
    });
    try {
      await producer.connect();
    } catch (err) {
      await producer.disconnect().catch(() => undefined);
      throw err;
    }
    this.producer = producer;
    this.log.info({ brokers: this.opts.brokers }, 'connected to Kafka');
    return producer;
  }

  private async withAdmin<T>(fn: (admin: Admin) => Promise<T>): Promise<T> {
    const admin = (this.kafka as Kafka).admin();
    await admin.connect();
    try {
      return await fn(admin);
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }

  /** Creates the topics that are missing (when allowed) and learns their partition counts. */
  private async prepareTopics(): Promise<void> {
    const { trades, pools } = this.opts.topics;
    await this.withAdmin(async (admin) => {
      const existing = new Set(await admin.listTopics());
      const missing = [trades, pools].filter((t) => !existing.has(t));
      if (missing.length > 0 && !this.opts.createTopics) {
        throw new SlotlineError(
          'kafka_topic_missing',
          `kafka: topic(s) ${missing.join(', ')} do not exist and SLOTLINE_KAFKA_CREATE_TOPICS is false; create them`,
          { retriable: true },
        );
      }
      if (missing.length > 0) {
        const topics: ITopicConfig[] = missing.map((topic) => ({
          topic,
          numPartitions: this.opts.partitions,
          // -1: the brokers' default.replication.factor (KIP-464).
          replicationFactor: this.opts.replicationFactor ?? -1,
          // Trades are keyed by pool: compaction would keep one trade per pool.
          configEntries: topic === trades ? [{ name: 'cleanup.policy', value: 'delete' }] : [],
        }));
        await admin.createTopics({ topics, waitForLeaders: true });
        this.log.info(
          { topics: missing, partitions: this.opts.partitions },
          'created missing Kafka topics',
        );
      }
      await this.readPartitionCounts(admin);
    });
  }

  private async refreshPartitionCounts(): Promise<void> {
    await this.withAdmin((admin) => this.readPartitionCounts(admin));
  }

  private async readPartitionCounts(admin: Admin): Promise<void> {
    const { trades, pools } = this.opts.topics;
    const meta = await admin.fetchTopicMetadata({ topics: [trades, pools] });
    for (const t of meta.topics) this.partitionCounts.set(t.name, t.partitions.length);
  }

  private async dropProducer(): Promise<void> {
    const p = this.producer;
    this.producer = null;
    if (p) await withTimeout(p.disconnect(), CLOSE_TIMEOUT_MS).catch(() => undefined);
  }

  /** Envelopes name the deployment's schema in `source.schema` from now on. */
  followSchema(schema: string): void {
    this.envelope.schema = schema;
  }

  async resetTo(lsn: Lsn): Promise<void> {
    await resetCheckpoint(this.pool(), this.opts.slot, KAFKA_SINK, lsn);
    // The skip rule in send() reads this: without it a replayed range never reaches Kafka.
    this.durable = lsn;
    this.pending = null;
  }

  /** Snapshot done at `lsn`: this sink streams from there (its 'r' records are sent already). */
  async completeSnapshot(lsn: Lsn): Promise<void> {
    await setCheckpointState(this.pool(), this.opts.slot, KAFKA_SINK, 'streaming', lsn, lsn);
    this.durable = lsn;
    this.log.info({ lsn: formatLsn(lsn) }, 'Kafka sink streams from the snapshot point');
  }

  async close(): Promise<void> {
    await this.dropProducer();
    const db = this.db;
    this.db = null;
    await db?.end().catch(() => undefined);
  }
}

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
]);

interface KafkaJsErrorLike {
  name?: string;
  message?: string;
  type?: string;
  retriable?: boolean;
  code?: string;
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

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
