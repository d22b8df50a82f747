/**
 * The source schema exactly as Ponder writes it (DESIGN.md, "The data"), and
 * generators of plausible rows. Prices and quantities are uint256 raw units:
 * digit strings all the way into SQL, never a JS number.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';

export type Queryable = Pick<pg.ClientBase, 'query'> | pg.Pool;

export interface PonderPool {
  id: string;
  chain_id: number;
  coin: string | null;
  order_book: string | null;
  base_currency: string;
  quote_currency: string;
  base_decimals: number | null;
  quote_decimals: number | null;
  volume: string | null;
  volume_in_quote: string | null;
  price: string | null;
  timestamp: number | null;
}

export interface PonderTrade {
  id: string;
  chain_id: number;
  price: string | null;
  quantity: string | null;
  timestamp: number | null;
  transaction_id: string | null;
  side: string | null;
  pool_id: string;
}

/** 2^256 - 1: the largest value a Solidity uint256 holds (78 digits). */
export const UINT256_MAX = ((1n << 256n) - 1n).toString();

const DEFAULT_CHAIN_ID = 31337;
const BASE_TIMESTAMP = 1_700_000_000;
const WEI = 10n ** 18n;

const COINS: ReadonlyArray<{ coin: string; price: bigint }> = [
  { coin: 'MWETH/MUSDC', price: 2500n },
  { coin: 'MWBTC/MUSDC', price: 60000n },
  { coin: 'MLINK/MUSDC', price: 15n },
  { coin: 'MSOL/MUSDC', price: 150n },
  { coin: 'MADA/MUSDC', price: 1n },
];

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function hex(seed: string, chars: number): string {
  return createHash('sha256').update(seed).digest('hex').slice(0, chars);
}

export async function createPonderTables(client: Queryable, schema = 'public'): Promise<void> {
  const s = quoteIdent(schema);
  await client.query(`create schema if not exists ${s}`);
  await client.query(`
    create table ${s}.order_book_trades (
      id text primary key,
      chain_id integer not null,
      price numeric(78,0),
      quantity numeric(78,0),
      "timestamp" integer,
      transaction_id text,
      side varchar,
      pool_id text not null
    )`);
  await client.query(`
    create table ${s}.pools (
      id text primary key,
      chain_id integer not null,
      coin varchar,
      order_book text,
      base_currency text not null,
      quote_currency text not null,
      base_decimals integer,
      quote_decimals integer,
      volume numeric(78,0),
      volume_in_quote numeric(78,0),
      price numeric(78,0),
      "timestamp" integer
    )`);
}

/** Pool `i`: deterministic ids and addresses, a coin like 'MWETH/MUSDC', decimals 18/6. */
export function makePool(i: number, opts: { chainId?: number } = {}): PonderPool {
  const coin = COINS[i % COINS.length] ?? COINS[0]!;
  return {
    id: `0x${hex(`pool:${i}`, 64)}`,
    chain_id: opts.chainId ?? DEFAULT_CHAIN_ID,
    coin: coin.coin,
    order_book: `0x${hex(`order_book:${i}`, 40)}`,
    base_currency: `0x${hex(`base:${i}`, 40)}`,
    quote_currency: `0x${hex(`quote:${i}`, 40)}`,
    base_decimals: 18,
    quote_decimals: 6,
    volume: '0',
    volume_in_quote: '0',
    price: (coin.price * WEI).toString(),
    timestamp: BASE_TIMESTAMP,
  };
}

export interface MakeTradeOptions {
  /** Raw price as a digit string; default the pool's price plus a small step. */
  price?: string;
  /** Raw quantity as a digit string; default 0.01 to 0.50 units. */
  quantity?: string;
  /** Use 78-digit values near uint256's maximum for price and quantity. */
  uint256?: boolean;
  /** Unix seconds; default a base time plus i/3, so several trades share a second. */
  timestamp?: number;
  side?: 'buy' | 'sell';
  chainId?: number;
  /** Which pool column the trade's pool_id holds. Default `order_book` (Ponder's join). */
  poolJoinColumn?: 'order_book' | 'id';
}

