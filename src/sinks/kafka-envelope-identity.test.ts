import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatLsn } from '../checkpoint/lsn.js';
import { tradeVolume, type Pool, type Trade } from '../trades/map.js';
import type { Change } from './batch.js';
import {
  changeRecords,
  commitTimeMs,
  LSN_HEADER,
  POOLS_TABLE_NAME,
  RecentTradePools,
  SEQ_HEADER,
  TRADES_TABLE_NAME,
  type DebeziumOp,
  type EnvelopeOptions,
  type KafkaRecord,
} from './kafka-envelope.js';

/** A record with its value as text, to compare. */
type TextRecord = Omit<KafkaRecord, 'value'> & { value: string | null };

const asText = (records: KafkaRecord[]): TextRecord[] =>
  records.map((r) => ({ ...r, value: r.value === null ? null : r.value.toString('utf8') }));

/*
 * The envelopes as slotline built them before they were written as text
 * (objects through JSON.stringify): the reference the text must match byte for byte.
 */
function referenceRecords(
  c: Change,
  o: EnvelopeOptions,
  recent: RecentTradePools,
  nowMs: number,
): TextRecord[] {
  const headers: Record<string, string> = { [LSN_HEADER]: formatLsn(c.lsn) };
  if (c.seq !== undefined) headers[SEQ_HEADER] = String(c.seq);
  const envelope = (table: string, op: DebeziumOp, before: object | null, after: object | null) =>
    JSON.stringify({
      before,
      after,
      source: {
        version: o.version,
        connector: 'slotline',
        name: o.name,
        ts_ms: c.tx ? commitTimeMs(c.tx.commitTime) : nowMs,
        snapshot: op === 'r' ? 'true' : 'false',
        db: o.db,
        schema: o.schema,
        table,
        txId: c.tx ? c.tx.xid : null,
        lsn: Number(c.lsn),
      },
      op,
      ts_ms: nowMs,
    });
  const int = (v: string | null): number | null => (v === null ? null : Number(v));
  const tradeRow = (t: Trade) => ({
    id: t.tradeId,
    chain_id: Number(t.chainId),
    price: t.price,
    quantity: t.quantity,
    timestamp: Number(t.time),
    transaction_id: t.transactionId,
    side: t.side,
    pool_id: t.poolId,
    symbol: t.symbol,
    volume: tradeVolume(t),
  });
  const poolRow = (p: Pool) => ({
    id: p.id,
    chain_id: int(p.chainId),
    coin: p.coin,
    order_book: p.orderBook,
    base_currency: p.baseCurrency,
    quote_currency: p.quoteCurrency,
    base_decimals: int(p.baseDecimals),
    quote_decimals: int(p.quoteDecimals),
    volume: p.volume,
    volume_in_quote: p.volumeInQuote,
    price: p.price,
    timestamp: int(p.timestamp),
  });
  const OPS = { insert: 'c', update: 'u', snapshot: 'r' } as const;
  switch (c.kind) {
    case 'trade_upsert': {
      recent.remember(c.trade.tradeId, c.trade.poolId);
      const value = envelope(TRADES_TABLE_NAME, OPS[c.op], null, tradeRow(c.trade));
      const key = JSON.stringify({ pool_id: c.trade.poolId });
      return [{ topic: o.topics.trades, key, value, headers }];
    }
    case 'trade_delete': {
      const poolId = recent.poolOf(c.tradeId) ?? null;
      recent.forget(c.tradeId);
      const value = envelope(TRADES_TABLE_NAME, 'd', { id: c.tradeId, pool_id: poolId }, null);
      if (poolId !== null)
        return [
          { topic: o.topics.trades, key: JSON.stringify({ pool_id: poolId }), value, headers },
        ];
      const key = JSON.stringify({ id: c.tradeId });
      return [{ topic: o.topics.trades, key, value, headers, everyPartition: true }];
    }
    case 'pool_upsert': {
      const value = envelope(POOLS_TABLE_NAME, OPS[c.op], null, poolRow(c.pool));
      return [{ topic: o.topics.pools, key: JSON.stringify({ id: c.pool.id }), value, headers }];
    }
    case 'pool_delete': {
      const key = JSON.stringify({ id: c.poolId });
      const value = envelope(POOLS_TABLE_NAME, 'd', { id: c.poolId }, null);
      const out: TextRecord[] = [{ topic: o.topics.pools, key, value, headers }];
      if (o.tombstones) out.push({ topic: o.topics.pools, key, value: null, headers });
      return out;
    }
    case 'truncate':
      return c.tables.map((t) => {
        const table = t === 'trades' ? TRADES_TABLE_NAME : POOLS_TABLE_NAME;
        return {
          topic: t === 'trades' ? o.topics.trades : o.topics.pools,
          key: JSON.stringify({ table: `${o.schema}.${table}` }),
          value: envelope(table, 't', null, null),
          headers,
          everyPartition: true as const,
        };
      });
    case 'dead_letter':
      return [];
  }
}

