import { describe, expect, it } from 'vitest';
import type { Pool, Trade } from '../trades/map.js';
import type { Change, DeadLetter } from './batch.js';
import { coalesce } from './coalesce.js';
import type { RowVersion } from './version.js';

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

const TX = { xid: 1, commitTime: 0n };

/** A streamed change (in a transaction, at position `seq`), or with seq null a snapshot/retry row. */
const upsert = (
  t: Trade,
  lsn: bigint,
  op: 'insert' | 'update' | 'snapshot' = 'insert',
  seq: number | null = 0,
): Change =>
  seq === null || op === 'snapshot'
    ? { kind: 'trade_upsert', lsn, op, trade: t }
    : { kind: 'trade_upsert', lsn, op, trade: t, tx: TX, seq };

const del = (tradeId: string, lsn: bigint, seq = 0): Change => ({
  kind: 'trade_delete',
  lsn,
  tradeId,
  tx: TX,
  seq,
});

const v = (lsn: bigint, seq = -1, gen = 0): RowVersion => ({ gen, lsn, seq });

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
  it('a streamed insert is an upsert without replace (the hot path)', () => {
    const [seg, ...rest] = coalesce([upsert(trade('t1'), 10n)]);
    expect(rest).toEqual([]);
    expect(seg!.tradeUpserts).toEqual([{ trade: trade('t1'), version: v(10n, 0), replace: false }]);
    expect(seg!.tradeDeletes).toEqual([]);
    expect(seg!.truncate).toBeNull();
  });

  it('a snapshot, backfill or retried row replaces: the sink may hold its id at another time', () => {
    const [seg] = coalesce([
      upsert(trade('t1'), 10n, 'snapshot'),
      upsert(trade('t2'), 10n, 'insert', null),
    ]);
    expect(seg!.tradeUpserts.map((r) => [r.replace, r.version])).toEqual([
      [true, v(10n)],
      [true, v(10n)],
    ]);
  });

  it('an update alone replaces (its time may have moved)', () => {
    const [seg] = coalesce([upsert(trade('t1'), 10n, 'update', 3)]);
    expect(seg!.tradeUpserts).toEqual([{ trade: trade('t1'), version: v(10n, 3), replace: true }]);
  });

  it('carries the current generation, or the one a change brings', () => {
    const [seg] = coalesce([upsert(trade('t1'), 10n), { ...upsert(trade('t2'), 10n), gen: 2 }], 5);
    expect(seg!.tradeUpserts.map((r) => r.version.gen)).toEqual([5, 2]);
  });

  it('insert then update of the same id: one upsert with the last values, replacing', () => {
    const later = trade('t1', { time: '1700000060', price: '150' });
    const [seg] = coalesce([
      upsert(trade('t1'), 10n, 'insert', 0),
      upsert(trade('t2'), 10n, 'insert', 1),
      upsert(later, 20n, 'update', 0),
    ]);
    const t1 = seg!.tradeUpserts.filter((r) => r.trade.tradeId === 't1');
    expect(t1).toEqual([{ trade: later, version: v(20n, 0), replace: true }]);
    expect(seg!.tradeUpserts.find((r) => r.trade.tradeId === 't2')?.replace).toBe(false);
    expect(seg!.tradeDeletes).toEqual([]);
  });

  it('insert, update, delete, re-insert in one transaction: ordered by position, the last wins', () => {
    const last = trade('t1', { price: '4' });
    const [seg] = coalesce([
      upsert(trade('t1'), 10n, 'insert', 0),
      upsert(trade('t1', { time: '1700000060' }), 10n, 'update', 1),
      del('t1', 10n, 2),
      upsert(last, 10n, 'insert', 3),
    ]);
    expect(seg!.tradeDeletes).toEqual([]);
    expect(seg!.tradeUpserts).toEqual([{ trade: last, version: v(10n, 3), replace: true }]);
  });

  it('insert then delete: one delete', () => {
    const [seg] = coalesce([upsert(trade('t1'), 10n), del('t1', 20n)]);
    expect(seg!.tradeUpserts).toEqual([]);
    expect(seg!.tradeDeletes).toEqual([{ tradeId: 't1', version: v(20n, 0) }]);
  });

  it('a late older write (a retry queued after a delete) loses to the delete', () => {
    const [seg] = coalesce([
      del('t1', 20n, 4),
      upsert(trade('t1'), 20n, 'insert', null),
      upsert(trade('t2'), 5n, 'insert', null),
      { kind: 'pool_delete', lsn: 20n, poolId: 'p1', tx: TX, seq: 5 },
      { kind: 'pool_upsert', lsn: 20n, op: 'insert', pool: pool('p1', 'ETH') },
    ]);
    expect(seg!.tradeDeletes).toEqual([{ tradeId: 't1', version: v(20n, 4) }]);
    expect(seg!.tradeUpserts.map((r) => r.trade.tradeId)).toEqual(['t2']);
    expect(seg!.poolDeletes).toEqual([{ poolId: 'p1', version: v(20n, 5) }]);
    expect(seg!.poolUpserts).toEqual([]);
  });

  it('delete then insert (reorg): one upsert with replace', () => {
    const again = trade('t1', { price: '99' });
    const [seg] = coalesce([del('t1', 10n), upsert(again, 20n)]);
    expect(seg!.tradeDeletes).toEqual([]);
    expect(seg!.tradeUpserts).toEqual([{ trade: again, version: v(20n, 0), replace: true }]);
  });

  it('truncate splits segments in order', () => {
    const segs = coalesce([
      upsert(trade('t1'), 10n),
      { kind: 'pool_upsert', lsn: 10n, op: 'insert', pool: pool('p1', 'ETH'), tx: TX, seq: 1 },
      { kind: 'truncate', lsn: 20n, tables: ['trades'], tx: TX, seq: 0 },
      upsert(trade('t1', { price: '7' }), 30n),
      { kind: 'truncate', lsn: 40n, tables: ['trades', 'pools'], tx: TX, seq: 0 },
      upsert(trade('t3'), 50n),
    ]);
    expect(segs).toHaveLength(3);
    expect(segs[0]!.tradeUpserts.map((r) => r.version.lsn)).toEqual([10n]);
    expect(segs[0]!.poolUpserts.map((p) => p.pool.id)).toEqual(['p1']);
    expect(segs[0]!.truncate).toEqual({ tables: ['trades'], version: v(20n, 0) });
    // after the truncate the insert is a plain insert again
    expect(segs[1]!.tradeUpserts).toEqual([
      { trade: trade('t1', { price: '7' }), version: v(30n, 0), replace: false },
    ]);
    expect(segs[1]!.truncate).toEqual({ tables: ['trades', 'pools'], version: v(40n, 0) });
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
      seg!.deadLetters
        .map((d) => `${d.letter.sourceTable}|${d.letter.rowKey}|${d.version.lsn}`)
        .sort(),
    ).toEqual([
      'public.order_book_trades|a|10',
      'public.order_book_trades|a|20',
      'public.order_book_trades|b|10',
      'public.pools|a|10',
    ]);
  });

  it('pools are coalesced by id, newest state wins', () => {
    const [seg] = coalesce([
      { kind: 'pool_upsert', lsn: 10n, op: 'insert', pool: pool('p1', 'ETH'), tx: TX, seq: 0 },
      { kind: 'pool_upsert', lsn: 20n, op: 'update', pool: pool('p1', 'WETH'), tx: TX, seq: 0 },
      { kind: 'pool_upsert', lsn: 20n, op: 'insert', pool: pool('p2', 'BTC'), tx: TX, seq: 1 },
      { kind: 'pool_delete', lsn: 30n, poolId: 'p2', tx: TX, seq: 0 },
      { kind: 'pool_delete', lsn: 30n, poolId: 'p3', tx: TX, seq: 1 },
      { kind: 'pool_upsert', lsn: 40n, op: 'insert', pool: pool('p3', 'SOL'), tx: TX, seq: 0 },
    ]);
    expect(seg!.poolUpserts).toEqual([
      { pool: pool('p1', 'WETH'), version: v(20n, 0) },
      { pool: pool('p3', 'SOL'), version: v(40n, 0) },
    ]);
    expect(seg!.poolDeletes).toEqual([{ poolId: 'p2', version: v(30n, 0) }]);
  });
});
