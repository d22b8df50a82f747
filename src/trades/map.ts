import {
  UNCHANGED_TOAST,
  type ColumnValue,
  type Relation,
  type TupleValues,
} from '../decode/pgoutput.js';
import { SourceSetupError } from '../errors.js';
import { POOL_SOURCE_COLUMNS, TRADE_SOURCE_COLUMNS, type SourceColumn } from './contract.js';

/**
 * Pure mapping from source rows to trade and pool records. Every value stays
 * text: prices and quantities are uint256 amounts of up to 78 digits and never
 * pass through a JS number; volume (price × quantity) is computed exactly by the
 * sink in SQL, or by `tradeVolume` with bigint. Anything that would
 * make the sink's SQL casts fail is caught here, so one bad row cannot poison a
 * batch: it becomes a dead letter instead.
 */

export interface Trade {
  tradeId: string;
  /** unix seconds, as text */
  time: string;
  chainId: string;
  poolId: string;
  symbol: string | null;
  side: string;
  price: string;
  quantity: string;
  transactionId: string | null;
}

/** price × quantity, exact (up to 156 digits). */
export function tradeVolume(t: Pick<Trade, 'price' | 'quantity'>): string {
  return (BigInt(t.price) * BigInt(t.quantity)).toString();
}

export interface Pool {
  id: string;
  chainId: string | null;
  coin: string | null;
  orderBook: string | null;
  baseCurrency: string | null;
  quoteCurrency: string | null;
  baseDecimals: string | null;
  quoteDecimals: string | null;
  volume: string | null;
  volumeInQuote: string | null;
  price: string | null;
  timestamp: string | null;
}

/** Stable reason codes of dead letters; docs/operations.md explains each. */
export type RejectCode =
  | 'missing_key'
  | 'unchanged_toast'
  | 'invalid_chain_id'
  | 'null_price'
  | 'invalid_price'
  | 'negative_price'
  | 'price_out_of_range'
  | 'null_quantity'
  | 'invalid_quantity'
  | 'negative_quantity'
  | 'quantity_out_of_range'
  | 'missing_timestamp'
  | 'invalid_timestamp'
  | 'timestamp_out_of_range'
  | 'missing_pool'
  | 'unknown_pool'
  | 'invalid_side'
  | 'invalid_pool_row'
  | 'row_too_large'
  | 'missing_column';

export interface Rejection {
  code: RejectCode;
  reason: string;
}

export type Mapped<T> = { ok: true; value: T } | { ok: false; rejection: Rejection };

/** Column positions of a relation, resolved once per Relation message (-1: absent). */
export type TradeColumns = Record<keyof typeof TRADE_SOURCE_COLUMNS, number>;
export type PoolColumns = Record<keyof typeof POOL_SOURCE_COLUMNS, number>;

const names = <K extends string>(cols: Record<K, SourceColumn>) =>
  Object.fromEntries(Object.entries<SourceColumn>(cols).map(([k, c]) => [k, c.name])) as Record<
    K,
    string
  >;
/** The source column of each field, from the source contract (contract.ts). */
const TRADE_COLUMNS = names(TRADE_SOURCE_COLUMNS);
const POOL_COLUMNS = names(POOL_SOURCE_COLUMNS);

function resolve<K extends string>(
  relation: Pick<Relation, 'schema' | 'name' | 'columns'>,
  wanted: Record<K, string>,
  required: (k: K) => boolean,
): Record<K, number> {
  const index = new Map(relation.columns.map((c, i) => [c.name, i]));
  const out = {} as Record<K, number>;
  const missing: string[] = [];
  for (const key of Object.keys(wanted) as K[]) {
    const i = index.get(wanted[key]);
    if (i === undefined && required(key)) missing.push(wanted[key]);
    out[key] = i ?? -1;
  }
  if (missing.length > 0) {
    throw new SourceSetupError(
      'source_schema_mismatch',
      `${relation.schema}.${relation.name} lacks column(s) ${missing.join(', ')} that slotline maps`,
    );
  }
  return out;
}

export function tradeColumns(
  relation: Pick<Relation, 'schema' | 'name' | 'columns'>,
): TradeColumns {
  return resolve(relation, TRADE_COLUMNS, (k) => TRADE_SOURCE_COLUMNS[k].required);
}