/** Trade `i` of `pool`: two trades per transaction, id `<tx hash>-<log index>`. */
export function makeTrade(i: number, pool: PonderPool, opts: MakeTradeOptions = {}): PonderTrade {
  const transactionId = `0x${hex(`tx:${Math.floor(i / 2)}`, 64)}`;
  const basePrice = BigInt(pool.price ?? (2500n * WEI).toString());
  let price = (basePrice + BigInt(i % 97) * 10n ** 16n).toString();
  let quantity = (BigInt((i % 50) + 1) * 10n ** 16n).toString();
  if (opts.uint256) {
    price = (BigInt(UINT256_MAX) - BigInt(i)).toString();
    quantity = (BigInt(UINT256_MAX) - BigInt(i) * 7n - 1n).toString();
  }
  const poolId = opts.poolJoinColumn === 'id' ? pool.id : pool.order_book;
  if (poolId === null) throw new Error(`pool ${pool.id} has no order_book to join trades on`);
  return {
    id: `${transactionId}-${i % 2}`,
    chain_id: opts.chainId ?? pool.chain_id,
    price: opts.price ?? price,
    quantity: opts.quantity ?? quantity,
    timestamp: opts.timestamp ?? BASE_TIMESTAMP + Math.floor(i / 3),
    transaction_id: transactionId,
    side: opts.side ?? (i % 2 === 0 ? 'buy' : 'sell'),
    pool_id: poolId,
  };
}

const POOL_COLUMNS: ReadonlyArray<readonly [keyof PonderPool, string]> = [
  ['id', 'text'],
  ['chain_id', 'integer'],
  ['coin', 'varchar'],
  ['order_book', 'text'],
  ['base_currency', 'text'],
  ['quote_currency', 'text'],
  ['base_decimals', 'integer'],
  ['quote_decimals', 'integer'],
  ['volume', 'numeric'],
  ['volume_in_quote', 'numeric'],
  ['price', 'numeric'],
  ['timestamp', 'integer'],
];

const TRADE_COLUMNS: ReadonlyArray<readonly [keyof PonderTrade, string]> = [
  ['id', 'text'],
  ['chain_id', 'integer'],
  ['price', 'numeric'],
  ['quantity', 'numeric'],
  ['timestamp', 'integer'],
  ['transaction_id', 'text'],
  ['side', 'varchar'],
  ['pool_id', 'text'],
];

/** PostgreSQL's limit on bind parameters in one statement (a 16-bit count). */
const MAX_PARAMS = 65_535;

/**
 * Multi-row INSERTs, chunked under the parameter limit. Every value travels as
 * text and is cast in SQL, so a 78-digit number is never rounded on the way.
 */
async function insertRows<R extends object>(
  client: Queryable,
  schema: string,
  table: string,
  columns: ReadonlyArray<readonly [keyof R & string, string]>,
  rows: readonly R[],
): Promise<void> {
  const perStatement = Math.floor(MAX_PARAMS / columns.length);
  const columnList = columns.map(([name]) => quoteIdent(name)).join(', ');
  for (let start = 0; start < rows.length; start += perStatement) {
    const chunk = rows.slice(start, start + perStatement);
    const params: (string | null)[] = [];
    const tuples = chunk.map((row) => {
      const placeholders = columns.map(([name, type]) => {
        const value: unknown = row[name];
        if (type === 'numeric' && typeof value !== 'string' && value !== null) {
          throw new TypeError(`${table}.${name} must be a digit string, got ${typeof value}`);
        }
        params.push(value === null || value === undefined ? null : String(value));
        return `$${params.length}::text::${type}`;
      });
      return `(${placeholders.join(', ')})`;
    });
    await client.query(
      `insert into ${quoteIdent(schema)}.${quoteIdent(table)} (${columnList}) values ${tuples.join(', ')}`,
      params,
    );
  }
}

export function insertPools(
  client: Queryable,
  schema: string,
  pools: readonly PonderPool[],
): Promise<void> {
  return insertRows(client, schema, 'pools', POOL_COLUMNS, pools);
}

export function insertTrades(
  client: Queryable,
  schema: string,
  trades: readonly PonderTrade[],
): Promise<void> {
  return insertRows(client, schema, 'order_book_trades', TRADE_COLUMNS, trades);
}