// Any text, also quotes, backslashes, control characters and lone surrogates.
const text = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.string({ maxLength: 70 }),
  fc.constantFrom('', '"', '\\', '\u2028', '\ud800', '0xabc-0', 'MWETH/MUSDC'),
);
const digits = fc.oneof(
  fc.bigInt({ min: 0n, max: (1n << 256n) - 1n }).map(String),
  fc.constantFrom('0', '1', '2500000000000000000000'),
);
// Number() of these covers ints, big values, NaN-making text and blanks.
const numeric = fc.oneof(
  fc.integer().map(String),
  fc.constantFrom('31337', '1700000000', '', ' 7 ', 'x', '1e400', '-0', '9007199254740993'),
);
const nullable = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: null });
const poolIds = fc.constantFrom('0xpool-a', '0xpool-b', 'é€😀"');
const tradeIds = fc.constantFrom('t1', 't2', 't3', 't"4');
const trade = fc.record({
  tradeId: fc.oneof(tradeIds, text),
  time: numeric,
  chainId: numeric,
  poolId: fc.oneof(poolIds, text),
  symbol: nullable(text),
  side: text,
  price: digits,
  quantity: digits,
  transactionId: nullable(text),
});
const pool = fc.record({
  id: fc.oneof(poolIds, text),
  chainId: nullable(numeric),
  coin: nullable(text),
  orderBook: nullable(text),
  baseCurrency: nullable(text),
  quoteCurrency: nullable(text),
  baseDecimals: nullable(numeric),
  quoteDecimals: nullable(numeric),
  volume: nullable(digits),
  volumeInQuote: nullable(digits),
  price: nullable(digits),
  timestamp: nullable(numeric),
});
const upsertOp = fc.constantFrom('insert' as const, 'update' as const, 'snapshot' as const);
const body = fc.oneof(
  fc.record({ kind: fc.constant('trade_upsert' as const), op: upsertOp, trade }),
  fc.record({ kind: fc.constant('trade_delete' as const), tradeId: fc.oneof(tradeIds, text) }),
  fc.record({ kind: fc.constant('pool_upsert' as const), op: upsertOp, pool }),
  fc.record({ kind: fc.constant('pool_delete' as const), poolId: fc.oneof(poolIds, text) }),
  fc.record({
    kind: fc.constant('truncate' as const),
    tables: fc.subarray(['trades', 'pools'] as ('trades' | 'pools')[], { minLength: 1 }),
  }),
);
const change: fc.Arbitrary<Change> = fc
  .tuple(
    body,
    fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    fc.option(fc.nat(), { nil: undefined }),
    fc.option(
      fc.record({
        xid: fc.nat(),
        commitTime: fc.bigInt({ min: 0n, max: 1n << 60n }),
      }),
      { nil: undefined },
    ),
  )
  .map(([b, lsn, seq, tx]) => {
    const c = { ...b, lsn } as Change;
    if (seq !== undefined) c.seq = seq;
    if (tx !== undefined) c.tx = tx;
    return c;
  });
const options: fc.Arbitrary<EnvelopeOptions> = fc.record({
  topics: fc.record({ trades: text, pools: text }),
  version: text,
  name: text,
  db: text,
  schema: text,
  tombstones: fc.boolean(),
});

describe('changeRecords', () => {
  it('writes byte for byte the records JSON.stringify of the envelope objects gave', () => {
    fc.assert(
      fc.property(
        fc.array(change, { maxLength: 30 }),
        options,
        fc.oneof(fc.nat(), fc.constant(1_800_000_000_000)),
        (changes, o, now) => {
          const ours = new RecentTradePools(4);
          const ref = new RecentTradePools(4);
          // Compared once all are written: a record's bytes stay its own while later ones are written.
          const written = changes.map((c) => changeRecords(c, o, ours, now));
          expect(written.map(asText)).toStrictEqual(
            changes.map((c) => referenceRecords(c, o, ref, now)),
          );
        },
      ),
      { numRuns: 3_000 },
    );
  });

  /** Options of the fixed cases. */
  const fixed = (over: Partial<EnvelopeOptions>): EnvelopeOptions => ({
    topics: { trades: 't', pools: 'p' },
    version: '1',
    name: 'a',
    db: 'd',
    schema: 's1',
    tombstones: false,
    ...over,
  });

  it('keeps every record whole across the shared chunks, one larger than a chunk among them', () => {
    const o = fixed({ name: 'é', tombstones: true });
    const changes: Change[] = Array.from({ length: 3_000 }, (_, i) => ({
      kind: 'pool_upsert',
      op: 'insert',
      lsn: BigInt(i),
      seq: i,
      tx: { xid: i, commitTime: BigInt(i) },
      pool: {
        id: `p${i}`,
        chainId: '1',
        // One of 200 KB (three chunks), the rest about 300 bytes, some of them not ASCII.
        coin: i === 1_500 ? 'c'.repeat(200_000) : i % 7 === 0 ? `ü"${i}\n` : `coin-${i}`,
        orderBook: null,
        baseCurrency: '0xabc',
        quoteCurrency: '0xdef',
        baseDecimals: '18',
        quoteDecimals: '6',
        volume: String(i),
        volumeInQuote: '0',
        price: '1',
        timestamp: '1700000000',
      },
    }));
    const ours = new RecentTradePools();
    const ref = new RecentTradePools();
    const written = changes.map((c) => changeRecords(c, o, ours, 7));
    expect(written.map(asText)).toStrictEqual(changes.map((c) => referenceRecords(c, o, ref, 7)));
  });

  it('follows a schema change and alternating options (the shared fragments are not stale)', () => {
    const a = fixed({});
    const b = fixed({ name: 'b', db: 'other' });
    const c: Change = {
      kind: 'pool_delete',
      lsn: 5n,
      poolId: 'x',
      seq: 1,
      tx: { xid: 1, commitTime: 1n },
    };
    for (const o of [a, b, a, b]) {
      expect(asText(changeRecords(c, o, new RecentTradePools(), 1))).toStrictEqual(
        referenceRecords(c, o, new RecentTradePools(), 1),
      );
      o.schema = `${o.schema}x`;
      expect(asText(changeRecords(c, o, new RecentTradePools(), 1))).toStrictEqual(
        referenceRecords(c, o, new RecentTradePools(), 1),
      );
    }
  });
});
