/**
 * The benchmark's data: a Ponder-shaped source (test/harness/ponder.ts: the
 * real schema, five pools with 18-decimal raw prices) and trades generated in
 * SQL, so writing a million of them costs seconds, not minutes.
 *
 * Trade `g` has id `0x<g as 64 hex digits>-<g % 2>` (as long as Ponder's
 * `<tx hash>-<log index>`, and ordered like `g` under the C collation), a raw
 * price near its pool's, a raw quantity of 0.01–0.50 units, three trades per
 * unix second, and a 66-character transaction hash.
 */
import pg from 'pg';
import {
  createPonderTables,
  insertPools,
  makePool,
  type PonderPool,
} from '../test/harness/ponder.js';

export const POOLS: PonderPool[] = Array.from({ length: 5 }, (_, i) => makePool(i));

/** Steady-state trades are numbered from here, above any backlog. */
export const STEADY_BASE = 2 ** 40;

export function tradeId(g: number): string {
  return `0x${g.toString(16).padStart(64, '0')}-${g % 2}`;
}

/** `g` back from a trade id. */
export function tradeNumber(id: string): number {
  return parseInt(id.slice(2, 66), 16);
}

/** A database's URL on the same server as `adminUrl`. */
export function dbUrl(adminUrl: string, db: string): string {
  const u = new URL(adminUrl);
  u.pathname = `/${db}`;
  return u.toString();
}

export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url, application_name: 'slotline-bench' });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

export async function createDatabases(adminUrl: string, names: string[]): Promise<void> {
  await withClient(adminUrl, async (c) => {
    for (const n of names) await c.query(`CREATE DATABASE "${n}"`);
  });
}

/** Ponder's tables and the five pools. */
export async function createSource(url: string): Promise<void> {
  await withClient(url, async (c) => {
    await createPonderTables(c);
    await insertPools(c, 'public', POOLS);
  });
}

/**
 * Inserts trades `from..to` (inclusive) in one statement. `now`: timestamp is
 * the current second (steady state) instead of the backlog's 2023 clock.
 */
export const INSERT_TRADES = `
  INSERT INTO order_book_trades (id, chain_id, price, quantity, "timestamp", transaction_id, side, pool_id)
  SELECT '0x' || lpad(to_hex(g), 64, '0') || '-' || (g % 2),
         31337,
         ($3::numeric[])[g % 5 + 1] + (g % 97) * 10000000000000000::numeric,
         ((g % 50) + 1) * 10000000000000000::numeric,
         CASE WHEN $5::boolean THEN extract(epoch FROM clock_timestamp())::integer
              ELSE 1700000000 + (g / 3)::integer END,
         '0x' || md5('tx:' || (g / 2)) || md5('tx;' || (g / 2)),
         CASE WHEN g % 2 = 0 THEN 'buy' ELSE 'sell' END,
         ($4::text[])[g % 5 + 1]
    FROM generate_series($1::bigint, $2::bigint) AS g`;

export function insertParams(from: number, to: number, now: boolean): unknown[] {
  return [from, to, POOLS.map((p) => p.price), POOLS.map((p) => p.order_book), now];
}

export interface Backlog {
  trades: number;
  seconds: number;
  /**
   * pg_current_wal_insert_lsn() inside the last transaction, just before its
   * COMMIT: every earlier transaction ends at or before it, the last one after
   * it. So "a sink's checkpoint is past this LSN" means exactly "the whole
   * backlog is in that sink", whatever other WAL the server writes meanwhile.
   */
  lastInsertLsn: string;
  walBytes: number;
}

/** Trades 1..n in transactions of `txRows` rows, from one connection. */
export async function writeBacklog(url: string, n: number, txRows: number): Promise<Backlog> {
  return withClient(url, async (c) => {
    const start = await c.query<{ l: string }>(`SELECT pg_current_wal_insert_lsn()::text AS l`);
    const t0 = performance.now();
    let last = '';
    for (let from = 1; from <= n; from += txRows) {
      const to = Math.min(n, from + txRows - 1);
      await c.query('BEGIN');
      await c.query(INSERT_TRADES, insertParams(from, to, false));
      if (to === n) {
        const r = await c.query<{ l: string }>(`SELECT pg_current_wal_insert_lsn()::text AS l`);
        last = r.rows[0]?.l ?? '';
      }
      await c.query('COMMIT');
    }
    const seconds = (performance.now() - t0) / 1000;
    const wal = await c.query<{ b: string }>(
      `SELECT (pg_current_wal_insert_lsn() - $1::pg_lsn)::bigint::text AS b`,
      [start.rows[0]?.l],
    );
    return { trades: n, seconds, lastInsertLsn: last, walBytes: Number(wal.rows[0]?.b ?? 0) };
  });
}
