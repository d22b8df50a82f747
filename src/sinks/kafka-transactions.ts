import { randomUUID } from 'node:crypto';
import type { CompressionTypes, ICustomPartitioner, Kafka, Message, Producer } from 'kafkajs';
import { formatLsn } from '../checkpoint/lsn.js';
import { LeadershipLostError, SlotlineError } from '../errors.js';
import type { Logger } from '../log.js';
import { classifyKafkaError, isFenced } from './kafka-errors.js';
import {
  decodeProgress,
  encodeProgress,
  type KafkaProgress,
  newerProgress,
} from './kafka-progress.js';

/** One produce request: messages per topic. */
export type Run = { topic: string; messages: Message[] }[];

export interface KafkaTransactionsOptions {
  kafka: Kafka;
  /** Java-compatible: kafkajs' DefaultPartitioner or the same with a memo (kafka-partitioner.ts). */
  partitioner: ICustomPartitioner;
  /** SLOTLINE_KAFKA_TRANSACTIONAL_ID: the same on every replica of the connector. */
  transactionalId: string;
  /** SLOTLINE_KAFKA_TOPIC_PROGRESS: compacted, progress records in partition 0. */
  progressTopic: string;
  /** The key of this connector's progress records (the slot). */
  key: string;
  /** kafkajs' codec of the record batches (SLOTLINE_KAFKA_COMPRESSION). */
  compression: CompressionTypes;
  /** Written into each record: which replica wrote it. */
  holder: string;
  /** The topics exist (created when allowed); called before a producer connects. */
  prepareTopics(): Promise<void>;
  /**
   * Whether this replica still leads the slot (its leader epoch is current in
   * the sink database). Asked before every new producer: a deposed leader
   * must not fence the replica that took over.
   */
  stillLeading(): Promise<boolean>;
  log: Logger;
  /** How long reading the progress topic may take (default 60 s: a consumer group join included). */
  readTimeoutMs?: number;
}

/**
 * kafkajs' retries of one request: short first waits, because the brokers
 * answer CONCURRENT_TRANSACTIONS while they write the previous transaction's
 * markers (a few ms), then about 4 s in all for a leader move or a blip.
 */
const RETRY = { retries: 8, initialRetryTime: 15, maxRetryTime: 2_000 };
/** The brokers abort a transaction left open this long (a producer that died mid-way). */
const TRANSACTION_TIMEOUT_MS = 60_000;
/** A progress record and its commit marker per transaction: the latest is in the last few. */
const TAIL_OFFSETS = 1_000;
const CLOSE_TIMEOUT_MS = 5_000;

/**
 * The exactly-once side of the Kafka sink: one transactional producer whose
 * transactional.id every replica shares, so that the first transaction of a
 * new leader fences the old one's producer (the brokers abort whatever it
 * left open, and refuse its later requests); and the progress record, sent
 * in the same Kafka transaction as the changes it covers. What Kafka holds is
 * the latest committed record: read with `read_committed` after the producer
 * is initialized (which settles any transaction a predecessor left open), and
 * again after every failure, since a commit that failed may have landed.
 */
export class KafkaTransactions {
  private producer: Producer | null = null;
  /** What Kafka holds; undefined: unknown, read the topic before the next transaction. */
  private known: KafkaProgress | null | undefined = undefined;
  /**
   * What the sink database's row says Kafka holds at least: the start of a sink
   * that never wrote a progress record (enabled on a running slot, or switched
   * from at-least-once). Consulted until the first commit of this process.
   */
  private floor: KafkaProgress | null = null;
  /** The first producer of this process has been logged. */
  private announced = false;

  constructor(private readonly o: KafkaTransactionsOptions) {}

  setFloor(p: KafkaProgress | null): void {
    this.floor = p;
    if (this.known !== undefined) this.known = newerProgress(this.known, p);
  }

  /** The progress Kafka holds, read from the topic when not known. */
  async progress(): Promise<KafkaProgress | null> {
    if (this.known !== undefined) return this.known;
    await this.connect();
    const read = await readProgress(this.o.kafka, this.o.progressTopic, this.o.key, {
      timeoutMs: this.o.readTimeoutMs ?? 60_000,
    });
    this.known = newerProgress(read, this.floor);
    this.o.log.info(
      {
        lsn: this.known ? formatLsn(this.known.lsn) : null,
        partial: this.known?.partial
          ? `${formatLsn(this.known.partial.lsn)}#${this.known.partial.seq}`
          : null,
        from: read ? this.o.progressTopic : 'the sink database',
      },
      'Kafka progress read (read_committed)',
    );
    return this.known;
  }

  /**
   * One Kafka transaction: the runs in order and the progress record `next`
   * (none while there is no position yet: the first snapshot's rows); resolves
   * once committed. On any failure the transaction is abandoned (the next
   * producer's initialization aborts it if the brokers still hold it open) and
   * the progress is read again before the next attempt.
   */
  async commit(runs: Run[], next: KafkaProgress | null): Promise<void> {
    const producer = await this.connect();
    const all = [...runs];
    if (next !== null) {
      const value = encodeProgress(next, { holder: this.o.holder, at: Date.now() });
      const progress = {
        topic: this.o.progressTopic,
        messages: [{ key: this.o.key, value, partition: 0 }],
      };
      // In the first request: its partitions join the transaction in one round trip, and the
      // record commits with the rest whatever its place.
      all[0] = [...(all[0] ?? []), progress];
    }
    if (all.length === 0) return;
    try {
      const txn = await producer.transaction();
      try {
        for (const run of all)
          await txn.sendBatch({ acks: -1, compression: this.o.compression, topicMessages: run });
        await txn.commit();
      } catch (err) {
        if (txn.isActive()) await txn.abort().catch(() => undefined);
        throw err;
      }
    } catch (err) {
      this.known = undefined;
      await this.drop();
      throw await this.classify(err);
    }
    this.known = next;
    this.floor = null;
  }

