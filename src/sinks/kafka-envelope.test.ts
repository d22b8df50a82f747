import { describe, expect, it } from 'vitest';
import { parseLsn } from '../checkpoint/lsn.js';
import type { Pool, Trade } from '../trades/map.js';
import type { Change, SourceTx } from './batch.js';
import {
  changeRecords,
  chunkRecords,
  commitTimeMs,
  LSN_HEADER,
  RecentTradePools,
  recordBytes,
  SEQ_HEADER,
  type EnvelopeOptions,
  type KafkaRecord,
} from './kafka-envelope.js';

const UINT256_MAX = ((1n << 256n) - 1n).toString();
const NOW = 1_800_000_000_000;
const OPTS: EnvelopeOptions = {
  topics: { trades: 'ponder.order_book_trades', pools: 'ponder.pools' },
  version: '0.1.0',
  name: 'slotline',
  db: 'ponder',
  schema: 'public',
  tombstones: false,
};
// 2024-01-01T00:00:00.123456Z in µs since 2000-01-01.
const COMMIT_MICROS = (1_704_067_200_000n - 946_684_800_000n) * 1000n + 123_456n;
const TX: SourceTx = { xid: 4242, commitTime: COMMIT_MICROS };
const LSN = parseLsn('1/2A3B4C');

function trade(over: Partial<Trade> = {}): Trade {
  return {
    tradeId: '0xabc-0',
    time: '1700000000',
    chainId: '31337',
    poolId: '0xorderbook',
    symbol: 'MWETH/MUSDC',
    side: 'buy',
    price: UINT256_MAX,
    quantity: '12345678901234567890',
    transactionId: '0xabc',
    ...over,
  };
}

function pool(over: Partial<Pool> = {}): Pool {
  return {
    id: '0xpool',
    chainId: '31337',
    coin: 'MWETH/MUSDC',
    orderBook: '0xorderbook',
    baseCurrency: '0xbase',
    quoteCurrency: '0xquote',
    baseDecimals: '18',
    quoteDecimals: '6',
    volume: '99999999999999999999999999999',
    volumeInQuote: '0',
    price: '2500000000000000000000',
    timestamp: '1700000000',
    ...over,
  };
}

function records(c: Change, opts: EnvelopeOptions = OPTS, recent = new RecentTradePools()) {
  return changeRecords(c, opts, recent, NOW);
}

const value = (r: KafkaRecord | undefined): Record<string, unknown> =>
  JSON.parse(r?.value?.toString('utf8') ?? 'null') as Record<string, unknown>;

