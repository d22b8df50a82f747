/**
 * Reading what the connector wrote to Kafka: every message of a topic up to
 * its end at the time of the call, with slotline's headers decoded.
 */
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel, type IHeaders } from 'kafkajs';
import { afterAll, beforeAll } from 'vitest';
import { parseLsn } from '../../src/checkpoint/lsn.js';
import { startKafka, type KafkaBroker } from './kafka.js';

export interface Received {
  partition: number;
  offset: number;
  key: unknown;
  /** slotline.lsn: the commit LSN of the source transaction */
  lsn: bigint;
  /** slotline.seq: position in the source transaction; -1 for snapshot rows */
  seq: number;
  value: {
    before: Record<string, unknown> | null;
    after: Record<string, unknown> | null;
    op: string;
    source: Record<string, unknown>;
  };
}

export const header = (h: IHeaders | undefined, name: string): string | undefined => {
  const v = h?.[name];
  return v === undefined ? undefined : String(Array.isArray(v) ? v[0] : v);
};

export interface ReadTopicOptions {
  /** Default 60 s. */
  timeoutMs?: number;
  /**
   * Default `read_committed`, the isolation the README tells consumers to use:
   * records of aborted or still open Kafka transactions are not returned.
   * `read_uncommitted` returns them too.
   */
  isolation?: 'read_committed' | 'read_uncommitted';
}

/**
 * Everything in `topic` up to its end at the time of the call, per partition in
 * offset order. With read_committed a partition's last offsets may be commit or
 * abort markers, which no consumer is handed: the end of a partition is known
 * from the batches' last offsets (markers included), not from the last message.
 */
export async function readTopic(
  kafka: Kafka,
  topic: string,
  opts: ReadTopicOptions | number = {},
): Promise<Received[]> {
  const { timeoutMs = 60_000, isolation = 'read_committed' } =
    typeof opts === 'number' ? { timeoutMs: opts } : opts;
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(topic).finally(() => admin.disconnect());
  const remaining = new Map<number, number>();
  for (const o of offsets)
    if (Number(o.high) > Number(o.low)) remaining.set(o.partition, Number(o.high));
  const out: Received[] = [];
  if (remaining.size === 0) return out;
  const consumer = kafka.consumer({
    groupId: `test-${randomUUID()}`,
    maxWaitTimeInMs: 100,
    readUncommitted: isolation === 'read_uncommitted',
  });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `reading ${topic} (${isolation}) timed out; partitions not read to their end: ${[...remaining.keys()].join(', ')}`,
            ),
          ),
        timeoutMs,
      );
      consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
        const end = remaining.get(payload.partition);
        if (end !== undefined && Number(payload.lastOffset) >= end - 1)
          remaining.delete(payload.partition);
        if (remaining.size === 0) {
          clearTimeout(timer);
          resolve();
        }
      });
      consumer
        .run({
          eachMessage: async ({ partition, message }) => {
            const offset = Number(message.offset);
            const end = remaining.get(partition);
            if (end === undefined || offset >= end) return;
            const seq = header(message.headers, 'slotline.seq');
            out.push({
              partition,
              offset,
              key: JSON.parse(message.key?.toString() ?? 'null'),
              lsn: parseLsn(header(message.headers, 'slotline.lsn') ?? ''),
              seq: seq === undefined ? -1 : Number(seq),
              value: JSON.parse(message.value?.toString() ?? 'null') as Received['value'],
            });
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return out.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}

/** How often each streamed event (slotline.lsn, slotline.seq) is in the topic. */
export function eventCounts(messages: readonly Received[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of messages) {
    if (m.seq < 0) continue;
    const k = `${m.lsn}/${m.seq}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return counts;
}

/**
 * A Kafka broker for the test file: started before its tests, removed after.
 * Call at the top level of a test file; read `broker` and `kafka` inside tests.
 */
export function kafkaForTests(
  clientId: string,
  opts: { skipped?: boolean } = {},
): {
  readonly broker: KafkaBroker;
  readonly kafka: Kafka;
} {
  let broker: KafkaBroker | null = null;
  let kafka: Kafka | null = null;
  beforeAll(async () => {
    // The file's tests are skipped (tools.ts kafkaSkip): start no broker.
    if (opts.skipped) return;
    broker = await startKafka();
    kafka = new Kafka({ clientId, brokers: [broker.brokers], logLevel: logLevel.NOTHING });
  });
  afterAll(async () => {
    await broker?.[Symbol.asyncDispose]();
  });
  return {
    get broker() {
      if (!broker) throw new Error('the Kafka broker is not started yet');
      return broker;
    },
    get kafka() {
      if (!kafka) throw new Error('the Kafka broker is not started yet');
      return kafka;
    },
  };
}

/** The connector's Kafka settings for a test context: its own topics, three partitions. */
export function kafkaSettings(
  ctx: { slot: string },
  brokers: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    SLOTLINE_KAFKA_BROKERS: brokers,
    SLOTLINE_KAFKA_TOPIC_TRADES: `${ctx.slot}.trades`,
    SLOTLINE_KAFKA_TOPIC_POOLS: `${ctx.slot}.pools`,
    SLOTLINE_KAFKA_TOPIC_PARTITIONS: '3',
    ...extra,
  };
}