export function poolColumns(relation: Pick<Relation, 'schema' | 'name' | 'columns'>): PoolColumns {
  // coin is required: without it every trade would silently get a NULL symbol.
  return resolve(relation, POOL_COLUMNS, (k) => POOL_SOURCE_COLUMNS[k].required);
}

const UINT = /^\d+$/;
const INT = /^-?\d+$/;
/** numeric(78,0) holds at most 78 digits; a uint256 has at most 78. */
const MAX_AMOUNT_DIGITS = 78;
/** 2100-01-01: later timestamps are a unit mistake (milliseconds) or garbage. */
const MAX_UNIX_SECONDS = 4_102_444_800;
const INT32_MIN = -2_147_483_648;
const INT32_MAX = 2_147_483_647;

function fitsInt32(digits: string): boolean {
  const n = Number(digits);
  return n >= INT32_MIN && n <= INT32_MAX;
}
const SIDES = new Set(['buy', 'sell']);
const MAX_SIDE_LENGTH = 16;

function at(values: TupleValues, i: number): ColumnValue {
  return i < 0 ? null : (values[i] ?? null);
}

type Rejected = { ok: false; rejection: Rejection };

function reject(code: RejectCode, reason: string): Rejected {
  return { ok: false, rejection: { code, reason } };
}

function preview(v: string): string {
  return v.length > 40
    ? `${JSON.stringify(v.slice(0, 40))}… (${v.length} chars)`
    : JSON.stringify(v);
}

/** The amount's digits (leading zeros stripped), or why it is refused: no wrapper per trade. */
function amount(v: ColumnValue, what: 'price' | 'quantity'): string | Rejected {
  if (v === null) return reject(`null_${what}`, `${what} is NULL`);
  if (v === UNCHANGED_TOAST)
    return reject('unchanged_toast', `${what} was not sent (unchanged TOAST)`);
  if (!UINT.test(v)) {
    if (INT.test(v)) return reject(`negative_${what}`, `${what} ${preview(v)} is negative`);
    return reject(`invalid_${what}`, `${what} ${preview(v)} is not a whole number`);
  }
  // Strip leading zeros so the digit count is the magnitude's.
  const digits = v.length > 1 && v.startsWith('0') ? v.replace(/^0+(?=\d)/, '') : v;
  if (digits.length > MAX_AMOUNT_DIGITS) {
    return reject(
      `${what}_out_of_range`,
      `${what} has ${digits.length} digits; at most ${MAX_AMOUNT_DIGITS} fit a uint256`,
    );
  }
  return digits;
}

const TRADE_KEYS = Object.keys(TRADE_COLUMNS) as (keyof TradeColumns)[];

/** Whether a value the trade needs is absent from an update (TOAST). */
function firstUnchanged(values: TupleValues, cols: TradeColumns): string | null {
  // Inserts never hold one: one scan without allocating, then the columns in contract order.
  if (!values.includes(UNCHANGED_TOAST)) return null;
  for (const key of TRADE_KEYS) {
    if (at(values, cols[key]) === UNCHANGED_TOAST) return TRADE_COLUMNS[key];
  }
  return null;
}

/**
 * Maps one `order_book_trades` row. `symbolOf` looks a pool up by the join
 * column (undefined: unknown pool).
 */
