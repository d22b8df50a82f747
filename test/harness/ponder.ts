/**
 * The source schema exactly as Ponder writes it (DESIGN.md, "The data"), and
 * generators of plausible rows. Prices and quantities are uint256 raw units:
 * digit strings all the way into SQL, never a JS number.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { TradeRow } from './compare.js';

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

// ---- a whole Ponder deployment ---------------------------------------------
//
// How Ponder 0.11–0.17 lays out a deployment, read from its source: every
// `ponder start` of a changed app gets a new schema holding the app's tables,
// `_ponder_meta` (one row, key 'app', a JSONB value whose heartbeat_at Ponder
// rewrites every 10 s and whose is_ready turns 1 once the backfill is done),
// `_ponder_checkpoint` (one row per chain) and a shadow table `_reorg__<table>`
// per app table, filled by a trigger once the app indexes in realtime, so that
// unfinalized rows can be undone. Backfill batches are single transactions of
// up to ~12,000 events per chain written with COPY; inside a transaction
// deletes come first, then inserts and updates, table by table. With
// `--views-schema`, a ready deployment re-points the views schema in one
// transaction (DROP VIEW + CREATE VIEW … AS SELECT * FROM "<schema>"."<t>").
// With `ordering: "experimental_isolated"` every table is PARTITION BY LIST
// (chain_id), one partition `<table>_<chainId>` per chain, and its primary key
// includes chain_id.

/** Ponder's 75-character checkpoint with every field at its maximum: "not yet finalized". */
const MAX_CHECKPOINT = '9'.repeat(75);

/**
 * A Ponder checkpoint string: block timestamp (10 digits), chain id (16), block
 * number (16), transaction index (16), event type (1), event index (16).
 */
export function encodeCheckpoint(timestamp: number, chainId: number, block: number): string {
  const pad = (n: number, w: number) => String(n).padStart(w, '0');
  return `${pad(timestamp, 10)}${pad(chainId, 16)}${pad(block, 16)}${'0'.repeat(16)}5${'0'.repeat(16)}`;
}

export const APP_TABLES = ['order_book_trades', 'pools'] as const;
export type AppTable = (typeof APP_TABLES)[number];

export interface DeploymentOptions {
  schema: string;
  /** Chains indexed; with `isolated`, one partition per chain. Default [31337]. */
  chains?: number[];
  /** Ponder's `ordering: "experimental_isolated"`: tables PARTITION BY LIST (chain_id). */
  isolated?: boolean;
  buildId?: string;
}

/** Rows of one transaction, in Ponder's order: deletes, then inserts and updates, table by table. */
export interface PonderBlock {
  deleteTrades?: string[];
  trades?: PonderTrade[];
  pools?: PonderPool[];
  /** Default: the latest block + 1 on the first chain. */
  block?: number;
}

/**
 * One Ponder deployment in its own schema, writing the way Ponder writes:
 * COPY backfill batches, realtime blocks with reorg shadow rows, undo on
 * restart, the _ponder_meta heartbeat and readiness, and the views.
 */
export class PonderDeployment {
  readonly schema: string;
  readonly chains: number[];
  private block = 1;

  constructor(
    readonly db: pg.Pool,
    private readonly opts: DeploymentOptions,
  ) {
    this.schema = opts.schema;
    this.chains = opts.chains ?? [DEFAULT_CHAIN_ID];
  }

  private get s(): string {
    return quoteIdent(this.schema);
  }

