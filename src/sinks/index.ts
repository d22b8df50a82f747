import type { Config } from '../config.js';
import type { Logger } from '../log.js';
// kafka.ts only imports kafkajs' types; the library itself loads in KafkaSink.open().
import { KafkaSink } from './kafka.js';
import type { Sink } from './sink.js';
import { TimescaleSink } from './timescale.js';

/**
 * The enabled sinks, TimescaleDB first: its checkpoint row also carries the
 * slot's lifecycle (snapshot state). The ack sent to PostgreSQL is the minimum
 * over all of them. Kafka is one of them only when SLOTLINE_KAFKA_BROKERS is set.
 */
export function createSinks(cfg: Config, log: Logger): Sink[] {
  const sinks: Sink[] = [
    new TimescaleSink({
      url: cfg.sinkUrl,
      schema: cfg.sinkSchema,
      slot: cfg.slot,
      deadPeerTimeoutMs: cfg.deadPeerTimeoutMs,
      log: log.child({ component: 'timescale' }),
    }),
  ];
  const kafka = createKafkaSink(cfg, log);
  if (kafka) sinks.push(kafka);
  return sinks;
}

/** The Kafka sink when SLOTLINE_KAFKA_BROKERS is set. */
function createKafkaSink(cfg: Config, log: Logger): KafkaSink | null {
  if (cfg.kafkaBrokers === null) return null;
  return new KafkaSink({
    brokers: cfg.kafkaBrokers,
    clientId: cfg.kafkaClientId,
    topics: { trades: cfg.kafkaTopicTrades, pools: cfg.kafkaTopicPools },
    delivery: cfg.kafkaDelivery,
    progressTopic: cfg.kafkaTopicProgress,
    transactionalId: cfg.kafkaTransactionalId,
    createTopics: cfg.kafkaCreateTopics,
    partitions: cfg.kafkaTopicPartitions,
    replicationFactor: cfg.kafkaReplicationFactor,
    tombstones: cfg.kafkaTombstones,
    compression: cfg.kafkaCompression,
    ssl: cfg.kafkaSsl,
    sslCaFile: cfg.kafkaSslCaFile,
    sasl: cfg.kafkaSasl,
    checkpointUrl: cfg.sinkUrl,
    slot: cfg.slot,
    sourceDb: databaseOf(cfg.sourceUrl),
    sourceSchema: cfg.sourceSchema,
    log: log.child({ component: 'kafka' }),
  });
}

/**
 * `slotline setup` with SLOTLINE_KAFKA_BROKERS: the topics (exactly-once: the
 * compacted progress topic too), created when missing and allowed.
 */
export async function setupKafkaTopics(cfg: Config, log: Logger): Promise<string[] | null> {
  const sink = createKafkaSink(cfg, log);
  if (!sink) return null;
  await sink.open();
  try {
    await sink.ensureTopics();
  } finally {
    await sink.close();
  }
  const topics = [cfg.kafkaTopicTrades, cfg.kafkaTopicPools];
  if (cfg.kafkaDelivery === 'exactly-once') topics.push(cfg.kafkaTopicProgress);
  return topics;
}

/** The database a postgres:// URL names (PostgreSQL's default: the user's name). */
function databaseOf(url: string): string {
  const u = new URL(url);
  return decodeURIComponent(u.pathname.replace(/^\//, '')) || decodeURIComponent(u.username);
}
