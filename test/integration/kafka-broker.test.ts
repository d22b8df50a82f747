/**
 * The Kafka test harness itself: a real KRaft broker that takes an idempotent producer's
 * messages, hands them back in order, and keeps them (and committed offsets) across a
 * graceful stop and restart.
 */
import { randomUUID } from 'node:crypto';
import { Kafka, Partitioners, logLevel, type Consumer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../harness/wait.js';
import { startKafka, type KafkaBroker } from '../harness/kafka.js';
import { kafkaSkip } from '../harness/tools.js';

const COUNT = 1000;
const BATCH = 100;

const skipped = kafkaSkip('the Kafka broker harness tests') !== null;

describe.skipIf(skipped)('Kafka broker harness', () => {
  let broker: KafkaBroker;
  let kafka: Kafka;
  const topic = `harness-${randomUUID()}`;
  const firstGroup = `harness-${randomUUID()}`;

  beforeAll(async () => {
    broker = await startKafka();
    kafka = new Kafka({
      clientId: 'slotline-kafka-broker-test',
      brokers: [broker.brokers],
      logLevel: logLevel.NOTHING,
    });
  });

  afterAll(async () => {
    await broker?.[Symbol.asyncDispose]();
  });

  it('takes 1000 idempotently produced messages and hands them back in order', async () => {
    const admin = kafka.admin();
    await admin.connect();
    try {
      const created = await admin.createTopics({
        topics: [{ topic, numPartitions: 1 }],
        waitForLeaders: true,
      });
      expect(created).toBe(true);
    } finally {
      await admin.disconnect();
    }

    const producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    await producer.connect();
    try {
      for (let start = 0; start < COUNT; start += BATCH) {
        await producer.send({
          topic,
          acks: -1,
          messages: Array.from({ length: BATCH }, (_, i) => ({
            key: 'k',
            value: String(start + i),
          })),
        });
      }
    } finally {
      await producer.disconnect();
    }

    const consumed = await consumeAll(kafka, topic, firstGroup, COUNT);
    expect(consumed.map((m) => m.value)).toEqual(sequence(COUNT));
    expect(consumed.map((m) => m.offset)).toEqual(sequence(COUNT));
  });

  it.skipIf(Boolean(process.env.SLOTLINE_TEST_KAFKA_BROKERS))(
    'keeps messages and committed offsets across stop() and start()',
    async () => {
      const port = broker.brokers;
      await broker.stop();
      await broker.start();
      expect(broker.brokers).toBe(port);

      const admin = kafka.admin();
      await admin.connect();
      try {
        const offsets = await admin.fetchTopicOffsets(topic);
        expect(offsets).toHaveLength(1);
        expect(offsets[0]).toMatchObject({ partition: 0, low: '0', high: String(COUNT) });
        // Right after a restart the group coordinator may still be loading: a retriable answer.
        const committed = await waitFor(
          () => admin.fetchOffsets({ groupId: firstGroup, topics: [topic] }),
          { timeoutMs: 30_000, intervalMs: 250, what: 'the group coordinator to load' },
        );
        expect(committed[0]?.partitions).toEqual([
          expect.objectContaining({ partition: 0, offset: String(COUNT) }),
        ]);
      } finally {
        await admin.disconnect();
      }

      const again = await consumeAll(kafka, topic, `harness-${randomUUID()}`, COUNT);
      expect(again.map((m) => m.value)).toEqual(sequence(COUNT));
    },
  );
});

function sequence(n: number): string[] {
  return Array.from({ length: n }, (_, i) => String(i));
}

/** Reads `count` messages from the start of `topic` with a fresh consumer group, then commits. */
async function consumeAll(
  kafka: Kafka,
  topic: string,
  groupId: string,
  count: number,
  timeoutMs = 30_000,
): Promise<{ offset: string; value: string }[]> {
  const consumer: Consumer = kafka.consumer({ groupId });
  const received: { offset: string; value: string }[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new Error(`received ${received.length} of ${count} messages in ${timeoutMs} ms`)),
        timeoutMs,
      );
      consumer
        .run({
          eachMessage: async ({ message }) => {
            received.push({ offset: message.offset, value: message.value?.toString() ?? '' });
            if (received.length >= count) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
    // eachMessage auto-commits; make sure the last offsets reach the broker before leaving.
    await consumer.commitOffsets([{ topic, partition: 0, offset: String(count) }]);
  } finally {
    await consumer.disconnect();
  }
  return received;
}