  /** The schema, the app tables (partitioned when isolated), Ponder's own tables, not ready. */
  async create(): Promise<this> {
    await this.tx(async (c) => {
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${this.s}`);
      // The RPC cache every deployment of the database shares.
      await c.query('CREATE SCHEMA IF NOT EXISTS ponder_sync');
      await c.query(
        `CREATE TABLE IF NOT EXISTS ponder_sync.logs (chain_id bigint NOT NULL, block_number numeric(78,0) NOT NULL,
           log_index integer NOT NULL, address varchar(42) NOT NULL, data text NOT NULL,
           PRIMARY KEY (chain_id, block_number, log_index))`,
      );
      await this.createAppTables(c);
      for (const t of APP_TABLES) await this.createReorgTable(c, t);
      await c.query(`CREATE TABLE ${this.s}._ponder_meta (key text PRIMARY KEY, value jsonb)`);
      await c.query(
        `CREATE TABLE ${this.s}._ponder_checkpoint (
           chain_name text PRIMARY KEY, chain_id bigint NOT NULL,
           safe_checkpoint varchar(75) NOT NULL, latest_checkpoint varchar(75) NOT NULL,
           finalized_checkpoint varchar(75) NOT NULL)`,
      );
      const meta = {
        is_locked: 1,
        is_dev: 0,
        heartbeat_at: Date.now(),
        build_id: this.opts.buildId ?? hex(this.schema, 10),
        checkpoint: null,
        table_names: [...APP_TABLES],
        version: '2',
        is_ready: 0,
      };
      await c.query(`INSERT INTO ${this.s}._ponder_meta (key, value) VALUES ('app', $1)`, [meta]);
      for (const chain of this.chains) {
        const zero = encodeCheckpoint(0, chain, 0);
        await c.query(`INSERT INTO ${this.s}._ponder_checkpoint VALUES ($1, $2, $3, $3, $3)`, [
          `chain${chain}`,
          chain,
          zero,
        ]);
      }
    });
    return this;
  }

  private async createAppTables(c: pg.PoolClient): Promise<void> {
    const isolated = this.opts.isolated === true;
    const key = isolated ? 'PRIMARY KEY (id, chain_id)' : 'PRIMARY KEY (id)';
    const tail = isolated ? ' PARTITION BY LIST (chain_id)' : '';
    await c.query(`
      CREATE TABLE ${this.s}.order_book_trades (
        id text NOT NULL, chain_id integer NOT NULL, price numeric(78,0), quantity numeric(78,0),
        "timestamp" integer, transaction_id text, side varchar, pool_id text NOT NULL, ${key})${tail}`);
    await c.query(`
      CREATE TABLE ${this.s}.pools (
        id text NOT NULL, chain_id integer NOT NULL, coin varchar, order_book text,
        base_currency text NOT NULL, quote_currency text NOT NULL, base_decimals integer,
        quote_decimals integer, volume numeric(78,0), volume_in_quote numeric(78,0),
        price numeric(78,0), "timestamp" integer, ${key})${tail}`);
    if (!isolated) return;
    for (const t of APP_TABLES)
      for (const chain of this.chains)
        await c.query(
          `CREATE TABLE ${this.s}.${quoteIdent(`${t}_${chain}`)} PARTITION OF ${this.s}.${t} FOR VALUES IN (${chain})`,
        );
  }

  /**
   * `_reorg__<table>`: the table's columns, then operation_id, operation
   * (0 insert, 1 update, 2 delete) and checkpoint; and the trigger function
   * Ponder attaches in realtime, which logs each row's previous state.
   */
  private async createReorgTable(c: pg.PoolClient, table: AppTable): Promise<void> {
    const reorg = `${this.s}.${quoteIdent(`_reorg__${table}`)}`;
    await c.query(
      `CREATE TABLE ${reorg} (LIKE ${this.s}.${table} EXCLUDING CONSTRAINTS,
         operation_id serial PRIMARY KEY, operation integer NOT NULL, checkpoint varchar(75) NOT NULL)`,
    );
    const cols = (table === 'pools' ? POOL_COLUMNS : TRADE_COLUMNS).map(([n]) => quoteIdent(n));
    const list = cols.join(', ');
    const of = (row: string) => cols.map((col) => `${row}.${col}`).join(', ');
    await c.query(`
      CREATE FUNCTION ${this.s}.${quoteIdent(`operation_reorg__${table}`)}() RETURNS trigger
      LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP = 'INSERT' THEN
          INSERT INTO ${reorg} (${list}, operation, checkpoint) VALUES (${of('NEW')}, 0, '${MAX_CHECKPOINT}');
        ELSIF TG_OP = 'UPDATE' THEN
          INSERT INTO ${reorg} (${list}, operation, checkpoint) VALUES (${of('OLD')}, 1, '${MAX_CHECKPOINT}');
        ELSE
          INSERT INTO ${reorg} (${list}, operation, checkpoint) VALUES (${of('OLD')}, 2, '${MAX_CHECKPOINT}');
        END IF;
        RETURN NULL;
      END $$`);
  }

  /**
   * Historical sync: batches of up to `batchSize` trades, each one transaction
   * written with COPY (pools with the first), the chain checkpoints moved at
   * its end. Ponder installs no reorg triggers before realtime.
   */
  async backfill(pools: readonly PonderPool[], trades: readonly PonderTrade[], batchSize = 12_000) {
    for (let start = 0; start === 0 || start < trades.length; start += batchSize) {
      const batch = trades.slice(start, start + batchSize);
      await this.tx(async (c) => {
        if (start === 0 && pools.length > 0)
          await copyRows(c, this.schema, 'pools', POOL_COLUMNS, pools);
        if (batch.length > 0)
          await copyRows(c, this.schema, 'order_book_trades', TRADE_COLUMNS, batch);
        await this.cacheLogs(c, this.block);
        await this.advanceCheckpoints(c, this.block++);
      });
    }
  }

  /** Realtime: Ponder creates the reorg triggers, so every write is logged for an undo. */
  async startRealtime(): Promise<void> {
    for (const t of APP_TABLES) {
      const fn = `${this.s}.${quoteIdent(`operation_reorg__${t}`)}`;
      await this.db.query(
        `CREATE TRIGGER ${quoteIdent(`_reorg__${t}`)} AFTER INSERT OR UPDATE OR DELETE ON ${this.s}.${t}
           FOR EACH ROW EXECUTE FUNCTION ${fn}()`,
      );
    }
  }

  /** One realtime block: one transaction, deletes first, then inserts and updates table by table. */
  async writeBlock(b: PonderBlock): Promise<void> {
    const block = b.block ?? this.block++;
    await this.tx(async (c) => {
      if (b.deleteTrades && b.deleteTrades.length > 0)
        await c.query(`DELETE FROM ${this.s}.order_book_trades WHERE id = ANY($1::text[])`, [
          b.deleteTrades,
        ]);
      if (b.trades && b.trades.length > 0)
        await upsertRows(c, this.schema, 'order_book_trades', b.trades);
      if (b.pools && b.pools.length > 0) await upsertRows(c, this.schema, 'pools', b.pools);
      // The block is done: its reorg rows get its checkpoint.
      const cp = encodeCheckpoint(
        BASE_TIMESTAMP + block,
        this.chains[0] ?? DEFAULT_CHAIN_ID,
        block,
      );
      for (const t of APP_TABLES)
        await c.query(
          `UPDATE ${this.s}.${quoteIdent(`_reorg__${t}`)} SET checkpoint = $1 WHERE checkpoint = $2`,
          [cp, MAX_CHECKPOINT],
        );
      await this.advanceCheckpoints(c, block);
    });
  }

  /**
   * A restart (or a reorg) undoes the unfinalized rows in one transaction:
   * from the reorg log, newest first, an insert is deleted and an update or a
   * delete is written back with INSERT … ON CONFLICT DO UPDATE. Ponder drops
   * the triggers first, so the undo itself is not logged. Returns the rows undone.
   */
  async undoUnfinalized(): Promise<number> {
    let undone = 0;
    await this.tx(async (c) => {
      for (const t of APP_TABLES)
        await c.query(`DROP TRIGGER IF EXISTS ${quoteIdent(`_reorg__${t}`)} ON ${this.s}.${t}`);
      for (const t of APP_TABLES) {
        const reorg = `${this.s}.${quoteIdent(`_reorg__${t}`)}`;
        const cols = (t === 'pools' ? POOL_COLUMNS : TRADE_COLUMNS).map(([n]) => n);
        const { rows } = await c.query<Record<string, unknown> & { operation: number }>(
          `SELECT ${cols.map(quoteIdent).join(', ')}, operation FROM ${reorg} ORDER BY operation_id DESC`,
        );
        const inserted = rows.filter((r) => r.operation === 0).map((r) => String(r.id));
        if (inserted.length > 0)
          await c.query(`DELETE FROM ${this.s}.${t} WHERE id = ANY($1::text[])`, [inserted]);
        // Newest first: the oldest logged state of a row is the one to restore.
        const restore = new Map<string, Record<string, unknown>>();
        for (const r of rows) if (r.operation !== 0) restore.set(String(r.id), r);
        const back = [...restore.values()].map(({ operation: _, ...row }) => row);
        if (back.length > 0)
          await upsertRows(c, this.schema, t, back as unknown as PonderTrade[] & PonderPool[]);
        await c.query(`DELETE FROM ${reorg}`);
        undone += rows.length;
      }
    });
    return undone;
  }

  /** Ponder's heartbeat: `_ponder_meta` is rewritten every 10 s. */
  async heartbeat(): Promise<void> {
    await this.db.query(
      `UPDATE ${this.s}._ponder_meta SET value = jsonb_set(value, '{heartbeat_at}', to_jsonb($1::bigint)) WHERE key = 'app'`,
      [Date.now()],
    );
  }

  /** The backfill is done: is_ready = 1. */
  async markReady(): Promise<void> {
    await this.db.query(
      `UPDATE ${this.s}._ponder_meta SET value = jsonb_set(value, '{is_ready}', '1') WHERE key = 'app'`,
    );
  }

  /** `--views-schema`: the views of every app table and of Ponder's own, re-pointed in one transaction. */
  async publishViews(viewsSchema: string): Promise<void> {
    const v = quoteIdent(viewsSchema);
    await this.tx(async (c) => {
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${v}`);
      for (const t of [...APP_TABLES, '_ponder_meta', '_ponder_checkpoint']) {
        await c.query(`DROP VIEW IF EXISTS ${v}.${quoteIdent(t)}`);
        await c.query(
          `CREATE VIEW ${v}.${quoteIdent(t)} AS SELECT * FROM ${this.s}.${quoteIdent(t)}`,
        );
      }
    });
  }

  /** Rows of the deployment's trades, for comparisons: id, price, quantity, time, side. */
  async trades(): Promise<TradeRow[]> {
    const r = await this.db.query<TradeRow>(
      `SELECT id, price::text, quantity::text, timestamp::text AS ts, side, pool_id, transaction_id
         FROM ${this.s}.order_book_trades ORDER BY id COLLATE "C"`,
    );
    return r.rows;
  }

  /** What the sync engine caches while it fetches a range: raw logs in ponder_sync. */
  private async cacheLogs(c: pg.PoolClient, block: number): Promise<void> {
    for (const chain of this.chains)
      await c.query(
        `INSERT INTO ponder_sync.logs VALUES ($1, $2, 0, $3, $4) ON CONFLICT DO NOTHING`,
        [chain, block, `0x${hex(`address:${chain}`, 40)}`, `0x${hex(`log:${chain}:${block}`, 64)}`],
      );
  }

  private async advanceCheckpoints(c: pg.PoolClient, block: number): Promise<void> {
    for (const chain of this.chains) {
      const cp = encodeCheckpoint(BASE_TIMESTAMP + block, chain, block);
      await c.query(
        `UPDATE ${this.s}._ponder_checkpoint SET latest_checkpoint = $1, safe_checkpoint = $1 WHERE chain_id = $2`,
        [cp, chain],
      );
    }
  }

  private async tx(fn: (c: pg.PoolClient) => Promise<void>): Promise<void> {
    const c = await this.db.connect();
    try {
      await c.query('BEGIN');
      await fn(c);
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  }
}

