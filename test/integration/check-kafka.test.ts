/**
 * `slotline check` with Kafka configured: the brokers are asked (a real KRaft
 * broker), each topic reported, and a broker that does not answer or a
 * missing topic that may not be created fails the check with its fix.
 */
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { runCommand } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { freePort } from '../harness/http.js';
import { startKafka } from '../harness/kafka.js';
import { createPonderTables } from '../harness/ponder.js';

describe('slotline check with Kafka', () => {
  it('reports the brokers and each topic; an unreachable broker or a missing topic fails with its fix', async () => {
    await using broker = await startKafka();
    await using ctx = await createTestContext('check_kafka');
    await createPonderTables(ctx.source);
    const trades = `check-trades-${randomUUID()}`;
    const pools = `check-pools-${randomUUID()}`;
    const env = ctx.env({
      SLOTLINE_KAFKA_BROKERS: broker.brokers,
      SLOTLINE_KAFKA_TOPIC_TRADES: trades,
      SLOTLINE_KAFKA_TOPIC_POOLS: pools,
    });

    const creatable = await runCommand(env, ['check']);
    expect(creatable.code, creatable.output).toBe(0);
    expect(creatable.output).toMatch(/kafka +connect +ok +1 broker\(s\) answer/);
    expect(creatable.output).toMatch(
      new RegExp(`kafka +topic ${trades} +ok +missing: created at the first write`),
    );

    // Topics may not be created: the missing one fails, the existing one is fine.
    const admin = new Kafka({ brokers: [broker.brokers], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      await admin.createTopics({
        topics: [{ topic: pools, numPartitions: 1 }],
        waitForLeaders: true,
      });
    } finally {
      await admin.disconnect();
    }
    const fixed = await runCommand({ ...env, SLOTLINE_KAFKA_CREATE_TOPICS: 'false' }, ['check']);
    expect(fixed.code, fixed.output).toBe(1);
    expect(fixed.output).toMatch(new RegExp(`kafka +topic ${pools} +ok +exists`));
    expect(fixed.output).toMatch(new RegExp(`kafka +topic ${trades} +FAIL .*does not exist`));
    expect(fixed.output).toMatch(
      /code: kafka_topic_missing\n\s+variable: SLOTLINE_KAFKA_CREATE_TOPICS\n\s+Fix: create the topic/,
    );

    // Nothing listens there.
    const nowhere = `127.0.0.1:${await freePort()}`;
    const down = await runCommand({ ...env, SLOTLINE_KAFKA_BROKERS: nowhere }, ['check']);
    expect(down.code, down.output).toBe(1);
    expect(down.output).toMatch(/kafka +connect +FAIL/);
    expect(down.output).toMatch(
      /variable: SLOTLINE_KAFKA_BROKERS\n\s+Fix: check the host:port list/,
    );
    // The databases were still checked, and passed.
    expect(down.output).toMatch(/sink +privileges +ok/);
  });
});
