import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import type {
  Admin,
  CompressionTypes,
  ITopicConfig,
  Kafka,
  Message,
  Producer,
  SASLOptions,
} from 'kafkajs';
import pg from 'pg';
import type { Lsn } from '../checkpoint/lsn.js';
import { formatLsn } from '../checkpoint/lsn.js';
import {
  advanceCheckpoint,
  readCheckpoint,
  readEpoch,
  resetCheckpoint,
  setCheckpointState,
  type Checkpoint,
} from '../checkpoint/store.js';
import type { KafkaSasl } from '../config.js';
import { classifyError, ConfigError, SlotlineError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Batch, Change } from './batch.js';
import {
  changeRecords,
  chunkRecords,
  RecentTradePools,
  type EnvelopeOptions,
  type KafkaRecord,
} from './kafka-envelope.js';
import { loadKafkajs, VERIFIED_KAFKAJS } from './kafka-client.js';
import { classifyKafkaError, kafkaLogger, needsNewProducer } from './kafka-errors.js';
import { memoPartitioner } from './kafka-partitioner.js';
import { alreadySent, type KafkaProgress, progressAfter, sameProgress } from './kafka-progress.js';
import { KafkaTransactions, type Run } from './kafka-transactions.js';
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
  /**
   * SLOTLINE_KAFKA_DELIVERY (default exactly-once): Kafka transactions with a
   * progress record, or plain idempotent sends checkpointed in the sink database.
   */
  delivery: 'exactly-once' | 'at-least-once';
  /** SLOTLINE_KAFKA_TOPIC_PROGRESS (exactly-once; default `<trades topic>.progress`) */
  progressTopic: string;
  /** SLOTLINE_KAFKA_TRANSACTIONAL_ID (exactly-once; default `slotline.<slot>.<trades topic>`) */
  transactionalId: string;
  /** SLOTLINE_KAFKA_TOMBSTONES (default false) */
  tombstones: boolean;
  /** SLOTLINE_KAFKA_COMPRESSION (default none) */
  compression?: 'none' | 'gzip';
  /** SLOTLINE_KAFKA_SSL, SLOTLINE_KAFKA_SSL_CA_FILE */
  ssl: boolean;
  sslCaFile: string | null;
  /** SLOTLINE_KAFKA_SASL_* */
  sasl: KafkaSasl | null;
  /**
   * The sink database: this sink's row in slotline.checkpoints (at-least-once:
   * the checkpoint; exactly-once: a copy of the progress, for status and
   * operators) and the slot's leader epoch.
   */
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
/** A change and the records it becomes. */
type Item = { change: Change; records: KafkaRecord[] };

const DEFAULT_MAX_REQUEST_BYTES = 900 * 1024;
/**
 * kafkajs' own retries ride out a leader move or a short blip (about 3 s);
 * beyond that the write fails, and the sink worker retries it with the
 * connector's capped backoff (the one place that decides).
 */
const KAFKAJS_RETRY = { retries: 4, initialRetryTime: 200, maxRetryTime: 2_000 };
const CLOSE_TIMEOUT_MS = 5_000;
/** The progress topic: one partition (one writer, order is all), compacted. */
const PROGRESS_TOPIC_CONFIG = [{ name: 'cleanup.policy', value: 'compact' }];

const VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string })
  .version;

/**
 * Sends every change to Kafka, each batch's records in change order.
 *
 * Exactly-once (the default): each batch is one Kafka transaction carrying
 * its records and a progress record (the batch's checkpoint, see
 * kafka-progress.ts) in the compacted progress topic, so the changes and the
 * position they reach commit together or not at all. On start, and after any
 * failure, the sink reads where Kafka stands from that topic with
 * `read_committed` and sends only what follows. All replicas share one
 * transactional.id: a new leader's producer fences the old one's. The row in
 * slotline.checkpoints follows each commit, for status and operators.
 *
 * At-least-once: an idempotent producer (acks from all in-sync replicas, one
 * request in flight), awaited; once the brokers have acknowledged a batch,
 * its checkpoint is stored in the sink database, which is then where a
 * restart resumes. Duplicates are confined to the records sent after the last
 * stored checkpoint, and carry the same `slotline.lsn`/`slotline.seq` headers.
 *
 * Either way the slot is never acknowledged past what Kafka holds. kafkajs is
 * loaded in open() (kafka-client.ts), so a connector without
 * SLOTLINE_KAFKA_BROKERS never loads it.
 */