/** INSERT … ON CONFLICT (primary key) DO UPDATE, as Ponder's upserts and undo write. */
async function upsertRows(
  c: pg.PoolClient,
  schema: string,
  table: AppTable,
  rows: readonly (PonderTrade | PonderPool)[],
): Promise<void> {
  const columns = table === 'pools' ? POOL_COLUMNS : TRADE_COLUMNS;
  const key = await c.query<{ attname: string }>(
    `SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
      WHERE i.indrelid = ($1 || '.' || $2)::regclass AND i.indisprimary`,
    [quoteIdent(schema), table],
  );
  const keyCols = key.rows.map((r) => quoteIdent(r.attname));
  const names = columns.map(([n]) => quoteIdent(n));
  const set = names.filter((n) => !keyCols.includes(n)).map((n) => `${n} = EXCLUDED.${n}`);
  const params: (string | null)[] = [];
  const tuples = rows.map((row) => {
    const values = columns.map(([name, type]) => {
      const value = (row as unknown as Record<string, unknown>)[name];
      params.push(value === null || value === undefined ? null : String(value));
      return `$${params.length}::text::${type}`;
    });
    return `(${values.join(', ')})`;
  });
  await c.query(
    `INSERT INTO ${quoteIdent(schema)}.${table} (${names.join(', ')}) VALUES ${tuples.join(', ')}
     ON CONFLICT (${keyCols.join(', ')}) DO UPDATE SET ${set.join(', ')}`,
    params,
  );
}

