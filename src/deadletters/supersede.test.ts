import { describe, expect, it } from 'vitest';
import type { Change, DeadLetter } from '../sinks/batch.js';
import type { Trade } from '../trades/map.js';
import { lastChanges } from './supersede.js';

const trade = (id: string): Trade => ({
  tradeId: id,
  time: '1700000000',
  chainId: '1',
  poolId: 'p',
  symbol: 'A/B',
  side: 'buy',
  price: '1',
  quantity: '1',
  transactionId: null,
});

const letter = (key: string, table = 'public.order_book_trades'): DeadLetter => ({
  sourceTable: table,
  operation: 'insert',
  rowKey: key,
  commitTime: null,
  raw: {},
  code: 'null_price',
  reason: 'price is null',
});

describe('lastChanges', () => {
  it('keeps the last change of each key, in stream order, and says whether it is a letter', () => {
    const changes: Change[] = [
      { kind: 'dead_letter', lsn: 10n, letter: letter('a') },
      { kind: 'trade_upsert', lsn: 20n, op: 'update', trade: trade('a') },
      { kind: 'trade_upsert', lsn: 20n, op: 'insert', trade: trade('b') },
      { kind: 'dead_letter', lsn: 30n, letter: letter('b') },
      { kind: 'trade_delete', lsn: 30n, tradeId: 'c' },
      { kind: 'pool_upsert', lsn: 30n, op: 'update', pool: { id: 'p1' } as never },
      { kind: 'dead_letter', lsn: 40n, letter: letter('p2', 'public.pools') },
    ];
    expect(lastChanges(changes)).toEqual([
      { table: 'order_book_trades', key: 'a', lsn: 20n, letter: false },
      { table: 'order_book_trades', key: 'b', lsn: 30n, letter: true },
      { table: 'order_book_trades', key: 'c', lsn: 30n, letter: false },
      { table: 'pools', key: 'p1', lsn: 30n, letter: false },
      { table: 'pools', key: 'p2', lsn: 40n, letter: true },
    ]);
  });

  it('a truncate covers its whole table; letters without a key supersede nothing', () => {
    const changes: Change[] = [
      { kind: 'dead_letter', lsn: 5n, letter: letter('(missing)') },
      { kind: 'truncate', lsn: 7n, tables: ['trades'] },
    ];
    expect(lastChanges(changes)).toEqual([
      { table: 'order_book_trades', key: null, lsn: 7n, letter: false },
    ]);
  });
});
