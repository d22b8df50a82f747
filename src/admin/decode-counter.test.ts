import { describe, expect, it } from 'vitest';
import type { PgoutputMessage, Relation } from '../decode/pgoutput.js';
import { createMetrics, DecodeCounter } from './metrics.js';

const relation = (name: string): Relation => ({
  oid: 1,
  schema: 'public',
  name,
  replicaIdentity: 'd',
  columns: [],
});

const begin: PgoutputMessage = { tag: 'begin', finalLsn: 1n, commitTime: 0n, xid: 1 };
const commit: PgoutputMessage = {
  tag: 'commit',
  flags: 0,
  commitLsn: 1n,
  endLsn: 2n,
  commitTime: 0n,
};

async function counted(messages: PgoutputMessage[]) {
  const metrics = createMetrics({ version: 'test', defaultMetrics: false });
  const counter = new DecodeCounter(metrics);
  for (const m of messages) counter.onMessage(m);
  const { values } = await metrics.eventsDecoded.get();
  const out: Record<string, number> = {};
  for (const v of values) out[`${v.labels.table}/${v.labels.operation}`] = v.value;
  return { out, transactions: (await metrics.transactions.get()).values[0]?.value ?? 0 };
}

describe('DecodeCounter', () => {
  it('counts row changes per table and operation at each commit', async () => {
    const trades = relation('order_book_trades');
    const pools = relation('pools');
    // A Relation message sent again (ALTER TABLE) is a new object with the same name.
    const tradesAgain = relation('order_book_trades');
    const { out, transactions } = await counted([
      begin,
      { tag: 'insert', relation: trades, new: [] },
      { tag: 'insert', relation: trades, new: [] },
      { tag: 'update', relation: pools, key: null, old: null, new: [] },
      { tag: 'insert', relation: tradesAgain, new: [] },
      { tag: 'delete', relation: trades, key: [], old: null },
      commit,
      begin,
      { tag: 'insert', relation: pools, new: [] },
      commit,
    ]);
    expect(out).toEqual({
      'order_book_trades/insert': 3,
      'order_book_trades/delete': 1,
      'pools/update': 1,
      'pools/insert': 1,
    });
    expect(transactions).toBe(2);
  });

  it('never counts a transaction that was cut off', async () => {
    const trades = relation('order_book_trades');
    const { out } = await counted([
      begin,
      { tag: 'insert', relation: trades, new: [] },
      begin,
      { tag: 'insert', relation: trades, new: [] },
      commit,
    ]);
    expect(out).toEqual({ 'order_book_trades/insert': 1 });
  });
});