/** COPY … FROM STDIN in text format, as Ponder writes its backfill batches. */
async function copyRows<R extends object>(
  c: pg.PoolClient,
  schema: string,
  table: AppTable,
  columns: ReadonlyArray<readonly [keyof R & string, string]>,
  rows: readonly R[],
): Promise<void> {
  const text = rows
    .map((row) =>
      columns
        .map(([name]) => {
          const v: unknown = row[name];
          return v === null || v === undefined ? '\\N' : copyEscape(String(v));
        })
        .join('\t'),
    )
    .join('\n');
  const list = columns.map(([n]) => quoteIdent(n)).join(', ');
  const copy = new CopyIn(
    `COPY ${quoteIdent(schema)}.${table} (${list}) FROM STDIN`,
    Buffer.from(`${text}\n`, 'utf8'),
  );
  c.query(copy);
  await copy.done;
}

function copyEscape(s: string): string {
  return s.replace(/[\\\t\n\r]/g, (ch) =>
    ch === '\\' ? '\\\\' : ch === '\t' ? '\\t' : ch === '\n' ? '\\n' : '\\r',
  );
}

interface CopyInConnection {
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
}

/** pg's Submittable hook for COPY … FROM STDIN: send the data in 64 KiB chunks when asked. */
class CopyIn implements pg.Submittable {
  readonly done: Promise<void>;
  private resolve!: () => void;
  private reject!: (err: Error) => void;
  private failed: Error | null = null;

  constructor(
    private readonly text: string,
    private readonly data: Buffer,
  ) {
    this.done = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    this.done.catch(() => undefined);
  }

  submit(connection: unknown): void {
    (connection as CopyInConnection).query(this.text);
  }

  handleCopyInResponse(connection: unknown): void {
    const conn = connection as CopyInConnection;
    for (let i = 0; i < this.data.length; i += 65_536)
      conn.sendCopyFromChunk(this.data.subarray(i, i + 65_536));
    conn.endCopyFrom();
  }

  handleError(err: Error): void {
    this.failed ??= err;
    this.reject(err);
  }

  handleReadyForQuery(): void {
    if (this.failed) this.reject(this.failed);
    else this.resolve();
  }

  handleCommandComplete(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyData(): void {}
}