export function mapTrade(
  values: TupleValues,
  cols: TradeColumns,
  symbolOf: (poolRef: string) => string | null | undefined,
): Mapped<Trade> {
  const id = at(values, cols.id);
  if (id === null || id === UNCHANGED_TOAST || id === '')
    return reject('missing_key', 'trade id is missing');
  const toasted = firstUnchanged(values, cols);
  if (toasted !== null) {
    return reject(
      'unchanged_toast',
      `column ${toasted} was not sent by the server (unchanged TOAST value in an update)`,
    );
  }
  const v = values as (string | null)[];

  const chainId = at(v, cols.chainId) as string | null;
  if (chainId === null || !INT.test(chainId) || !fitsInt32(chainId)) {
    return reject(
      'invalid_chain_id',
      `chain_id ${chainId === null ? 'is NULL' : preview(chainId)} is not a 32-bit integer`,
    );
  }

  const price = amount(at(v, cols.price), 'price');
  if (typeof price !== 'string') return price;
  const quantity = amount(at(v, cols.quantity), 'quantity');
  if (typeof quantity !== 'string') return quantity;

  const ts = at(v, cols.timestamp) as string | null;
  if (ts === null) return reject('missing_timestamp', 'timestamp is NULL');
  if (!INT.test(ts))
    return reject('invalid_timestamp', `timestamp ${preview(ts)} is not whole unix seconds`);
  const seconds = Number(ts);
  if (seconds <= 0 || seconds >= MAX_UNIX_SECONDS) {
    return reject(
      'timestamp_out_of_range',
      `timestamp ${preview(ts)} is outside 1970-01-01..2100-01-01 (unix seconds expected)`,
    );
  }

  const side = at(v, cols.side) as string | null;
  if (
    side !== 'buy' &&
    side !== 'sell' &&
    (side === null || side.length > MAX_SIDE_LENGTH || !SIDES.has(side.toLowerCase()))
  ) {
    return reject(
      'invalid_side',
      `side ${side === null ? 'is NULL' : preview(side)} is not buy or sell`,
    );
  }

  const poolId = at(v, cols.poolId) as string | null;
  if (poolId === null || poolId === '') return reject('missing_pool', 'pool_id is missing');
  const symbol = symbolOf(poolId);
  if (symbol === undefined)
    return reject('unknown_pool', `no pool is known for pool_id ${preview(poolId)}`);

  return {
    ok: true,
    value: {
      tradeId: id,
      // The text itself when it is already what String(seconds) gives (no leading zero).
      time: ts.charCodeAt(0) === 0x30 ? String(seconds) : ts,
      chainId,
      poolId,
      symbol,
      side,
      price,
      quantity,
      transactionId: at(v, cols.transactionId) as string | null,
    },
  };
}

const NUMERIC = /^(-?\d+(\.\d+)?|NaN|-?Infinity)$/;

/** Maps one `pools` row. Only what the sink would fail to cast is rejected. */
export function mapPool(values: TupleValues, cols: PoolColumns): Mapped<Pool> {
  const id = at(values, cols.id);
  if (id === null || id === UNCHANGED_TOAST || id === '')
    return reject('missing_key', 'pool id is missing');
  const problems: string[] = [];
  const text = (i: number, name: string): string | null => {
    const x = at(values, i);
    if (x === UNCHANGED_TOAST) {
      problems.push(`${name} was not sent (unchanged TOAST)`);
      return null;
    }
    return x;
  };
  const checked = (i: number, name: string, re: RegExp, int32: boolean): string | null => {
    const x = text(i, name);
    if (x === null) return null;
    if (!re.test(x) || (int32 && !fitsInt32(x)))
      problems.push(`${name} ${preview(x)} is not valid`);
    return x;
  };
  const pool: Pool = {
    id,
    chainId: checked(cols.chainId, 'chain_id', INT, true),
    coin: text(cols.coin, 'coin'),
    orderBook: text(cols.orderBook, 'order_book'),
    baseCurrency: text(cols.baseCurrency, 'base_currency'),
    quoteCurrency: text(cols.quoteCurrency, 'quote_currency'),
    baseDecimals: checked(cols.baseDecimals, 'base_decimals', INT, true),
    quoteDecimals: checked(cols.quoteDecimals, 'quote_decimals', INT, true),
    volume: checked(cols.volume, 'volume', NUMERIC, false),
    volumeInQuote: checked(cols.volumeInQuote, 'volume_in_quote', NUMERIC, false),
    price: checked(cols.price, 'price', NUMERIC, false),
    timestamp: checked(cols.timestamp, 'timestamp', INT, true),
  };
  if (problems.length > 0) return reject('invalid_pool_row', problems.join('; '));
  return { ok: true, value: pool };
}

/** The raw values of a row by column name, for a dead letter. */
export function rawValues(
  relation: Pick<Relation, 'columns'>,
  values: TupleValues,
): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  relation.columns.forEach((c, i) => {
    const x = values[i];
    out[c.name] = x === UNCHANGED_TOAST ? '(unchanged toast)' : (x ?? null);
  });
  return out;
}