export class KafkaSink implements Sink {
  readonly name = KAFKA_SINK;
  private kafkajs: KafkaJs | null = null;
  private kafka: Kafka | null = null;
  private producer: Producer | null = null;
  /** Exactly-once: the transactional producer and the progress it keeps. */
  private transactions: KafkaTransactions | null = null;
  /** This replica's leader epoch in the sink database (claimEpoch), checked before fencing. */
  private epoch: string | null = null;
  private db: pg.Pool | null = null;
  private readonly log: Logger;
  private readonly envelope: EnvelopeOptions;
  private readonly recent: RecentTradePools;
  private readonly partitionCounts = new Map<string, number>();
  private topicsReady = false;
  /** At-least-once: the checkpoint stored last; transactions it covers are in Kafka already. */
  private durable: Lsn | null = null;
  /**
   * The batch being written. Its records are built once (building them
   * updates `recent`), so a retry sends the very same records. At-least-once,
   * the idempotent producer can deduplicate them, and a retry resumes after
   * the runs the brokers already acknowledged; exactly-once, a retry sends
   * what the progress read again says is missing.
   */
  private pending: {
    batch: Batch;
    items: Item[];
    runs: Run[] | null;
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
    const { kafkajs, fastPaths } = await loadKafkajs();
    this.kafkajs = kafkajs;
    if (fastPaths.produceEncoding && fastPaths.grouping)
      this.log.info(
        { kafkajs: fastPaths.kafkajs },
        "kafkajs loaded with slotline's produce request encoding and grouping",
      );
    else
      this.log.warn(
        { ...fastPaths, verified: VERIFIED_KAFKAJS },
        "kafkajs runs its own produce encoding or grouping (slower): its version is not one slotline's replacements were verified against, or it was loaded before them",
      );
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
    if (this.opts.delivery === 'exactly-once') {
      const db = this.db;
      this.transactions = new KafkaTransactions({
        kafka: this.kafka,
        partitioner: memoPartitioner(kafkajs.Partitioners.DefaultPartitioner),
        transactionalId: this.opts.transactionalId,
        progressTopic: this.opts.progressTopic,
        key: this.opts.slot,
        compression: this.compression(),
        holder: `${hostname()}:${process.pid}`,
        prepareTopics: () => this.ensureTopics(),
        stillLeading: async () =>
          this.epoch !== null && (await readEpoch(db, this.opts.slot)) === this.epoch,
        log: this.log,
      });
    }
  }

  /**
   * Exactly-once: remembers this replica's leader epoch, which the TimescaleDB
   * sink has just claimed. The Kafka side of the fence is the transactional
   * producer: its first use (reading the progress, or the first write) fences
   * every producer of an earlier leader, and none is started once another
   * replica has claimed a newer epoch.
   */
  async claimEpoch(): Promise<null> {
    if (!this.transactions) return null;
    this.epoch = await readEpoch(this.pool(), this.opts.slot);
    if (this.epoch === null) throw new Error('KafkaSink.claimEpoch() before the TimescaleDB sink');
    return null;
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
    const t = this.transactions;
    if (!t || ck?.state !== 'streaming') return ck;
    // Exactly-once: what Kafka holds is the latest committed progress record; the row is a copy.
    t.setFloor(ck.lsn === null ? null : { lsn: ck.lsn, partial: null });
    const p = await t.progress();
    return p === null ? ck : { ...ck, lsn: p.lsn };
  }

