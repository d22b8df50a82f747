import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Lsn } from '../checkpoint/lsn.js';
import type { ColumnValue, PgoutputMessage, Relation } from '../decode/pgoutput.js';
import type { Batch, Change } from '../sinks/batch.js';
import { InflightQueue } from '../sinks/inflight.js';
import { PoolCache } from './pools.js';
import { ChangeRouter, type RouterOptions } from './router.js';

const SINK = 'timescale';
const log = pino({ level: 'silent' });

function relation(oid: number, schema: string, name: string, columns: string[]): Relation {
  return {
    oid,
    schema,
    name,
    replicaIdentity: 'd',
    columns: columns.map((c) => ({ name: c, typeOid: 25, typmod: -1, isKey: c === 'id' })),
  };
}

const TRADE_COLS = [
  'id',
  'chain_id',
  'price',
  'quantity',
  'timestamp',
  'transaction_id',
  'side',
  'pool_id',
];
const TRADES = relation(16401, 'public', 'order_book_trades', TRADE_COLS);
const POOLS = relation(16402, 'public', 'pools', ['id', 'chain_id', 'coin', 'order_book']);

function tradeRow(id: string, poolRef = '0xob1', price: string | null = '100'): ColumnValue[] {
  return [id, '1', price, '3', '1700000000', '0xtx', 'sell', poolRef];
}
function poolRow(id: string, orderBook: string, coin: string): ColumnValue[] {
  return [id, '1', coin, orderBook];
}

/** What begin() stamps on every change of its transaction. */
const TX = { xid: 1, commitTime: 1000n };
const begin = (finalLsn: Lsn): PgoutputMessage => ({
  tag: 'begin',
  finalLsn,
  commitTime: 1000n,
  xid: 1,
});
const commit = (commitLsn: Lsn, endLsn: Lsn): PgoutputMessage => ({
  tag: 'commit',
  flags: 0,
  commitLsn,
  endLsn,
  commitTime: 1000n,
});
const insert = (rel: Relation, row: ColumnValue[]): PgoutputMessage => ({
  tag: 'insert',
  relation: rel,
  new: row,
});

function setup(opts: Partial<RouterOptions> = {}) {
  const queue = new InflightQueue({ batchMaxRows: 1000, maxRows: 10_000, maxBytes: 1 << 24 }, [
    SINK,
  ]);
  const pools = new PoolCache('order_book');
  const router = new ChangeRouter(
    queue,
    pools,
    { sourceSchema: 'public', applyTruncate: true, idleAckIntervalMs: 1000, ...opts },
    log,
  );
  /** Everything a sink can take now, released. */
  const take = (): Batch[] => {
    const out: Batch[] = [];
    for (let b = queue.peek(SINK); b; b = queue.peek(SINK)) {
      out.push(b);
      queue.release(SINK, b);
    }
    return out;
  };
  const feed = (...msgs: PgoutputMessage[]) => {
    for (const m of msgs) router.onMessage(m, 10);
  };
  return { queue, pools, router, take, feed };
}

const changes = (batches: Batch[]): Change[] => batches.flatMap((b) => b.changes);
const lastCheckpoint = (batches: Batch[]) => batches.at(-1)?.checkpoint ?? null;

afterEach(() => {
  vi.useRealTimers();
});

