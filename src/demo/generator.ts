/**
 * What a Ponder indexer of an order-book exchange writes, made up: the source
 * tables as Ponder creates them, a few pools, some history, and then a live
 * stream of trades in small transactions, each trade also updating its pool's
 * volume and price (as Ponder's event handlers do), with now and then a chain
 * reorganisation: the last few trades deleted and re-inserted with other
 * values, in one transaction.
 *
 * Prices and quantities are raw uint256 values with 18 decimals, computed as
 * bigint and sent as text: never a JS number.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { quoteIdent } from '../sql.js';

const WEI = 10n ** 18n;
/** Anvil's chain id: a local test chain. */
const CHAIN_ID = 31337;

type Side = 'buy' | 'sell';

interface PoolState {
  id: string;
  coin: string;
  orderBook: string;
  baseCurrency: string;
  /** Raw price of one base unit in quote units, 18 decimals. */
  price: bigint;
  /** Sum of raw base quantities traded. */
  volume: bigint;
  /** Sum of price × quantity, in raw quote units. */
  volumeInQuote: bigint;
  timestamp: number;
}

interface Trade {
  id: string;
  price: bigint;
  quantity: bigint;
  timestamp: number;
  transactionId: string;
  side: Side;
  pool: PoolState;
}

export interface GeneratorOptions {
  /** Trades per second of the live stream. */
  ratePerSecond: number;
  /** Mean seconds between reorgs; 0: none. */
  reorgEverySeconds: number;
  /** Source schema; default `public`. */
  schema?: string;
}

export interface GeneratorStats {
  /** Trades committed (history and live); a reorg's re-inserts are not counted again. */
  trades: number;
  transactions: number;
  reorgs: number;
}

const MARKETS: ReadonlyArray<{ coin: string; price: bigint }> = [
  { coin: 'MWETH/MUSDC', price: 2_500n },
  { coin: 'MWBTC/MUSDC', price: 60_000n },
  { coin: 'MSOL/MUSDC', price: 150n },
  { coin: 'MLINK/MUSDC', price: 15n },
];

const hex = (bytes: number) => `0x${randomBytes(bytes).toString('hex')}`;
const randomInt = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1));

export class TradeGenerator {
  readonly stats: GeneratorStats = { trades: 0, transactions: 0, reorgs: 0 };
  private readonly schema: string;
  private readonly pools: PoolState[];
  /** One quote token (MUSDC) for every market. */
  private readonly quoteCurrency = hex(20);
  /** The latest trades, newest last: what a reorg takes back. */
  private recent: Trade[] = [];
  private running: Promise<void> | null = null;
  private stopRequested = false;

  constructor(
    private readonly client: pg.ClientBase,
    private readonly opts: GeneratorOptions,
  ) {
    this.schema = quoteIdent(opts.schema ?? 'public');
    this.pools = MARKETS.map((m) => ({
      id: hex(32),
      coin: m.coin,
      orderBook: hex(20),
      baseCurrency: hex(20),
      price: m.price * WEI,
      volume: 0n,
      volumeInQuote: 0n,
      timestamp: Math.floor(Date.now() / 1000),
    }));
  }

  get poolCount(): number {
    return this.pools.length;
  }

  /** The tables exactly as Ponder creates them (DESIGN.md, "The data"), and the pools. */
  async createSchema(): Promise<void> {
    const s = this.schema;
    await this.client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await this.client.query(`
      CREATE TABLE ${s}.order_book_trades (
        id text PRIMARY KEY,
        chain_id integer NOT NULL,
        price numeric(78,0),
        quantity numeric(78,0),
        "timestamp" integer,
        transaction_id text,
        side varchar,
        pool_id text NOT NULL
      )`);
    await this.client.query(`
      CREATE TABLE ${s}.pools (
        id text PRIMARY KEY,
        chain_id integer NOT NULL,
        coin varchar,
        order_book text,
        base_currency text NOT NULL,
        quote_currency text NOT NULL,
        base_decimals integer,
        quote_decimals integer,
        volume numeric(78,0),
        volume_in_quote numeric(78,0),
        price numeric(78,0),
        "timestamp" integer
      )`);
    for (const p of this.pools) {
      // Mock tokens: both sides with 18 decimals.
      await this.client.query(
        `INSERT INTO ${s}.pools VALUES ($1, $2, $3, $4, $5, $6, 18, 18, $7::numeric, $8::numeric, $9::numeric, $10)`,
        [
          p.id,
          CHAIN_ID,
          p.coin,
          p.orderBook,
          p.baseCurrency,
          this.quoteCurrency,
          p.volume.toString(),
          p.volumeInQuote.toString(),
          p.price.toString(),
          p.timestamp,
        ],
      );
    }
  }

  /** `count` trades spread over the last hour, committed in transactions of 1,000. */
  async insertHistory(count: number): Promise<void> {
    const now = Math.floor(Date.now() / 1000);
    for (let done = 0; done < count;) {
      const batch: Trade[] = [];
      while (batch.length < Math.min(1000, count - done)) {
        const i = done + batch.length;
        const timestamp = now - 3600 + Math.floor((3600 * i) / count);
        batch.push(...this.makeTransaction(Math.min(randomInt(1, 3), count - i), timestamp));
      }
      await this.client.query('BEGIN');
      await this.insertTrades(batch);
      await this.updatePools(new Set(batch.map((t) => t.pool)));
      await this.client.query('COMMIT');
      done += batch.length;
      this.stats.trades += batch.length;
      this.stats.transactions += 1;
    }
  }

  /** Starts the live stream; `stop()` ends it after the transaction in progress. */
  start(): void {
    if (this.running) return;
    this.stopRequested = false;
    this.running = this.loop();
  }

