import type { ICustomPartitioner, PartitionerArgs } from 'kafkajs';

/**
 * kafkajs' default (Java-compatible) partitioner with the hash of each key
 * remembered. The records of a batch carry a handful of keys (one per pool),
 * and kafkajs' own murmur2 works on 64-bit `Long` objects, allocating several
 * per byte group of every key of every message: a fifth of the sink's CPU in a
 * catch-up. The assignment is the same as kafkajs' DefaultPartitioner (and the
 * Java client's): an explicit `partition` wins; a key goes to
 * `toPositive(murmur2(utf8 key)) % partitions` over all of the topic's
 * partitions, whatever their leaders; a message without a key goes to
 * kafkajs' own partitioner (round robin over the available ones).
 */
export function memoPartitioner(
  fallback: ICustomPartitioner,
  maxKeys = DEFAULT_MAX_KEYS,
): ICustomPartitioner {
  return () => {
    const hashes = new Map<string, number>();
    const unkeyed = fallback();
    return (args: PartitionerArgs): number => {
      const { message } = args;
      if (message.partition !== null && message.partition !== undefined) return message.partition;
      const key = message.key;
      if (key === null || key === undefined) return unkeyed(args);
      const n = args.partitionMetadata.length;
      if (typeof key !== 'string') return positiveMurmur2(key) % n;
      let h = hashes.get(key);
      if (h === undefined) {
        // Keys are few (pools); a flood of distinct ones only restarts the memo.
        if (hashes.size >= maxKeys) hashes.clear();
        h = positiveMurmur2(Buffer.from(key, 'utf8'));
        hashes.set(key, h);
      }
      return h % n;
    };
  };
}

const DEFAULT_MAX_KEYS = 10_000;

const SEED = 0x9747b28c;
const M = 0x5bd1e995;

/**
 * Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2) in 32-bit
 * integer arithmetic, as Java computes it; `& 0x7fffffff` as Java's toPositive.
 */
export function positiveMurmur2(data: Uint8Array): number {
  const length = data.length;
  let h = (SEED ^ length) | 0;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k =
      (data[i4] as number) |
      ((data[i4 + 1] as number) << 8) |
      ((data[i4 + 2] as number) << 16) |
      ((data[i4 + 3] as number) << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  const tail = length & ~3;
  const rest = length & 3;
  if (rest === 3) h ^= (data[tail + 2] as number) << 16;
  if (rest >= 2) h ^= (data[tail + 1] as number) << 8;
  if (rest >= 1) {
    h ^= data[tail] as number;
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h & 0x7fffffff;
}
