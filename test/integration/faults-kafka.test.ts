/**
 * The Kafka broker restarted under load, once cleanly and once by SIGKILL,
 * with the Kafka sink at-least-once: afterwards every trade is in Kafka
 * (re-sent copies allowed, nothing missing) and in TimescaleDB, and verify is
 * clean. (Exactly-once through broker restarts: kafka-exactly-once.test.ts.)
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  expectSinkEqualsSource,
  expectSlotAtCheckpoint,
  sourceTrades,
} from '../harness/compare.js';
import { startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { startKafka, type KafkaBroker } from '../harness/kafka.js';
import { readTopic } from '../harness/kafka-topic.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
} from '../harness/ponder.js';
import { FAST } from '../harness/settings.js';
import { expectVerifyClean } from '../harness/verify.js';
import { kafkaSkip } from '../harness/tools.js';
import { waitFor } from '../harness/wait.js';

const external = Boolean(process.env.SLOTLINE_TEST_KAFKA_BROKERS);
const skipped = kafkaSkip('the Kafka broker fault tests') !== null;
let broker: KafkaBroker;
let kafka: Kafka;

beforeAll(async () => {
  if (external || skipped) return;
  broker = await startKafka();
  kafka = new Kafka({
    clientId: 'faults-kafka',
    brokers: [broker.brokers],
    logLevel: logLevel.NOTHING,
  });
});

afterAll(async () => {
  await broker?.[Symbol.asyncDispose]();
});

/** Trade id → values of every message in `topic` up to its current end. */
async function tradesInTopic(
  topic: string,
): Promise<{ messages: number; ids: Map<string, string> }> {
  const ids = new Map<string, string>();
  const messages = await readTopic(kafka, topic);
  for (const m of messages) {
    const a = m.value.after;
    if (a) ids.set(String(a.id), `${String(a.price)}/${String(a.quantity)}/${String(a.side)}`);
  }
  return { messages: messages.length, ids };
}

describe.skipIf(skipped)('faults: Kafka broker', () => {
  it.skipIf(external)(
    'at-least-once, restarted mid-stream (cleanly, then by SIGKILL): every trade in Kafka and in TimescaleDB',
    async () => {
      await using ctx = await createTestContext('kafka_restart');
      await createPonderTables(ctx.source);
      const pools = Array.from({ length: 3 }, (_, i) => makePool(i));
      await insertPools(ctx.source, 'public', pools);
      const topic = `${ctx.slot}.trades`;
      const env = ctx.env({
        ...FAST,
        SLOTLINE_KAFKA_BROKERS: broker.brokers,
        SLOTLINE_KAFKA_TOPIC_TRADES: topic,
        SLOTLINE_KAFKA_TOPIC_POOLS: `${ctx.slot}.pools`,
        SLOTLINE_KAFKA_TOPIC_PARTITIONS: '3',
        SLOTLINE_KAFKA_DELIVERY: 'at-least-once',
      });
      await using c = startConnector(env);
      await expectSlotAtCheckpoint(ctx);

      let writing = true;
      let next = 0;
      const writer = (async () => {
        while (writing) {
          const rows = Array.from({ length: 5 }, () =>
            makeTrade(next, pools[next % 3]!, { timestamp: 1_700_000_000 + next++ * 3 }),
          );
          await insertTrades(ctx.source, 'public', rows);
          await sleep(10);
        }
      })();
      const restarts: string[] = [];
      try {
        for (const how of ['restart', 'kill'] as const) {
          const at = next;
          await waitFor(async () => next > at + 300 || undefined, {
            timeoutMs: 20_000,
            what: 'writes',
          });
          if (how === 'restart') await broker.stop();
          else broker.kill();
          await sleep(1_000);
          await broker.start();
          restarts.push(how);
        }
        await sleep(1_000);
      } finally {
        writing = false;
        await writer;
      }
      await expectSinkEqualsSource(ctx, { timeoutMs: 90_000 });
      const want = await sourceTrades(ctx.source);
      // Kafka's own checkpoint covers everything written: then the topic holds every trade.
      const wal = (
        await ctx.source.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')
      ).rows[0]!.lsn;
      await waitFor(
        async () =>
          (
            await ctx.sink.query<{ ok: boolean }>(
              `SELECT lsn >= $2::pg_lsn AS ok FROM slotline.checkpoints WHERE slot = $1 AND sink = 'kafka'`,
              [ctx.slot, wal],
            )
          ).rows[0]?.ok || undefined,
        { timeoutMs: 90_000, what: `the Kafka checkpoint to reach ${wal}` },
      );
      const got = await tradesInTopic(topic);
      const missing = want.filter(
        (t) => got.ids.get(t.id) !== `${t.price}/${t.quantity}/${t.side}`,
      );
      expect(missing.slice(0, 5)).toEqual([]);
      expect(got.ids.size).toBe(want.length);
      const r = await expectVerifyClean(ctx, { minRows: want.length });
      console.info(
        `Kafka broker: ${restarts.join(', ')}; ${want.length} trades, ${got.messages} messages in Kafka ` +
          `(${got.messages - want.length} re-sent copies), TimescaleDB equal, verify clean over ${r.rows.source}`,
      );
      expect((await c.stop()).code, c.output()).toBe(0);
    },
  );
});
