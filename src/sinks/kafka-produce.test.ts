import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  installFastPaths,
  loadKafkajs,
  produceEncodings,
  VERIFIED_KAFKAJS,
} from './kafka-client.js';
import {
  crc32c,
  encodeProduceRequest,
  groupMessagesPerPartition,
  type ProduceArgs,
} from './kafka-produce.js';

const require = createRequire(import.meta.url);

/** kafkajs' own modules, the references (the stock encoder, also once replaced in this process). */
type Encoded = { buffer: Buffer };
type RequestFn = ((args: ProduceArgs) => { encode: () => Promise<Encoded> }) & {
  stock?: RequestFn;
};
const requestModule = require('kafkajs/src/protocol/requests/produce/v3/request.js') as RequestFn;
const kafkajsRequest: RequestFn = requestModule.stock ?? requestModule;
const kafkajsCrc32c = require('kafkajs/src/protocol/recordBatch/crc32C/index.js') as (
  b: Buffer,
) => number;
const Long = require('kafkajs/src/utils/long.js') as { fromValue(v: unknown): unknown };
type Grouping = typeof groupMessagesPerPartition & { stock?: typeof groupMessagesPerPartition };
const groupModule = require('kafkajs/src/producer/groupMessagesPerPartition.js') as Grouping;
const kafkajsGroup = groupModule.stock ?? groupModule;

const NOW = 1_700_000_000_123;

async function kafkajsBytes(args: ProduceArgs): Promise<Buffer> {
  const realNow = Date.now;
  Date.now = () => NOW;
  try {
    return Buffer.from((await kafkajsRequest(args).encode()).buffer);
  } finally {
    Date.now = realNow;
  }
}

const bytesOrText = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 300 }),
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
);
const message = fc.record(
  {
    key: fc.oneof(fc.constant(null), bytesOrText),
    value: fc.oneof(
      fc.constant(null),
      bytesOrText,
      fc.string({ minLength: 2000, maxLength: 20_000 }),
    ),
    headers: fc.dictionary(fc.string({ unit: 'grapheme', maxLength: 20 }), bytesOrText, {
      maxKeys: 3,
    }),
  },
  { requiredKeys: ['value'] },
);
const produceArgs: fc.Arbitrary<ProduceArgs> = fc.record({
  acks: fc.constantFrom(-1, 0, 1),
  timeout: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  transactionalId: fc.oneof(fc.constant(null), fc.string({ unit: 'grapheme', maxLength: 40 })),
  producerId: fc.oneof(
    fc.constant(-1),
    fc.bigInt({ min: 0n, max: 2n ** 62n }).map((v) => Long.fromValue(v.toString())),
  ),
  producerEpoch: fc.integer({ min: 0, max: 32_767 }),
  topicData: fc.array(
    fc.record({
      topic: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
      partitions: fc.array(
        fc.record({
          partition: fc.nat(1000),
          firstSequence: fc.nat(2 ** 31 - 1),
          messages: fc.array(message, { maxLength: 200 }),
        }),
        { maxLength: 4 },
      ),
    }),
    { minLength: 1, maxLength: 3 },
  ),
});

