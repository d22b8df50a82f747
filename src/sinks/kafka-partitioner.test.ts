import { createRequire } from 'node:module';
import fc from 'fast-check';
import { Partitioners, type PartitionMetadata } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { memoPartitioner, positiveMurmur2 } from './kafka-partitioner.js';

// kafkajs' own murmur2, the reference the memo must agree with.
const kafkajsMurmur2 = createRequire(import.meta.url)(
  'kafkajs/src/producer/partitioners/default/murmur2.js',
) as (key: Buffer | string) => number;

const metadata = (n: number, leaderless: number[] = []): PartitionMetadata[] =>
  Array.from({ length: n }, (_, partitionId) => ({
    partitionId,
    leader: leaderless.includes(partitionId) ? -1 : 0,
    partitionErrorCode: 0,
    replicas: [0],
    isr: [0],
  }));

describe('memoPartitioner', () => {
  it('hashes like kafkajs (Java) murmur2 for any key', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 80 }), (key) => {
        expect(positiveMurmur2(Buffer.from(key))).toBe(kafkajsMurmur2(key) & 0x7fffffff);
      }),
      { numRuns: 5_000 },
    );
    for (const len of [0, 1, 2, 3, 4, 5, 6, 7, 8, 63, 64, 65, 66, 67]) {
      const b = Buffer.alloc(len, 0xff);
      expect(positiveMurmur2(b)).toBe(kafkajsMurmur2(b) & 0x7fffffff);
    }
  });

  it('puts every key in the partition kafkajs’ DefaultPartitioner picks, for 1 to 64 partitions', () => {
    const ours = memoPartitioner(Partitioners.DefaultPartitioner)();
    const theirs = Partitioners.DefaultPartitioner();
    const keys = [
      ...Array.from({ length: 2_000 }, (_, i) =>
        JSON.stringify({ pool_id: `0x${i.toString(16).padStart(64, '0')}` }),
      ),
      ...Array.from({ length: 500 }, (_, i) => JSON.stringify({ id: `pool-${i}-é€😀` })),
      '',
      '{"table":"public.order_book_trades"}',
    ];
    for (const n of [1, 2, 3, 6, 7, 12, 64]) {
      // Leaderless partitions still count for keyed messages (Java does the same).
      const partitionMetadata = metadata(n, n > 2 ? [1] : []);
      for (const key of keys) {
        // Twice: the second answer comes from the memo.
        for (let i = 0; i < 2; i++) {
          const message = { key, value: 'v' };
          expect(ours({ topic: 't', partitionMetadata, message })).toBe(
            theirs({ topic: 't', partitionMetadata, message }),
          );
        }
      }
      const buf = Buffer.from('binary key');
      expect(ours({ topic: 't', partitionMetadata, message: { key: buf, value: 'v' } })).toBe(
        theirs({ topic: 't', partitionMetadata, message: { key: buf, value: 'v' } }),
      );
    }
  });

  it('keeps an explicit partition, and sends unkeyed messages round robin', () => {
    const ours = memoPartitioner(Partitioners.DefaultPartitioner)();
    const partitionMetadata = metadata(6);
    expect(
      ours({ topic: 't', partitionMetadata, message: { key: 'k', value: 'v', partition: 4 } }),
    ).toBe(4);
    const seen = new Set<number>();
    for (let i = 0; i < 6; i++)
      seen.add(ours({ topic: 't', partitionMetadata, message: { key: null, value: 'v' } }));
    expect(seen.size).toBe(6);
  });

  it('stays correct past its bound on distinct keys', () => {
    const ours = memoPartitioner(Partitioners.DefaultPartitioner, 10)();
    const theirs = Partitioners.DefaultPartitioner();
    const partitionMetadata = metadata(6);
    for (let i = 0; i < 100; i++) {
      const message = { key: `key-${i % 37}`, value: 'v' };
      expect(ours({ topic: 't', partitionMetadata, message })).toBe(
        theirs({ topic: 't', partitionMetadata, message }),
      );
    }
  });
});