describe('changeRecords', () => {
  it('a streamed trade insert: Debezium envelope, exact amounts, symbol and volume, keyed by pool', () => {
    const out = records({
      kind: 'trade_upsert',
      lsn: LSN,
      op: 'insert',
      trade: trade(),
      tx: TX,
      seq: 3,
    });
    expect(out).toHaveLength(1);
    const r = out[0]!;
    expect(r.topic).toBe('ponder.order_book_trades');
    expect(JSON.parse(r.key)).toEqual({ pool_id: '0xorderbook' });
    expect(r.headers).toEqual({ [LSN_HEADER]: '1/2A3B4C', [SEQ_HEADER]: '3' });
    expect(r.everyPartition).toBeUndefined();
    expect(value(r)).toEqual({
      before: null,
      after: {
        id: '0xabc-0',
        chain_id: 31337,
        price: UINT256_MAX,
        quantity: '12345678901234567890',
        timestamp: 1700000000,
        transaction_id: '0xabc',
        side: 'buy',
        pool_id: '0xorderbook',
        symbol: 'MWETH/MUSDC',
        volume: (BigInt(UINT256_MAX) * 12345678901234567890n).toString(),
      },
      source: {
        version: '0.1.0',
        connector: 'slotline',
        name: 'slotline',
        ts_ms: 1_704_067_200_123,
        snapshot: 'false',
        db: 'ponder',
        schema: 'public',
        table: 'order_book_trades',
        txId: 4242,
        lsn: Number(LSN),
      },
      op: 'c',
      ts_ms: NOW,
    });
    // The 78-digit amounts are digit strings in the JSON text itself, never numbers.
    expect(r.value?.toString()).toContain(`"price":"${UINT256_MAX}"`);
  });

  it('updates are op u; snapshot rows op r, stamped with the read time and no transaction', () => {
    const u = records({
      kind: 'trade_upsert',
      lsn: LSN,
      op: 'update',
      trade: trade(),
      tx: TX,
      seq: 0,
    });
    expect(value(u[0])).toMatchObject({ op: 'u', before: null });
    const s = records({ kind: 'trade_upsert', lsn: LSN, op: 'snapshot', trade: trade() });
    expect(value(s[0])).toMatchObject({
      op: 'r',
      source: { snapshot: 'true', ts_ms: NOW, txId: null, lsn: Number(LSN) },
    });
    expect(s[0]?.headers).toEqual({ [LSN_HEADER]: '1/2A3B4C' });
  });

  it('a trade delete follows its insert into the same pool key, and the pool is then forgotten', () => {
    const recent = new RecentTradePools();
    records(
      { kind: 'trade_upsert', lsn: 1n, op: 'insert', trade: trade(), tx: TX, seq: 0 },
      OPTS,
      recent,
    );
    const del: Change = { kind: 'trade_delete', lsn: 2n, tradeId: '0xabc-0', tx: TX, seq: 0 };
    const [d] = records(del, OPTS, recent);
    expect(JSON.parse(d!.key)).toEqual({ pool_id: '0xorderbook' });
    expect(d!.everyPartition).toBeUndefined();
    expect(value(d)).toMatchObject({
      before: { id: '0xabc-0', pool_id: '0xorderbook' },
      after: null,
      op: 'd',
    });
    expect(recent.poolOf('0xabc-0')).toBeUndefined();
  });

  it('a delete of a trade whose pool is unknown goes to every partition, keyed by the trade id', () => {
    const out = records({ kind: 'trade_delete', lsn: 2n, tradeId: 't9', tx: TX, seq: 1 });
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ topic: OPTS.topics.trades, everyPartition: true });
    expect(JSON.parse(out[0]!.key)).toEqual({ id: 't9' });
    expect(value(out[0])).toMatchObject({
      before: { id: 't9', pool_id: null },
      after: null,
      op: 'd',
    });
  });

  it('never follows a trade delete with a tombstone, even when tombstones are on', () => {
    const recent = new RecentTradePools();
    const on = { ...OPTS, tombstones: true };
    records(
      { kind: 'trade_upsert', lsn: 1n, op: 'insert', trade: trade(), tx: TX, seq: 0 },
      on,
      recent,
    );
    const out = records({ kind: 'trade_delete', lsn: 2n, tradeId: '0xabc-0' }, on, recent);
    expect(out.map((r) => r.value === null)).toEqual([false]);
  });

  it('pools: keyed by id, numbers as numbers and numerics as strings; deletes with an optional tombstone', () => {
    const [p] = records({
      kind: 'pool_upsert',
      lsn: 5n,
      op: 'insert',
      pool: pool(),
      tx: TX,
      seq: 0,
    });
    expect(p!.topic).toBe('ponder.pools');
    expect(JSON.parse(p!.key)).toEqual({ id: '0xpool' });
    expect(value(p)).toMatchObject({
      op: 'c',
      after: {
        id: '0xpool',
        chain_id: 31337,
        coin: 'MWETH/MUSDC',
        order_book: '0xorderbook',
        base_decimals: 18,
        quote_decimals: 6,
        volume: '99999999999999999999999999999',
        price: '2500000000000000000000',
        timestamp: 1700000000,
      },
      source: { table: 'pools' },
    });
    const del: Change = { kind: 'pool_delete', lsn: 6n, poolId: '0xpool', tx: TX, seq: 1 };
    const plain = records(del);
    expect(plain).toHaveLength(1);
    expect(value(plain[0])).toMatchObject({ before: { id: '0xpool' }, after: null, op: 'd' });
    const withTombstone = records(del, { ...OPTS, tombstones: true });
    expect(withTombstone).toHaveLength(2);
    expect(withTombstone[1]).toMatchObject({
      key: plain[0]!.key,
      value: null,
      topic: 'ponder.pools',
    });
  });

  it('a pool with null columns keeps them null', () => {
    const bare = pool({ chainId: null, baseDecimals: null, volume: null, timestamp: null });
    const [p] = records({ kind: 'pool_upsert', lsn: 5n, op: 'snapshot', pool: bare });
    expect(value(p)).toMatchObject({
      after: { chain_id: null, base_decimals: null, volume: null, timestamp: null },
    });
  });

  it('a truncate is op t on every partition of each truncated table, with a non-null key', () => {
    const out = records({ kind: 'truncate', lsn: 7n, tables: ['trades', 'pools'], tx: TX, seq: 0 });
    expect(out.map((r) => [r.topic, r.everyPartition, JSON.parse(r.key)])).toEqual([
      ['ponder.order_book_trades', true, { table: 'public.order_book_trades' }],
      ['ponder.pools', true, { table: 'public.pools' }],
    ]);
    expect(value(out[0])).toMatchObject({ before: null, after: null, op: 't' });
  });

  it('dead letters are not sent', () => {
    const c: Change = {
      kind: 'dead_letter',
      lsn: 1n,
      letter: {
        sourceTable: 'public.order_book_trades',
        operation: 'insert',
        rowKey: 'x',
        commitTime: null,
        raw: { id: 'x' },
        code: 'null_price',
        reason: 'price is NULL',
      },
    };
    expect(records(c)).toEqual([]);
  });
});