  async write(batch: Batch): Promise<void> {
    try {
      if (this.transactions) await this.sendTransaction(batch, this.transactions);
      else await this.send(batch);
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
        // The records stay in Kafka: the retry finds them there and only stores the checkpoint.
        throw classifyError(err, 'kafka checkpoint');
      }
      if (this.durable === null || batch.checkpoint > this.durable) this.durable = batch.checkpoint;
    }
    this.pending = null;
  }

  /** The batch's changes with their records, built once per batch. */
  private itemsOf(batch: Batch): NonNullable<KafkaSink['pending']> {
    if (this.pending?.batch !== batch) {
      const now = Date.now();
      const items = batch.changes.map((change) => ({
        change,
        records: changeRecords(change, this.envelope, this.recent, now),
      }));
      this.pending = { batch, items, runs: null, sent: 0 };
    }
    return this.pending;
  }

  /** At-least-once: the records not yet in Kafka by the stored checkpoint, run after run. */
  private async send(batch: Batch): Promise<void> {
    const p = this.itemsOf(batch);
    if (p.runs === null) {
      // The stream restarts at the lowest checkpoint of all sinks (or where a broken
      // connection left off): what this sink's checkpoint covers is in Kafka already.
      const stored: KafkaProgress | null =
        this.durable === null ? null : { lsn: this.durable, partial: null };
      const records = p.items.flatMap((i) => (alreadySent(i.change, stored) ? [] : i.records));
      if (records.length === 0) return;
      p.runs = await this.runsOf(records);
    }
    const producer = await this.connect();
    for (; p.sent < p.runs.length; p.sent++) {
      await producer.sendBatch({
        acks: -1,
        compression: this.compression(),
        topicMessages: p.runs[p.sent],
      });
    }
  }

  /**
   * Exactly-once: one Kafka transaction with what the progress says is not in
   * Kafka yet and the progress once it is. Nothing new (a replayed batch) and
   * no progress to record: no transaction.
   */
  private async sendTransaction(batch: Batch, t: KafkaTransactions): Promise<void> {
    const p = this.itemsOf(batch);
    const progress = await t.progress();
    const records = p.items.flatMap((i) => (alreadySent(i.change, progress) ? [] : i.records));
    const next = progressAfter(batch, progress);
    if (records.length === 0 && sameProgress(next, progress)) return;
    await t.commit(records.length === 0 ? [] : await this.runsOf(records), next);
  }

  /** Records as produce requests: copies for every partition where asked, then runs under the size bound. */
  private async runsOf(records: KafkaRecord[]): Promise<Run[]> {
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

  /** kafkajs' codec for SLOTLINE_KAFKA_COMPRESSION. */
  private compression(): CompressionTypes {
    const types = (this.kafkajs as KafkaJs).CompressionTypes;
    return this.opts.compression === 'gzip' ? types.GZIP : types.None;
  }

  /** The producer, connected, with the topics in place. */
  private async connect(): Promise<Producer> {
    if (this.producer) return this.producer;
    const kafkajs = this.kafkajs;
    const kafka = this.kafka;
    if (!kafkajs || !kafka) throw new Error('KafkaSink used before open()');
    await this.ensureTopics();
    const producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      // Java's murmur2 partitioning: a key lands where a Java producer would put it.
      createPartitioner: memoPartitioner(kafkajs.Partitioners.DefaultPartitioner),
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

  /**
   * Creates the topics that are missing (when allowed) and learns their
   * partition counts; once per connection, and by `slotline setup`.
   */
  async ensureTopics(): Promise<void> {
    if (this.topicsReady) return;
    const { trades, pools } = this.opts.topics;
    const progress = this.transactions ? this.opts.progressTopic : null;
    await this.withAdmin(async (admin) => {
      const existing = new Set(await admin.listTopics());
      const missing = [trades, pools, progress].filter(
        (t): t is string => t !== null && !existing.has(t),
      );
      if (missing.length > 0 && !this.opts.createTopics) {
        throw new SlotlineError(
          'kafka_topic_missing',
          `kafka: topic(s) ${missing.join(', ')} do not exist and SLOTLINE_KAFKA_CREATE_TOPICS is false; create them` +
            (progress !== null && missing.includes(progress)
              ? ` (${progress}: one partition, cleanup.policy=compact)`
              : ''),
          { retriable: true },
        );
      }
      if (missing.length > 0) {
        const topics: ITopicConfig[] = missing.map((topic) => ({
          topic,
          numPartitions: topic === progress ? 1 : this.opts.partitions,
          // -1: the brokers' default.replication.factor (KIP-464).
          replicationFactor: this.opts.replicationFactor ?? -1,
          // Trades are keyed by pool: compaction would keep one trade per pool. Progress
          // records are keyed by slot: compaction keeps the latest, all a start needs.
          configEntries:
            topic === trades
              ? [{ name: 'cleanup.policy', value: 'delete' }]
              : topic === progress
                ? PROGRESS_TOPIC_CONFIG
                : [],
        }));
        await admin.createTopics({ topics, waitForLeaders: true });
        this.log.info(
          { topics: missing, partitions: this.opts.partitions },
          'created missing Kafka topics',
        );
      }
      await this.readPartitionCounts(admin);
    });
    this.topicsReady = true;
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

  /**
   * An operator's LSN reset. Exactly-once, the progress record moves first, in
   * a Kafka transaction of its own: if that fails nothing has changed.
   */
  async resetTo(lsn: Lsn): Promise<void> {
    if (this.transactions) await this.moveProgress(this.transactions, lsn);
    await resetCheckpoint(this.pool(), this.opts.slot, KAFKA_SINK, lsn);
    // The skip rule in send() reads this: without it a replayed range never reaches Kafka.
    this.durable = lsn;
    this.pending = null;
  }

  /** Snapshot done at `lsn`: this sink streams from there (its 'r' records are sent already). */
  async completeSnapshot(lsn: Lsn): Promise<void> {
    if (this.transactions) await this.moveProgress(this.transactions, lsn);
    await setCheckpointState(this.pool(), this.opts.slot, KAFKA_SINK, 'streaming', lsn, lsn);
    this.durable = lsn;
    this.log.info({ lsn: formatLsn(lsn) }, 'Kafka sink streams from the snapshot point');
  }

  private async moveProgress(t: KafkaTransactions, lsn: Lsn): Promise<void> {
    try {
      await t.commit([], { lsn, partial: null });
    } catch (err) {
      throw classifyKafkaError(err);
    }
  }

  async close(): Promise<void> {
    await this.dropProducer();
    await this.transactions?.close();
    const db = this.db;
    this.db = null;
    await db?.end().catch(() => undefined);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
