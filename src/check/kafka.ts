import { readFile } from 'node:fs/promises';
import type { SASLOptions } from 'kafkajs';
import type { Config } from '../config.js';
import { SlotlineError } from '../errors.js';
import { loadKafkajs } from '../sinks/kafka-client.js';
import { classifyKafkaError } from '../sinks/kafka-errors.js';
import { failed, ok, type CheckResult } from './result.js';

const BROKERS = 'SLOTLINE_KAFKA_BROKERS';

/**
 * The brokers answer with the configured TLS and SASL settings, and the topics
 * exist or may be created. Reads only (lists topics). kafkajs loads through
 * kafka-client.ts, as the sink loads it (the first load decides its modules).
 */
export async function checkKafka(cfg: Config): Promise<CheckResult[]> {
  const brokers = cfg.kafkaBrokers ?? [];
  const { Kafka, logLevel } = (await loadKafkajs()).kafkajs;
  let admin: ReturnType<InstanceType<typeof Kafka>['admin']> | null = null;
  try {
    const ca = cfg.kafkaSslCaFile === null ? null : await readFile(cfg.kafkaSslCaFile, 'utf8');
    const kafka = new Kafka({
      clientId: cfg.kafkaClientId,
      brokers,
      ssl: cfg.kafkaSsl ? (ca === null ? true : { ca: [ca] }) : false,
      sasl: cfg.kafkaSasl ? (cfg.kafkaSasl as SASLOptions) : undefined,
      connectionTimeout: 5_000,
      requestTimeout: 10_000,
      retry: { retries: 1, initialRetryTime: 200, maxRetryTime: 1_000 },
      logLevel: logLevel.NOTHING,
    });
    admin = kafka.admin();
    await admin.connect();
    const topics = new Set(await admin.listTopics());
    const cluster = await admin.describeCluster();
    return [
      ok('kafka', 'connect', `${cluster.brokers.length} broker(s) answer at ${brokers.join(',')}`),
      ...topicsOf(cfg).map((t) => checkTopic(cfg, t, topics.has(t))),
    ];
  } catch (err) {
    return [failed('connect', unreachable(err), 'kafka')];
  } finally {
    await admin?.disconnect().catch(() => undefined);
  }
}

/** classifyKafkaError's code and message, with where to look. */
function unreachable(err: unknown): SlotlineError {
  const e =
    (err as { code?: string } | null)?.code === 'ENOENT'
      ? new SlotlineError('kafka_ca_file', `kafka: ${(err as Error).message}`)
      : classifyKafkaError(err);
  const fix =
    e.code === 'auth_failed'
      ? 'correct SLOTLINE_KAFKA_SASL_MECHANISM, SLOTLINE_KAFKA_SASL_USERNAME and SLOTLINE_KAFKA_SASL_PASSWORD'
      : `check the host:port list in ${BROKERS}, that the brokers run, and SLOTLINE_KAFKA_SSL (TLS listeners need it)`;
  return new SlotlineError(e.code, e.problem, {
    cause: err,
    remedy: {
      side: 'kafka',
      variable: e.code === 'auth_failed' ? 'SLOTLINE_KAFKA_SASL_USERNAME' : BROKERS,
      fix,
    },
  });
}

/** The topics the connector writes: exactly-once, its progress topic too. */
function topicsOf(cfg: Config): string[] {
  const topics = [cfg.kafkaTopicTrades, cfg.kafkaTopicPools];
  if (cfg.kafkaDelivery === 'exactly-once') topics.push(cfg.kafkaTopicProgress);
  return topics;
}

function checkTopic(cfg: Config, topic: string, exists: boolean): CheckResult {
  const name = `topic ${topic}`;
  if (exists) return ok('kafka', name, 'exists');
  if (cfg.kafkaCreateTopics)
    return ok(
      'kafka',
      name,
      `missing: created at the first write (${cfg.kafkaTopicPartitions} partitions)`,
    );
  return failed(
    name,
    new SlotlineError(
      'kafka_topic_missing',
      `kafka: topic ${topic} does not exist and SLOTLINE_KAFKA_CREATE_TOPICS is false`,
      {
        remedy: {
          side: 'kafka',
          variable: 'SLOTLINE_KAFKA_CREATE_TOPICS',
          fix:
            topic === cfg.kafkaTopicProgress && cfg.kafkaDelivery === 'exactly-once'
              ? `create the progress topic (kafka-topics.sh --create --topic ${topic} --partitions 1 --config cleanup.policy=compact), or set SLOTLINE_KAFKA_CREATE_TOPICS=true`
              : `create the topic (kafka-topics.sh --create --topic ${topic}), or set SLOTLINE_KAFKA_CREATE_TOPICS=true`,
        },
      },
    ),
  );
}
