/**
 * A microbenchmark of the Kafka sink alone: the KafkaSink writes synthetic
 * 5,000-change batches of trades (the bench's shape: five pools, 1,000-trade
 * source transactions) into a real broker, exactly-once or at-least-once,
 * with a plain PostgreSQL cluster holding its checkpoint row. No decoder, no
 * TimescaleDB: what it measures is the Kafka writer's own ceiling (envelopes,
 * kafkajs encoding, the broker round trips).
 *
 *   npm run bench:kafka-sink -- [--rows 300000] [--delivery at-least-once] [--batch 5000]
 *     [--compression gzip]
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof dist/kbench/scripts/kafka-sink-bench.js   (after one run)
 *
 * The connector's code is the product build (dist/), loaded at run time.
 *
 * SLOTLINE_TEST_KAFKA_BROKERS reuses a running broker (test/harness/kafka.ts).
 */
import { existsSync, symlinkSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { Change } from '../src/sinks/batch.js';
import { startCluster } from '../test/harness/cluster.js';
import { startKafka } from '../test/harness/kafka.js';

// The product build, as the connector runs it (dist/kbench/scripts/ -> dist/).
const product = (path: string): Promise<unknown> =>
  import(new URL(`../../${path}`, import.meta.url).href);
const { Batch } = (await product('sinks/batch.js')) as typeof import('../src/sinks/batch.js');
const { KafkaSink } = (await product('sinks/kafka.js')) as typeof import('../src/sinks/kafka.js');
const { createLogger } = (await product('log.js')) as typeof import('../src/log.js');
type Batch = import('../src/sinks/batch.js').Batch;

// test/harness/kafka-classpath.ts finds the broker's pom beside itself: dist/kbench/test/kafka.
const pomLink = fileURLToPath(new URL('../test/kafka', import.meta.url));
if (!existsSync(pomLink))
  symlinkSync(fileURLToPath(new URL('../../../test/kafka', import.meta.url)), pomLink);

const arg = (name: string, def: string): string => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? (process.argv[i + 1] ?? def) : def;
};
const ROWS = Number(arg('--rows', '300000'));
const BATCH = Number(arg('--batch', '5000'));
const TX = 1000;
const DELIVERY = arg('--delivery', 'exactly-once') as 'exactly-once' | 'at-least-once';
const COMPRESSION = arg('--compression', 'none');
const SLOT = 'kbench';

/** Five pools shaped like test/harness/ponder.ts makePool(): 32-byte ids, 18-decimal raw prices. */
const POOLS = Array.from({ length: 5 }, (_, i) => ({
  id: `0x${(0xabcdef12345 * (i + 1)).toString(16).padStart(64, '7')}`,
  chain_id: 31337,
  coin: ['WETH', 'WBTC', 'LINK', 'UNI', 'AAVE'][i] ?? 'X',
  price: (BigInt([3000, 60000, 15, 8, 90][i] ?? 1) * 10n ** 18n).toString(),
}));

function tradeId(g: number): string {
  return `0x${g.toString(16).padStart(64, '0')}-${g % 2}`;
}