  async close(): Promise<void> {
    await this.drop();
  }

  /** The producer, initialized: its first InitProducerId fences every earlier one of this id. */
  private async connect(): Promise<Producer> {
    if (this.producer) return this.producer;
    if (!(await this.o.stillLeading())) throw this.deposed();
    await this.o.prepareTopics();
    const producer = this.o.kafka.producer({
      transactionalId: this.o.transactionalId,
      transactionTimeout: TRANSACTION_TIMEOUT_MS,
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      // Java's murmur2 partitioning: a key lands where a Java producer would put it.
      createPartitioner: this.o.partitioner,
      retry: RETRY,
    });
    try {
      await producer.connect();
      // kafkajs initializes the transactional id with the first transaction; do it now.
      const txn = await producer.transaction();
      await txn.abort();
    } catch (err) {
      await producer.disconnect().catch(() => undefined);
      throw await this.classify(err);
    }
    this.producer = producer;
    if (!this.announced) {
      this.announced = true;
      this.o.log.info(
        { transactionalId: this.o.transactionalId },
        'Kafka transactions: earlier producers of this transactional id are fenced',
      );
    }
    return producer;
  }

  private async drop(): Promise<void> {
    const p = this.producer;
    this.producer = null;
    if (p) await withTimeout(p.disconnect(), CLOSE_TIMEOUT_MS).catch(() => undefined);
  }

  /** A fenced producer is a takeover when another replica leads now; otherwise (a timeout) a retry. */
  private async classify(err: unknown): Promise<SlotlineError> {
    if (isFenced(err) && !(await this.o.stillLeading().catch(() => true))) return this.deposed();
    return classifyKafkaError(err);
  }

  private deposed(): LeadershipLostError {
    return new LeadershipLostError(
      `kafka: another replica leads slot ${this.o.key} now and has fenced transactional id ${this.o.transactionalId}; ` +
        'this one stops writing and exits',
    );
  }
}

/**
 * The latest committed progress record of `key` in partition 0 of `topic`
 * (null if there is none), read with `read_committed`: records of aborted or
 * still open transactions are invisible. It is near the end, so the tail is
 * read first, then the whole partition if the tail does not hold one.
 */
export async function readProgress(
  kafka: Kafka,
  topic: string,
  key: string,
  opts: { timeoutMs: number },
): Promise<KafkaProgress | null> {
  const admin = kafka.admin();
  await admin.connect();
  let offsets: { partition: number; high: string; low: string }[];
  try {
    offsets = await admin.fetchTopicOffsets(topic);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
  const p0 = offsets.find((o) => o.partition === 0);
  const high = Number(p0?.high ?? 0);
  const low = Number(p0?.low ?? 0);
  if (high <= low) return null;
  const tail = Math.max(low, high - TAIL_OFFSETS);
  const text =
    (await readRange(kafka, { topic, key, from: tail, high }, opts.timeoutMs)) ??
    (tail > low ? await readRange(kafka, { topic, key, from: low, high }, opts.timeoutMs) : null);
  if (text === null) return null;
  try {
    return decodeProgress(text);
  } catch (err) {
    throw new SlotlineError(
      'kafka_progress_invalid',
      `kafka: the latest record of ${JSON.stringify(key)} in ${topic} is not a slotline progress record (${(err as Error).message}); is SLOTLINE_KAFKA_TOPIC_PROGRESS shared with something else?`,
      { cause: err },
    );
  }
}

/** The value of the last record of `key` at offsets [from, high) of partition 0. */
async function readRange(
  kafka: Kafka,
  r: { topic: string; key: string; from: number; high: number },
  timeoutMs: number,
): Promise<string | null> {
  const consumer = kafka.consumer({
    groupId: `slotline-progress-${randomUUID()}`,
    readUncommitted: false,
    maxWaitTimeInMs: 100,
    allowAutoTopicCreation: false,
  });
  let latest: { offset: number; value: string } | null = null;
  let timer: NodeJS.Timeout | undefined;
  await consumer.connect();
  try {
    // Control records (commit and abort markers) count: a batch ending in one reports it as
    // its last offset, also when all its records were filtered out.
    const reached = new Promise<void>((resolve) => {
      consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
        if (payload.topic === r.topic && payload.partition === 0) {
          if (Number(payload.lastOffset) >= r.high - 1) resolve();
        }
      });
    });
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new SlotlineError(
              'kafka_unavailable',
              `kafka: reading ${r.topic} (read_committed) up to offset ${r.high} took more than ${timeoutMs} ms`,
              { retriable: true },
            ),
          ),
        timeoutMs,
      );
    });
    // On every join: kafkajs restarts a consumer whose coordinator was not ready yet, and the
    // restarted one starts again from the committed offset (none: the end).
    consumer.on(consumer.events.GROUP_JOIN, () =>
      consumer.seek({ topic: r.topic, partition: 0, offset: String(r.from) }),
    );
    await consumer.subscribe({ topics: [r.topic], fromBeginning: false });
    await consumer.run({
      autoCommit: false,
      eachMessage: ({ partition, message }) => {
        const offset = Number(message.offset);
        if (partition !== 0 || offset < r.from || offset >= r.high) return Promise.resolve();
        if (message.key?.toString() !== r.key || message.value === null) return Promise.resolve();
        if (latest === null || offset > latest.offset)
          latest = { offset, value: message.value.toString() };
        return Promise.resolve();
      },
    });
    await Promise.race([reached, late]);
  } finally {
    clearTimeout(timer);
    await consumer.disconnect().catch(() => undefined);
  }
  return (latest as { value: string } | null)?.value ?? null;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