describe('commitTimeMs', () => {
  it('converts µs since 2000-01-01 to unix ms', () => {
    expect(commitTimeMs(0n)).toBe(946_684_800_000);
    expect(commitTimeMs(COMMIT_MICROS)).toBe(1_704_067_200_123);
    expect(new Date(commitTimeMs(COMMIT_MICROS)).toISOString()).toBe('2024-01-01T00:00:00.123Z');
  });
});

describe('RecentTradePools', () => {
  it('remembers at least capacity/2 trades, forgets older generations, and a trade seen again is young again', () => {
    const r = new RecentTradePools(4); // generations of 2
    r.remember('a', 'p1');
    r.remember('b', 'p1'); // young {a,b} becomes old
    r.remember('c', 'p2');
    expect(r.poolOf('a')).toBe('p1');
    r.remember('a', 'p3'); // young {c,a} becomes old; {a,b} forgotten, but a is young again
    expect(r.poolOf('a')).toBe('p3');
    expect(r.poolOf('b')).toBeUndefined();
    expect(r.poolOf('c')).toBe('p2');
    r.forget('c');
    expect(r.poolOf('c')).toBeUndefined();
    expect(r.size).toBeLessThanOrEqual(4);
  });

  it('stays fast once full (a million trades through a 100k memory)', () => {
    const r = new RecentTradePools(100_000);
    const t0 = performance.now();
    for (let i = 0; i < 1_000_000; i++) r.remember(`t${i}`, 'p');
    // The single-Map LRU this replaced took about 40 s here.
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(r.poolOf('t999999')).toBe('p');
  });
});

describe('chunkRecords', () => {
  const rec = (i: number, size: number): KafkaRecord => ({
    topic: 't',
    key: `k${i % 3}`,
    value: Buffer.from('x'.repeat(size)),
    headers: { [LSN_HEADER]: `0/${i}` },
  });

  it('keeps every record, in order, in runs under the bound', () => {
    const all = Array.from({ length: 100 }, (_, i) => rec(i, 100));
    const chunks = chunkRecords(all, 1000);
    expect(chunks.flat()).toEqual(all);
    expect(chunks.length).toBeGreaterThan(10);
    for (const c of chunks)
      expect(c.reduce((n, r) => n + recordBytes(r), 0)).toBeLessThanOrEqual(1000);
  });

  it('sends a record larger than the bound alone', () => {
    const chunks = chunkRecords([rec(0, 10), rec(1, 5000), rec(2, 10)], 1000);
    expect(chunks.map((c) => c.length)).toEqual([1, 1, 1]);
  });

  it('returns no runs for no records', () => {
    expect(chunkRecords([], 1000)).toEqual([]);
  });

  it('counts bytes, not characters', () => {
    const ascii = recordBytes({ topic: 't', key: 'k', value: Buffer.from('aa'), headers: {} });
    const wide = recordBytes({ topic: 't', key: 'k', value: Buffer.from('éé'), headers: {} });
    expect(wide - ascii).toBe(2);
  });
});