/** Trades g .. g+n-1 as streamed changes, 1,000 per source transaction. */
function makeBatch(seq: number, from: number, n: number): Batch {
  const b = new Batch(seq);
  let tx = { xid: 1000 + Math.floor(from / TX), commitTime: 800_000_000_000_000n };
  for (let g = from; g < from + n; g++) {
    if (g % TX === 0) tx = { xid: 1000 + g / TX, commitTime: 800_000_000_000_000n + BigInt(g) };
    const pool = POOLS[g % POOLS.length]!;
    const lsn = BigInt(0x1000000 + Math.floor(g / TX) * 0x10000);
    const change: Change = {
      kind: 'trade_upsert',
      op: 'insert',
      lsn,
      seq: g % TX,
      tx,
      trade: {
        tradeId: tradeId(g),
        time: String(1_700_000_000 + Math.floor(g / 3)),
        chainId: String(pool.chain_id),
        poolId: pool.id,
        symbol: `${pool.coin}/USDC`,
        side: g % 2 === 0 ? 'buy' : 'sell',
        price: (BigInt(pool.price) + BigInt(g % 1000)).toString(),
        quantity: (10n ** 16n * BigInt(1 + (g % 50))).toString(),
        transactionId: `0x${(g * 7919).toString(16).padStart(64, '0')}`,
      },
    };
    b.changes.push(change);
  }
  const last = from + n;
  if (last % TX === 0) b.checkpoint = BigInt(0x1000000 + (last / TX - 1) * 0x10000 + 0x100);
  b.commitTime = 800_000_000_000_000n;
  return b;
}

async function main(): Promise<void> {
  const kafka = await startKafka();
  const pgc = await startCluster();
  const url = pgc.adminUrl;
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  await db.query(
    await readFile(new URL('../../../sql/001_connector.sql', import.meta.url), 'utf8'),
  );
  await db.query(`INSERT INTO slotline.leaders (slot, epoch, holder) VALUES ($1, 1, 'bench')`, [
    SLOT,
  ]);
  await db.query(
    `INSERT INTO slotline.checkpoints (slot, sink, lsn, state) VALUES ($1, 'timescale', '0/1000000', 'streaming'),
       ($1, 'kafka', '0/1000000', 'streaming')`,
    [SLOT],
  );
  await db.end();
  const log = createLogger({ level: 'warn' });
  const topic = `kbench.${Date.now()}`;
  const sink = new KafkaSink({
    brokers: [kafka.brokers],
    clientId: 'kbench',
    topics: { trades: `${topic}.trades`, pools: `${topic}.pools` },
    createTopics: true,
    partitions: 6,
    replicationFactor: null,
    delivery: DELIVERY,
    progressTopic: `${topic}.progress`,
    transactionalId: `kbench.${topic}`,
    tombstones: false,
    ssl: false,
    sslCaFile: null,
    sasl: null,
    checkpointUrl: url,
    slot: SLOT,
    sourceDb: 'ponder',
    sourceSchema: 'public',
    log,
    compression: COMPRESSION as 'none' | 'gzip',
  });
  await sink.open();
  await sink.claimEpoch();
  await sink.checkpoint();
  // Warm-up: one batch, not counted.
  await sink.write(makeBatch(0, 0, BATCH));
  let peakRss = 0;
  let atPeak = process.memoryUsage();
  const sample = (): void => {
    const m = process.memoryUsage();
    if (m.rss > peakRss) {
      peakRss = m.rss;
      atPeak = m;
    }
  };
  const sampler = setInterval(sample, 20);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let seq = 1;
  for (let g = BATCH; g < BATCH + ROWS; g += BATCH) {
    await sink.write(makeBatch(seq++, g, Math.min(BATCH, BATCH + ROWS - g)));
  }
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  clearInterval(sampler);
  sample();
  await sink.close();
  const load = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
  console.log(
    JSON.stringify({
      delivery: DELIVERY,
      compression: COMPRESSION,
      rows: ROWS,
      batch: BATCH,
      rowsPerSec: Math.round(ROWS / (ms / 1000)),
      cpuMsPerKRow: Math.round(((cpu.user + cpu.system) / 1000 / ROWS) * 1000 * 10) / 10,
      cpuShare: Math.round(((cpu.user + cpu.system) / 1000 / ms) * 100) / 100,
      peakRssMiB: Math.round(peakRss / 1048576),
      atPeakMiB: Object.fromEntries(
        Object.entries(atPeak).map(([k, v]) => [k, Math.round(v / 1048576)]),
      ),
      load,
    }),
  );
  await pgc[Symbol.asyncDispose]();
  await kafka[Symbol.asyncDispose]();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
