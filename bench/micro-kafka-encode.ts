/**
 * Microbenchmark of the produce request encoding, without a broker: the
 * connector's own records (kafka-envelope.ts) of the benchmark's trades
 * (bench/workload.ts: five pools, 1,000-row source transactions), grouped
 * over six partitions as kafkajs groups them, then encoded as one produce
 * request per 2,000 records, by kafkajs' own encoder and by kafka-produce.ts.
 * Checks both give the same bytes, then prints µs of process CPU per record
 * for each, and from the changes (the records built, grouped and encoded). Not
 * part of the test suite:
 *
 *   npm run build && tsc -p bench/tsconfig.json && \
 *     node dist/bench/bench/micro-kafka-encode.js [--records 2000] [--rounds 300]
 */
import { createRequire } from 'node:module';
import type { Change } from '../src/sinks/batch.js';
import {
  changeRecords,
  type EnvelopeOptions,
  RecentTradePools,
} from '../src/sinks/kafka-envelope.js';
import { encodeProduceRequest, type ProduceArgs } from '../src/sinks/kafka-produce.js';
import { positiveMurmur2 } from '../src/sinks/kafka-partitioner.js';
import { POOLS, tradeId } from './workload.js';
import { numberArg } from './args.js';

const RECORDS = numberArg('--records', 2000);
const ROUNDS = numberArg('--rounds', 300);
const PARTITIONS = 6;

type Encoded = { buffer: Buffer };
type RequestFn = ((a: ProduceArgs) => { encode: () => Promise<Encoded> }) & { stock?: RequestFn };
const loaded = createRequire(import.meta.url)(
  'kafkajs/src/protocol/requests/produce/v3/request.js',
) as RequestFn;
const kafkajsRequest = loaded.stock ?? loaded;

const OPTIONS: EnvelopeOptions = {
  topics: { trades: 'ponder.order_book_trades', pools: 'ponder.pools' },
  version: '0.1.0',
  name: 'slotline',
  db: 'ponder',
  schema: 'public',
  tombstones: false,
};
const UNIT = 10_000_000_000_000_000n;

/** Trades `from…` as the connector maps the ones workload.ts's INSERT_TRADES writes. */
function changes(from: number): Change[] {
  const out: Change[] = [];
  for (let g = from; g < from + RECORDS; g++) {
    const pool = POOLS[g % 5]!;
    const tx = Math.floor(g / 1000);
    out.push({
      kind: 'trade_upsert',
      op: 'insert',
      lsn: 0x16_0000_0000n + BigInt(tx) * 0x10000n,
      seq: g % 1000,
      tx: { xid: 1000 + tx, commitTime: 786_000_000_000_000n + BigInt(g) },
      trade: {
        tradeId: tradeId(g),
        time: String(1_700_000_000 + Math.floor(g / 3)),
        chainId: '31337',
        poolId: pool.order_book!,
        symbol: pool.coin,
        side: g % 2 === 0 ? 'buy' : 'sell',
        price: (BigInt(pool.price!) + BigInt(g % 97) * UNIT).toString(),
        quantity: (BigInt((g % 50) + 1) * UNIT).toString(),
        transactionId: `0x${g.toString(16).padStart(64, 'a')}`,
      },
    });
  }
  return out;
}

/** One produce request's arguments: the records of `from…` grouped by key as kafkajs would. */
function request(from: number): ProduceArgs {
  const recent = new RecentTradePools();
  const partitions = Array.from({ length: PARTITIONS }, (_, partition) => ({
    partition,
    firstSequence: 0,
    messages: [] as { key: string; value: Buffer | null; headers: Record<string, string> }[],
  }));
  for (const c of changes(from)) {
    for (const r of changeRecords(c, OPTIONS, recent, 1_764_000_000_000)) {
      const p = positiveMurmur2(Buffer.from(r.key)) % PARTITIONS;
      partitions[p]!.messages.push({ key: r.key, value: r.value, headers: r.headers });
    }
  }
  return {
    acks: -1,
    timeout: 30_000,
    transactionalId: 'slotline.slotline.ponder.order_book_trades',
    producerId: 4321,
    producerEpoch: 2,
    topicData: [{ topic: OPTIONS.topics.trades, partitions }],
  };
}

async function cpuPerRecord(encode: (a: ProduceArgs) => Promise<unknown>): Promise<number> {
  const requests = Array.from({ length: 8 }, (_, i) => request(i * RECORDS));
  for (let i = 0; i < 30; i++) await encode(requests[i % requests.length]!);
  const start = process.cpuUsage();
  for (let i = 0; i < ROUNDS; i++) await encode(requests[i % requests.length]!);
  const used = process.cpuUsage(start);
  return (used.user + used.system) / (ROUNDS * RECORDS);
}

/**
 * µs of process CPU per record from the changes to the request's bytes: the
 * records built (kafka-envelope.ts), grouped and encoded, as a catch-up does.
 */
function fromChangesCpuPerRecord(): number {
  const start = process.cpuUsage();
  for (let i = 0; i < ROUNDS; i++) encodeProduceRequest(request((i % 8) * RECORDS));
  const used = process.cpuUsage(start);
  return (used.user + used.system) / (ROUNDS * RECORDS);
}

async function main(): Promise<void> {
  const sample = request(0);
  const now = Date.now;
  Date.now = () => 1_764_000_000_123;
  const theirs = Buffer.from((await kafkajsRequest(sample).encode()).buffer);
  Date.now = now;
  const ours = encodeProduceRequest(sample, () => 1_764_000_000_123);
  if (!ours?.equals(theirs)) throw new Error('kafka-produce.ts and kafkajs encode differently');
  console.log(
    `${RECORDS} records per request, ${(theirs.length / RECORDS).toFixed(0)} bytes per record, same bytes both ways`,
  );
  for (let round = 0; round < 2; round++) {
    const k = await cpuPerRecord((a) => kafkajsRequest(a).encode());
    const s = await cpuPerRecord((a) => Promise.resolve(encodeProduceRequest(a)));
    console.log(
      `kafkajs ${k.toFixed(2)} µs CPU per record, kafka-produce.ts ${s.toFixed(2)} (${(k / s).toFixed(1)}×)`,
    );
    console.log(
      `from the changes (records built, grouped, encoded): ${fromChangesCpuPerRecord().toFixed(2)} µs CPU per record`,
    );
  }
}

await main();
