import { describe, expect, it } from 'vitest';
import type { Pool, Trade } from '../trades/map.js';
import type { Change, DeadLetter } from './batch.js';
import { coalesce } from './coalesce.js';

function trade(id: string, over: Partial<Trade> = {}): Trade {
  return {
    tradeId: id,
    time: '1700000000',
    chainId: '1',
    poolId: '0xpool',
    symbol: 'ETH',
    side: 'buy',
    price: '100',
    quantity: '2',
    transactionId: null,
    ...over,
  };
}

function pool(id: string, coin: string): Pool {
  return {
    id,
    chainId: '1',
    coin,
    orderBook: `ob-${id}`,
    baseCurrency: null,
    quoteCurrency: null,
    baseDecimals: null,
    quoteDecimals: null,
    volume: null,
    volumeInQuote: null,
    price: null,
    timestamp: null,
  };
}

const upsert = (
  t: Trade,
  lsn: bigint,
  op: 'insert' | 'update' | 'snapshot' = 'insert',
): Change => ({
  kind: 'trade_upsert',
  lsn,
  op,
  trade: t,
});

function letter(key: string): DeadLetter {
  return {
    sourceTable: 'public.order_book_trades',
    operation: 'insert',
    rowKey: key,
    commitTime: null,
    raw: { id: key },
    code: 'null_price',
    reason: 'price is NULL',
  };
}

describe('coalesce', () => {
  it('a plain insert is an upsert without replace', () => {
    const [seg, ...rest] = coalesce([upsert(trade('t1'), 10n)]);
    expect(rest).toEqual([]);
    expect(seg!.tradeUpserts).toEqual([{ trade: trade('t1'), lsn: 10n, replace: false }]);
    expect(seg!.tradeDeletes).toEqual([]);
    expect(seg!.truncate).toBeNull();
  });

  it('a snapshot row alone does not replace', () => {
    const [seg] = coalesce([upsert(trade('t1'), 10n, 'snapshot')]);
    expect(seg!.tradeUpserts[0]?.replace).toBe(false);
  });

  it('an update alone replaces (its time may have moved)', () => {
    const [seg] = coalesce([upsert(trade('t1'), 10n, 'update')]);
    expect(seg!.tradeUpserts).toEqual([{ trade: trade('t1'), lsn: 10n, replace: true }]);
  });

  it('insert then update of the same id: one upsert with the last values, replacing', () => {
    const later = trade('t1', { time: '1700000060', price: '150' });
    const [seg] = coalesce([
      upsert(trade('t1'), 10n),
      upsert(trade('t2'), 10n),
      upsert(later, 20n, 'update'),
    ]);
    const t1 = seg!.tradeUpserts.filter((r) => r.trade.tradeId === 't1');
    expect(t1).toEqual([{ trade: later, lsn: 20n, replace: true }]);
    expect(seg!.tradeUpserts.find((r) => r.trade.tradeId === 't2')?.replace).toBe(false);
    expect(seg!.tradeDeletes).toEqual([]);
  });

  it('insert then delete: one delete', () => {
    const [seg] = coalesce([
      upsert(trade('t1'), 10n),
      { kind: 'trade_delete', lsn: 20n, tradeId: 't1' },
    ]);
    expect(seg!.tradeUpserts).toEqual([]);
    expect(seg!.tradeDeletes).toEqual([{ tradeId: 't1', lsn: 20n }]);
  });

  it('delete then insert (reorg): one upsert with replace', () => {
    const again = trade('t1', { price: '99' });
    const [seg] = coalesce([{ kind: 'trade_delete', lsn: 10n, tradeId: 't1' }, upsert(again, 20n)]);
    expect(seg!.tradeDeletes).toEqual([]);
    expect(seg!.tradeUpserts).toEqual([{ trade: again, lsn: 20n, replace: true }]);
  });

  it('truncate splits segments in order', () => {
    const segs = coalesce([
      upsert(trade('t1'), 10n),
      { kind: 'pool_upsert', lsn: 10n, op: 'insert', pool: pool('p1', 'ETH') },
      { kind: 'truncate', lsn: 20n, tables: ['trades'] },
      upsert(trade('t1', { price: '7' }), 30n),
      { kind: 'truncate', lsn: 40n, tables: ['trades', 'pools'] },
      upsert(trade('t3'), 50n),
    ]);
    expect(segs).toHaveLength(3);
    expect(segs[0]!.tradeUpserts.map((r) => r.lsn)).toEqual([10n]);
    expect(segs[0]!.poolUpserts.map((p) => p.pool.id)).toEqual(['p1']);
    expect(segs[0]!.truncate).toEqual({ tables: ['trades'], lsn: 20n });
    // after the truncate the insert is a plain insert again
    expect(segs[1]!.tradeUpserts).toEqual([
      { trade: trade('t1', { price: '7' }), lsn: 30n, replace: false },
    ]);
    expect(segs[1]!.truncate).toEqual({ tables: ['trades', 'pools'], lsn: 40n });
    expect(segs[2]!.tradeUpserts.map((r) => r.trade.tradeId)).toEqual(['t3']);
    expect(segs[2]!.truncate).toBeNull();
  });

  it('a trailing truncate adds no empty segment; an empty batch gives one empty segment', () => {
    expect(coalesce([{ kind: 'truncate', lsn: 5n, tables: ['pools'] }])).toHaveLength(1);
    const empty = coalesce([]);
    expect(empty).toHaveLength(1);
    expect(empty[0]).toMatchObject({ tradeUpserts: [], tradeDeletes: [], truncate: null });
  });

  it('dead letters are deduplicated by (table, key, lsn)', () => {
    const [seg] = coalesce([
      { kind: 'dead_letter', lsn: 10n, letter: letter('a') },
      { kind: 'dead_letter', lsn: 10n, letter: letter('a') },
      { kind: 'dead_letter', lsn: 20n, letter: letter('a') },
      { kind: 'dead_letter', lsn: 10n, letter: letter('b') },
      {
        kind: 'dead_letter',
        lsn: 10n,
        letter: { ...letter('a'), sourceTable: 'public.pools' },
      },
    ]);
    expect(
      seg!.deadLetters.map((d) => `${d.letter.sourceTable}|${d.letter.rowKey}|${d.lsn}`).sort(),
    ).toEqual([
      'public.order_book_trades|a|10',
      'public.order_book_trades|a|20',
      'public.order_book_trades|b|10',
      'public.pools|a|10',
    ]);
  });

  it('pools are coalesced by id, last state wins', () => {
    const [seg] = coalesce([
      { kind: 'pool_upsert', lsn: 10n, op: 'insert', pool: pool('p1', 'ETH') },
      { kind: 'pool_upsert', lsn: 20n, op: 'update', pool: pool('p1', 'WETH') },
      { kind: 'pool_upsert', lsn: 20n, op: 'insert', pool: pool('p2', 'BTC') },
      { kind: 'pool_delete', lsn: 30n, poolId: 'p2' },
      { kind: 'pool_delete', lsn: 30n, poolId: 'p3' },
      { kind: 'pool_upsert', lsn: 40n, op: 'insert', pool: pool('p3', 'SOL') },
    ]);
    expect(seg!.poolUpserts).toEqual([
      { pool: pool('p1', 'WETH'), lsn: 20n },
      { pool: pool('p3', 'SOL'), lsn: 40n },
    ]);
    expect(seg!.poolDeletes).toEqual([{ poolId: 'p2', lsn: 30n }]);
  });
});