  /** Resolves when the stream has stopped; rejects with the error that stopped it. */
  get done(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  async stop(): Promise<void> {
    this.stopRequested = true;
    await this.running?.catch(() => undefined);
  }

  private async loop(): Promise<void> {
    const rate = this.opts.ratePerSecond;
    let t0 = performance.now();
    let emitted = 0;
    let nextReorg = this.nextReorgAt(t0);
    while (!this.stopRequested) {
      const now = performance.now();
      let due = Math.floor(((now - t0) / 1000) * rate) - emitted;
      if (due > rate) {
        // More than a second behind (a slow machine): carry on from now, no burst.
        t0 = now;
        emitted = 0;
        due = 0;
      }
      if (now >= nextReorg && this.recent.length > 0) {
        await this.reorg();
        nextReorg = this.nextReorgAt(now);
        continue;
      }
      if (due <= 0) {
        await sleep(5);
        continue;
      }
      const trades = this.makeTransaction(
        Math.min(due, randomInt(1, 4)),
        Math.floor(Date.now() / 1000),
      );
      await this.client.query('BEGIN');
      await this.insertTrades(trades);
      // Ponder updates the pool row in the handler of each trade event.
      for (const t of trades) await this.updatePools([t.pool]);
      await this.client.query('COMMIT');
      emitted += trades.length;
      this.stats.trades += trades.length;
      this.stats.transactions += 1;
      this.recent.push(...trades);
      if (this.recent.length > 32) this.recent = this.recent.slice(-16);
    }
  }

  private nextReorgAt(now: number): number {
    const mean = this.opts.reorgEverySeconds;
    if (mean <= 0) return Number.POSITIVE_INFINITY;
    return now + mean * 1000 * (0.5 + Math.random());
  }

  /**
   * A chain reorganisation as Ponder applies it: the rows of the orphaned
   * blocks are deleted and the new blocks' rows inserted, in one transaction.
   * Here the same transactions land again at other prices and sizes.
   */
  private async reorg(): Promise<void> {
    const orphaned = this.recent.splice(-Math.min(this.recent.length, randomInt(2, 6)));
    const replayed = orphaned.map((t) => {
      const pool = t.pool;
      pool.volume -= t.quantity;
      pool.volumeInQuote -= (t.price * t.quantity) / WEI;
      return { ...t, ...this.fill(pool), timestamp: Math.floor(Date.now() / 1000) };
    });
    await this.client.query('BEGIN');
    await this.client.query(`DELETE FROM ${this.schema}.order_book_trades WHERE id = ANY($1)`, [
      orphaned.map((t) => t.id),
    ]);
    await this.insertTrades(replayed);
    await this.updatePools(new Set(replayed.map((t) => t.pool)));
    await this.client.query('COMMIT');
    this.recent.push(...replayed);
    this.stats.reorgs += 1;
    this.stats.transactions += 1;
  }

  /** One on-chain transaction: `n` fills in one pool, ids `<tx hash>-<log index>`. */
  private makeTransaction(n: number, timestamp: number): Trade[] {
    const pool = this.pools[randomInt(0, this.pools.length - 1)] as PoolState;
    const transactionId = hex(32);
    const side: Side = Math.random() < 0.5 ? 'buy' : 'sell';
    const trades: Trade[] = [];
    for (let logIndex = 0; logIndex < n; logIndex++) {
      trades.push({
        id: `${transactionId}-${logIndex}`,
        transactionId,
        side,
        timestamp,
        pool,
        ...this.fill(pool),
      });
    }
    return trades;
  }

  /** A fill at a price a little off the last one; the pool's totals move with it. */
  private fill(pool: PoolState): { price: bigint; quantity: bigint } {
    // A random walk of up to ±0.08 % per trade.
    const ppm = BigInt(randomInt(-800, 800));
    const price = (pool.price * (1_000_000n + ppm)) / 1_000_000n;
    // 0.001 to 3 base tokens, to 9 decimal places.
    const quantity = BigInt(randomInt(1_000_000, 3_000_000_000)) * 10n ** 9n;
    pool.price = price;
    pool.volume += quantity;
    pool.volumeInQuote += (price * quantity) / WEI;
    pool.timestamp = Math.floor(Date.now() / 1000);
    return { price, quantity };
  }

  private async insertTrades(trades: readonly Trade[]): Promise<void> {
    // One statement per batch; the numerics travel as text arrays, so no digit is lost.
    await this.client.query(
      `INSERT INTO ${this.schema}.order_book_trades
              (id, chain_id, price, quantity, "timestamp", transaction_id, side, pool_id)
       SELECT * FROM unnest($1::text[], $2::int[], $3::numeric[], $4::numeric[],
                            $5::int[], $6::text[], $7::varchar[], $8::text[])`,
      [
        trades.map((t) => t.id),
        trades.map(() => CHAIN_ID),
        trades.map((t) => t.price.toString()),
        trades.map((t) => t.quantity.toString()),
        trades.map((t) => t.timestamp),
        trades.map((t) => t.transactionId),
        trades.map((t) => t.side),
        trades.map((t) => t.pool.orderBook),
      ],
    );
  }

  private async updatePools(pools: Iterable<PoolState>): Promise<void> {
    for (const p of pools) {
      await this.client.query(
        `UPDATE ${this.schema}.pools
            SET volume = $2::numeric, volume_in_quote = $3::numeric, price = $4::numeric, "timestamp" = $5
          WHERE id = $1`,
        [p.id, p.volume.toString(), p.volumeInQuote.toString(), p.price.toString(), p.timestamp],
      );
    }
  }
}