describe('ChangeRouter', () => {
  it('routes begin/relation/insert/commit to one trade_upsert and a checkpoint at the end LSN', () => {
    const { pools, router, take, feed } = setup();
    pools.set({ id: 'p1', orderBook: '0xob1', coin: 'ETH/USDC' });
    feed(begin(0x100n));
    expect(router.inTransaction).toBe(true);
    feed({ tag: 'relation', relation: TRADES }, insert(TRADES, tradeRow('t1')));
    expect(take()).toEqual([]); // nothing before the commit
    feed(commit(0x100n, 0x128n));
    const batches = take();
    const c = changes(batches);
    expect(c).toHaveLength(1);
    expect(c[0]).toMatchObject({
      kind: 'trade_upsert',
      op: 'insert',
      lsn: 0x100n,
      trade: { tradeId: 't1', symbol: 'ETH/USDC', side: 'sell' },
    });
    expect(lastCheckpoint(batches)).toBe(0x128n);
    expect(batches.at(-1)?.commits).toBe(1);
    expect(router.stats.transactions).toBe(1);
    expect(router.stats.lastCommitEnd).toBe(0x128n);
    expect(router.inTransaction).toBe(false);
  });

  it('skips a transaction that committed before skipBefore, checkpoint included', () => {
    const { pools, router, take, feed } = setup();
    pools.set({ id: 'p1', orderBook: '0xob1', coin: 'ETH' });
    router.skipBefore = 0x200n;
    feed(
      begin(0x1f0n),
      { tag: 'relation', relation: TRADES },
      insert(TRADES, tradeRow('old')),
      commit(0x1f0n, 0x200n),
    );
    expect(take()).toEqual([]);
    expect(router.stats.skippedTransactions).toBe(1);
    // the relation seen inside the skipped transaction still counts
    feed(begin(0x200n), insert(TRADES, tradeRow('new')), commit(0x200n, 0x228n));
    const batches = take();
    expect(changes(batches).map((c) => c.kind === 'trade_upsert' && c.trade.tradeId)).toEqual([
      'new',
    ]);
    expect(lastCheckpoint(batches)).toBe(0x228n);
  });

  it('a pool inserted earlier in the same transaction resolves the trade symbol', () => {
    const { take, feed } = setup();
    feed(
      begin(0x300n),
      { tag: 'relation', relation: POOLS },
      { tag: 'relation', relation: TRADES },
      insert(POOLS, poolRow('p7', '0xob7', 'BTC/USDC')),
      insert(TRADES, tradeRow('t7', '0xob7')),
      commit(0x300n, 0x330n),
    );
    const c = changes(take());
    expect(c.map((x) => x.kind)).toEqual(['pool_upsert', 'trade_upsert']);
    expect(c[1]).toMatchObject({ trade: { symbol: 'BTC/USDC', poolId: '0xob7' } });
  });

  it('an unknown pool becomes a dead letter with its raw values', () => {
    const { router, take, feed } = setup();
    feed(
      begin(0x400n),
      { tag: 'relation', relation: TRADES },
      insert(TRADES, tradeRow('t9', '0xnowhere')),
      commit(0x400n, 0x430n),
    );
    const batches = take();
    const c = changes(batches);
    expect(c).toHaveLength(1);
    const d = c[0]!;
    expect(d.kind).toBe('dead_letter');
    if (d.kind !== 'dead_letter') return;
    expect(d.lsn).toBe(0x400n);
    expect(d.letter).toMatchObject({
      sourceTable: 'public.order_book_trades',
      operation: 'insert',
      rowKey: 't9',
      commitTime: 1000n,
      code: 'unknown_pool',
      raw: {
        id: 't9',
        chain_id: '1',
        price: '100',
        quantity: '3',
        timestamp: '1700000000',
        transaction_id: '0xtx',
        side: 'sell',
        pool_id: '0xnowhere',
      },
    });
    expect(d.letter.reason).toContain('0xnowhere');
    expect(router.stats.deadLetters).toBe(1);
    // the stream goes on: the checkpoint still moves
    expect(lastCheckpoint(batches)).toBe(0x430n);
  });

  it('a delete becomes a trade_delete', () => {
    const { take, feed } = setup();
    feed(
      begin(0x500n),
      { tag: 'relation', relation: TRADES },
      {
        tag: 'delete',
        relation: TRADES,
        key: ['t1', null, null, null, null, null, null, null],
        old: null,
      },
      commit(0x500n, 0x530n),
    );
    expect(changes(take())).toEqual([
      { kind: 'trade_delete', lsn: 0x500n, tradeId: 't1', tx: TX, seq: 0 },
    ]);
  });

  it('an update changing the id deletes the old id and upserts the new one', () => {
    const { pools, take, feed } = setup();
    pools.set({ id: 'p1', orderBook: '0xob1', coin: 'ETH' });
    feed(
      begin(0x600n),
      { tag: 'relation', relation: TRADES },
      {
        tag: 'update',
        relation: TRADES,
        key: ['t-old', null, null, null, null, null, null, null],
        old: null,
        new: tradeRow('t-new'),
      },
      commit(0x600n, 0x630n),
    );
    const c = changes(take());
    expect(c.map((x) => x.kind)).toEqual(['trade_delete', 'trade_upsert']);
    expect(c[0]).toEqual({ kind: 'trade_delete', lsn: 0x600n, tradeId: 't-old', tx: TX, seq: 0 });
    expect(c[1]).toMatchObject({ op: 'update', trade: { tradeId: 't-new' }, tx: TX, seq: 1 });
  });

  it('an update keeping the id is a single upsert', () => {
    const { pools, take, feed } = setup();
    pools.set({ id: 'p1', orderBook: '0xob1', coin: 'ETH' });
    feed(
      begin(0x650n),
      { tag: 'relation', relation: TRADES },
      { tag: 'update', relation: TRADES, key: null, old: null, new: tradeRow('t1') },
      commit(0x650n, 0x680n),
    );
    expect(changes(take()).map((x) => x.kind)).toEqual(['trade_upsert']);
  });

  it('a truncate of source tables becomes a truncate change', () => {
    const { take, feed } = setup();
    const other = relation(16500, 'public', 'unrelated', ['id']);
    feed(
      begin(0x700n),
      { tag: 'relation', relation: TRADES },
      { tag: 'relation', relation: POOLS },
      { tag: 'relation', relation: other },
      {
        tag: 'truncate',
        relations: [TRADES, POOLS, other],
        cascade: false,
        restartIdentity: false,
      },
      commit(0x700n, 0x730n),
    );
    const batches = take();
    expect(changes(batches)).toEqual([
      { kind: 'truncate', lsn: 0x700n, tables: ['trades', 'pools'], tx: TX, seq: 0 },
    ]);
    expect(lastCheckpoint(batches)).toBe(0x730n);
  });

  it('with applyTruncate=false a truncate produces no change, only the checkpoint', () => {
    const { take, feed } = setup({ applyTruncate: false });
    feed(
      begin(0x700n),
      { tag: 'relation', relation: TRADES },
      { tag: 'truncate', relations: [TRADES], cascade: false, restartIdentity: false },
      commit(0x700n, 0x730n),
    );
    const batches = take();
    expect(changes(batches)).toEqual([]);
    expect(lastCheckpoint(batches)).toBe(0x730n);
  });

  it('ignores relations of other schemas and tables', () => {
    const { pools, take, feed } = setup();
    pools.set({ id: 'p1', orderBook: '0xob1', coin: 'ETH' });
    const otherSchema = relation(16600, 'other', 'order_book_trades', TRADE_COLS);
    const otherTable = relation(16601, 'public', 'order_book_trades_archive', TRADE_COLS);
    const noColumns = relation(16602, 'other', 'pools', ['x']); // would fail to resolve if mapped
    feed(
      begin(0x800n),
      { tag: 'relation', relation: otherSchema },
      { tag: 'relation', relation: otherTable },
      { tag: 'relation', relation: noColumns },
      insert(otherSchema, tradeRow('a')),
      insert(otherTable, tradeRow('b')),
      insert(noColumns, ['z']),
      { tag: 'delete', relation: otherSchema, key: ['a'], old: null },
      {
        tag: 'truncate',
        relations: [otherSchema, otherTable],
        cascade: false,
        restartIdentity: false,
      },
      commit(0x800n, 0x830n),
    );
    const batches = take();
    expect(changes(batches)).toEqual([]);
    expect(lastCheckpoint(batches)).toBe(0x830n);
  });

  it('a keepalive outside a transaction queues an idle checkpoint', () => {
    const { router, take } = setup({ now: () => 1_000_000 });
    router.onKeepalive(0x900n);
    const batches = take();
    expect(batches).toHaveLength(1);
    expect(batches[0]!.rows).toBe(0);
    expect(batches[0]!.checkpoint).toBe(0x900n);
    expect(batches[0]!.commits).toBe(0);
  });

  it('a keepalive inside a transaction does nothing', () => {
    const { router, take, feed } = setup({ now: () => 1_000_000 });
    feed(begin(0xa00n), { tag: 'relation', relation: TRADES });
    router.onKeepalive(0xb00n);
    expect(take()).toEqual([]);
    feed(commit(0xa00n, 0xa30n));
    expect(lastCheckpoint(take())).toBe(0xa30n);
  });

  it('a keepalive at or below the last commit end is not queued', () => {
    const { router, take, feed } = setup({ now: () => 1_000_000 });
    feed(begin(0xa00n), commit(0xa00n, 0xa30n));
    take();
    router.onKeepalive(0xa30n);
    router.onKeepalive(0xa10n);
    expect(take()).toEqual([]);
  });

  it('throttles keepalives; the later one is applied by the trailing timer', () => {
    vi.useFakeTimers();
    vi.setSystemTime(1_700_000_000_000);
    const { router, take } = setup({ idleAckIntervalMs: 1000, now: () => Date.now() });
    router.onKeepalive(0x1000n);
    expect(lastCheckpoint(take())).toBe(0x1000n);

    vi.advanceTimersByTime(200);
    router.onKeepalive(0x2000n);
    vi.advanceTimersByTime(100);
    router.onKeepalive(0x3000n); // the latest wins
    expect(take()).toEqual([]);

    vi.advanceTimersByTime(650);
    expect(take()).toEqual([]);
    vi.advanceTimersByTime(100);
    const batches = take();
    expect(batches).toHaveLength(1);
    expect(batches[0]!.checkpoint).toBe(0x3000n);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('reset() cancels a pending trailing keepalive', () => {
    vi.useFakeTimers();
    vi.setSystemTime(1_700_000_000_000);
    const { router, take } = setup({ idleAckIntervalMs: 1000, now: () => Date.now() });
    router.onKeepalive(0x1000n);
    take();
    router.onKeepalive(0x2000n);
    router.reset();
    vi.advanceTimersByTime(5000);
    expect(take()).toEqual([]);
  });
});

describe('ChangeRouter: what a row becomes counts (DESIGN rule 9)', () => {
  const coin = 'C'.repeat(60 * 1024);

  it('a trade counts its symbol against the in-flight bytes', () => {
    const { pools, queue, feed } = setup();
    pools.set({ id: 'p1', orderBook: '0xob1', coin });
    feed(begin(0x100n), { tag: 'relation', relation: TRADES });
    for (let i = 0; i < 10; i++) feed(insert(TRADES, tradeRow(`t${i}`)));
    // Ten 10-byte messages, but each trade carries the 60 KiB symbol.
    expect(queue.bytes).toBeGreaterThan(10 * 60 * 1024);
  });

  it('a trade too large once enriched is a row_too_large dead letter; later trades still flow', () => {
    const { pools, take, feed } = setup({ maxRowBytes: 32 * 1024 });
    pools.set({ id: 'p1', orderBook: '0xob1', coin });
    pools.set({ id: 'p2', orderBook: '0xob2', coin: 'ETH/USDC' });
    feed(begin(0x100n), { tag: 'relation', relation: TRADES });
    feed(insert(TRADES, tradeRow('big', '0xob1')), insert(TRADES, tradeRow('ok', '0xob2')));
    feed(commit(0x100n, 0x128n));
    const c = changes(take());
    expect(c.map((x) => x.kind)).toEqual(['dead_letter', 'trade_upsert']);
    expect(c[0]).toMatchObject({
      kind: 'dead_letter',
      letter: { code: 'row_too_large', rowKey: 'big', operation: 'insert' },
    });
    const letter = c[0]!.kind === 'dead_letter' ? c[0]!.letter : null;
    expect(letter?.reason).toMatch(/SLOTLINE_MAX_ROW_BYTES is 32768/);
    // The letter holds the trade's own values, not the symbol.
    expect(JSON.stringify(letter?.raw).length).toBeLessThan(1024);
  });

  it('a pool row too large is a row_too_large dead letter and does not enter the cache', () => {
    const { pools, take, router } = setup({ maxRowBytes: 32 * 1024 });
    router.onMessage(begin(0x100n), 10);
    router.onMessage({ tag: 'relation', relation: POOLS }, 10);
    router.onMessage(insert(POOLS, poolRow('p1', '0xob1', coin)), coin.length + 100);
    router.onMessage(commit(0x100n, 0x128n), 10);
    const c = changes(take());
    expect(c).toHaveLength(1);
    expect(c[0]).toMatchObject({ kind: 'dead_letter', letter: { code: 'row_too_large' } });
    expect(pools.has('0xob1')).toBe(false);
  });
});

describe('ChangeRouter: lossy corners (issue 11.13)', () => {
  const del = (rel: Relation, key: ColumnValue[] | undefined): PgoutputMessage =>
    ({ tag: 'delete', relation: rel, key }) as PgoutputMessage;

  it('several keyless deletes of one transaction are one dead letter each', () => {
    const { take, feed } = setup();
    feed(begin(0x100n), { tag: 'relation', relation: TRADES });
    // Identity USING INDEX on (transaction_id): the key carries no id.
    const key = (tx: string): ColumnValue[] => [null, null, null, null, null, tx, null, null];
    feed(del(TRADES, key('0xa')), del(TRADES, key('0xb')), del(TRADES, key('0xc')));
    feed(commit(0x100n, 0x128n));
    const batches = take();
    const letters = changes(batches).filter((c) => c.kind === 'dead_letter');
    expect(letters).toHaveLength(3);
    const keys = letters.map((c) => (c.kind === 'dead_letter' ? c.letter.rowKey : ''));
    expect(new Set(keys).size).toBe(3);
    expect(keys[0]).toMatch(/^\(missing\) /);
  });

  it('TRUNCATE pools empties the pool cache: later trades of that pool are unknown_pool letters', () => {
    for (const applyTruncate of [true, false]) {
      const { pools, take, feed } = setup({ applyTruncate });
      pools.set({ id: 'p1', orderBook: '0xob1', coin: 'ETH/USDC' });
      feed(
        begin(0x100n),
        { tag: 'relation', relation: POOLS },
        { tag: 'relation', relation: TRADES },
      );
      feed({ tag: 'truncate', relations: [POOLS], cascade: false, restartIdentity: false });
      feed(insert(TRADES, tradeRow('t1', '0xob1')), commit(0x100n, 0x128n));
      const c = changes(take());
      expect(pools.has('0xob1')).toBe(false);
      expect(c.at(-1)).toMatchObject({ kind: 'dead_letter', letter: { code: 'unknown_pool' } });
    }
  });
});

describe('ChangeRouter: replica identity FULL (issue 11.6)', () => {
  it('an UPDATE that changes the id deletes the old id (the old row comes as `old`)', () => {
    const { pools, take, feed } = setup();
    pools.set({ id: 'p1', orderBook: '0xob1', coin: 'ETH/USDC' });
    const full = { ...TRADES, replicaIdentity: 'f' as const };
    feed(begin(0x100n), { tag: 'relation', relation: full });
    feed({
      tag: 'update',
      relation: full,
      key: null,
      old: tradeRow('t1'),
      new: tradeRow('t1-moved'),
    });
    feed(commit(0x100n, 0x128n));
    const c = changes(take());
    expect(c.map((x) => x.kind)).toEqual(['trade_delete', 'trade_upsert']);
    expect(c[0]).toMatchObject({ kind: 'trade_delete', tradeId: 't1' });
    expect(c[1]).toMatchObject({ trade: { tradeId: 't1-moved' } });
  });
});

describe('ChangeRouter: a mapped column renamed or dropped (issue 11.11)', () => {
  const RENAMED = relation(
    16401,
    'public',
    'order_book_trades',
    TRADE_COLS.map((c) => (c === 'price' ? 'price_wei' : c)),
  );

  it('inserts become missing_column letters, deletes still apply, and the fixed relation maps again', () => {
    const { pools, take, feed } = setup();
    pools.set({ id: 'p1', orderBook: '0xob1', coin: 'ETH/USDC' });
    feed(begin(0x100n), { tag: 'relation', relation: RENAMED });
    feed(insert(RENAMED, tradeRow('t1')));
    feed({ tag: 'delete', relation: RENAMED, key: tradeRow('t0'), old: null });
    feed(commit(0x100n, 0x128n));
    feed(begin(0x200n), { tag: 'relation', relation: TRADES }, insert(TRADES, tradeRow('t2')));
    feed(commit(0x200n, 0x228n));
    const c = changes(take());
    expect(c.map((x) => x.kind)).toEqual(['dead_letter', 'trade_delete', 'trade_upsert']);
    expect(c[0]).toMatchObject({
      letter: { code: 'missing_column', rowKey: 't1', raw: { price_wei: '100' } },
    });
    expect(c[0]!.kind === 'dead_letter' && c[0]!.letter.reason).toMatch(/lacks column\(s\) price/);
    expect(c[2]).toMatchObject({ trade: { tradeId: 't2' } });
  });

  it('a retry of such a letter is refused while the relation still lacks the column', () => {
    const { router } = setup();
    const rejection = router.remap(RENAMED, tradeRow('t1'), 0x100n, { deadLetter: false });
    expect(rejection?.code).toBe('missing_column');
  });
});
