/**
 * The floor: the design slotline replaces (DESIGN.md), re-implemented as that
 * analytics service worked. It polls
 *
 *   SELECT … FROM order_book_trades JOIN pools … WHERE timestamp > $last_processed
 *    ORDER BY timestamp LIMIT 100
 *
 * and, for each trade, inserts it into analytics_trades and writes one
 * sync_log row, each statement in its own (auto-committed) transaction; then
 * last_processed becomes the page's newest timestamp. It stops at the first
 * empty page. Trades that share a timestamp with the end of a page are skipped
 * (the old design's flaw); the benchmark reports how many.
 */
import pg from 'pg';

export interface FloorResult {
  trades: number;
  written: number;
  lost: number;
  seconds: number;
  polls: number;
}

export const SYNC_LOG_DDL = `
  CREATE TABLE IF NOT EXISTS sync_log (
    id               bigserial PRIMARY KEY,
    trade_id         text        NOT NULL,
    trade_timestamp  integer     NOT NULL,
    processed_at     timestamptz NOT NULL DEFAULT now()
  )`;

const PAGE = 100;

const POLL = `
  SELECT t.id, t.chain_id, t.price::text AS price, t.quantity::text AS quantity, t."timestamp",
         t.transaction_id, t.side, t.pool_id, p.coin
    FROM order_book_trades t
    LEFT JOIN pools p ON p.order_book = t.pool_id
   WHERE t."timestamp" > $1
   ORDER BY t."timestamp"
   LIMIT ${PAGE}`;

const INSERT_TRADE = `
  INSERT INTO analytics_trades
         (trade_id, time, chain_id, pool_id, symbol, side, price, quantity, volume, transaction_id, source_lsn)
  VALUES ($1, to_timestamp($2), $3, $4, $5, $6, $7::numeric, $8::numeric, $7::numeric * $8::numeric, $9, '0/0')
  ON CONFLICT (trade_id, time) DO NOTHING`;

const INSERT_SYNC_LOG = `INSERT INTO sync_log (trade_id, trade_timestamp) VALUES ($1, $2)`;

interface PolledTrade {
  id: string;
  chain_id: number;
  price: string;
  quantity: string;
  timestamp: number;
  transaction_id: string | null;
  side: string;
  pool_id: string;
  coin: string | null;
}

export async function runFloor(sourceUrl: string, sinkUrl: string, trades: number) {
  const source = new pg.Client({ connectionString: sourceUrl, application_name: 'old-service' });
  const sink = new pg.Client({ connectionString: sinkUrl, application_name: 'old-service' });
  await source.connect();
  await sink.connect();
  try {
    await sink.query(SYNC_LOG_DDL);
    let lastProcessed = 0;
    let written = 0;
    let polls = 0;
    const t0 = performance.now();
    for (;;) {
      polls += 1;
      const { rows } = await source.query<PolledTrade>(POLL, [lastProcessed]);
      if (rows.length === 0) break;
      for (const t of rows) {
        await sink.query(INSERT_TRADE, [
          t.id,
          t.timestamp,
          t.chain_id,
          t.pool_id,
          t.coin,
          t.side,
          t.price,
          t.quantity,
          t.transaction_id,
        ]);
        await sink.query(INSERT_SYNC_LOG, [t.id, t.timestamp]);
        written += 1;
        if (t.timestamp > lastProcessed) lastProcessed = t.timestamp;
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    return { trades, written, lost: trades - written, seconds, polls } satisfies FloorResult;
  } finally {
    await source.end().catch(() => undefined);
    await sink.end().catch(() => undefined);
  }
}