describe('encodeProduceRequest', () => {
  it('writes the bytes kafkajs writes, for any request the sink can send', async () => {
    await fc.assert(
      fc.asyncProperty(produceArgs, async (args) => {
        const ours = encodeProduceRequest(args, () => NOW);
        expect(ours).not.toBeNull();
        expect(ours!.equals(await kafkajsBytes(args))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('writes a batch of the sink’s own records (a transaction of 2,000, six partitions) as kafkajs does', async () => {
    const value = JSON.stringify({ after: { id: 'x'.repeat(66), price: '1'.repeat(40) } });
    const messages = Array.from({ length: 2_000 }, (_, i) => ({
      key: `{"pool_id":"0x${(i % 7).toString(16).padStart(40, '0')}"}`,
      value: value + 'é'.repeat(i % 3),
      headers: { 'slotline.lsn': '16/B374D848', 'slotline.seq': String(i) },
    }));
    const args: ProduceArgs = {
      acks: -1,
      timeout: 30_000,
      transactionalId: 'slotline.slot.trades',
      producerId: Long.fromValue('4321'),
      producerEpoch: 3,
      topicData: [
        {
          topic: 'ponder.order_book_trades',
          partitions: [0, 1, 2, 3, 4, 5].map((p) => ({
            partition: p,
            firstSequence: 1_000_000 * p,
            messages: messages.filter((_, i) => i % 6 === p),
          })),
        },
      ],
    };
    const ours = encodeProduceRequest(args, () => NOW)!;
    expect(ours.length).toBeGreaterThan(2_000 * value.length);
    expect(ours.equals(await kafkajsBytes(args))).toBe(true);
  });

  it('leaves to kafkajs what it does not cover: compression, timestamps, header arrays, other key types', () => {
    const base = (m: Record<string, unknown>, compression = 0): ProduceArgs => ({
      acks: -1,
      timeout: 1000,
      compression,
      topicData: [{ topic: 't', partitions: [{ partition: 0, messages: [{ value: 'v', ...m }] }] }],
    });
    expect(encodeProduceRequest(base({}))).not.toBeNull();
    expect(encodeProduceRequest(base({}, 1))).toBeNull();
    expect(encodeProduceRequest(base({ timestamp: '1700000000000' }))).toBeNull();
    expect(encodeProduceRequest(base({ headers: { h: ['a', 'b'] } }))).toBeNull();
    expect(encodeProduceRequest(base({ headers: { h: null } }))).toBeNull();
    // kafkajs reads own keys only; an inherited one is left to it.
    const inherited: unknown = Object.assign(Object.create({ up: 'x' }) as object, { own: 'y' });
    expect(encodeProduceRequest(base({ headers: inherited }))).toBeNull();
    expect(encodeProduceRequest(base({ headers: { own: 'y' } }))).not.toBeNull();
    expect(encodeProduceRequest(base({ key: 42 }))).toBeNull();
  });
});

describe('crc32c', () => {
  it('is CRC-32C (Castagnoli): the standard check value', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(Buffer.alloc(0))).toBe(0);
  });

  it('agrees with kafkajs’ byte-wise CRC32C on any bytes and any range', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.nat(), fc.nat(), (a, x, y) => {
        const b = Buffer.from(a);
        const start = b.length === 0 ? 0 : x % b.length;
        const end = start + (b.length === start ? 0 : y % (b.length - start + 1));
        expect(crc32c(b, start, end)).toBe(kafkajsCrc32c(b.subarray(start, end)));
      }),
      { numRuns: 2_000 },
    );
  });
});

describe('groupMessagesPerPartition', () => {
  it('gives kafkajs’ groups, each in the messages’ order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.nat(11), { maxLength: 500 }),
        fc.integer({ min: 0, max: 12 }),
        (ps, n) => {
          const args = {
            topic: 't',
            partitionMetadata: Array.from({ length: n }, (_, i) => ({ partitionId: i })),
            messages: ps.map((partition, i) => ({ partition, i })),
            partitioner: ({ message }: { message: { partition: number } }) => message.partition,
          };
          const ours = groupMessagesPerPartition(args);
          expect(ours).toEqual(kafkajsGroup(args));
          expect(Object.values(ours).flat().length).toBe(n === 0 ? 0 : ps.length);
        },
      ),
    );
  });
});

describe('kafkajs with the fast paths', () => {
  it('is a verified kafkajs: an upgrade fails here until kafka-produce.ts is checked against it', () => {
    const version = (require('kafkajs/package.json') as { version: string }).version;
    expect(VERIFIED_KAFKAJS).toContain(version);
  });

  it('encodes produce requests of every version kafkajs negotiates (3 to 7) with kafka-produce.ts', async () => {
    const { fastPaths } = await loadKafkajs();
    expect(fastPaths.produceEncoding).toBe(true);
    expect(fastPaths.grouping).toBe(true);
    expect(installFastPaths()).toBe(fastPaths);
    const produce = require('kafkajs/src/protocol/requests/produce/index.js') as {
      protocol: (v: { version: number }) => (a: ProduceArgs) => {
        request: { apiVersion: number; encode: () => Promise<Encoded> };
      };
    };
    const args: ProduceArgs = {
      acks: -1,
      timeout: 1000,
      topicData: [
        { topic: 't', partitions: [{ partition: 0, messages: [{ key: 'k', value: 'v' }] }] },
      ],
    };
    for (const v of [3, 4, 5, 6, 7]) {
      const before = produceEncodings.slotline;
      const { request } = produce.protocol({ version: v })(args);
      expect(request.apiVersion).toBe(v);
      const bytes = Buffer.from((await request.encode()).buffer);
      expect(produceEncodings.slotline).toBe(before + 1);
      expect(bytes.subarray(0, 8)).toEqual(Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0x03, 0xe8]));
    }
  });
});
