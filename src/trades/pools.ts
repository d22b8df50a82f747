import { jsonStringBytes } from './size.js';

/**
 * The symbol of each pool, keyed by the column trades join on
 * (SLOTLINE_POOL_JOIN_COLUMN: `order_book`, as the old service did, or `id`).
 * Loaded at start and kept current by the stream, in stream order, so a trade
 * sees the pool as of its own transaction.
 */
export class PoolCache {
  private readonly symbols = new Map<string, string | null>();
  /** join value → serialized size of its symbol, computed once per pool change, not per trade. */
  private readonly sizes = new Map<string, number>();
  /** pool id → its join value, to forget the old key when a pool changes. */
  private readonly refs = new Map<string, string>();

  constructor(readonly joinColumn: 'order_book' | 'id') {}

  get size(): number {
    return this.symbols.size;
  }

  /** undefined: no such pool; null: the pool exists without a coin. */
  symbolOf(ref: string): string | null | undefined {
    return this.symbols.get(ref);
  }

  /** What the symbol adds to each trade of the pool once serialized (0: unknown pool). */
  symbolBytes(ref: string): number {
    return this.sizes.get(ref) ?? 0;
  }

  has(ref: string): boolean {
    return this.symbols.has(ref);
  }

  set(pool: { id: string; orderBook: string | null; coin: string | null }): void {
    const ref = this.joinColumn === 'id' ? pool.id : pool.orderBook;
    const old = this.refs.get(pool.id);
    if (old !== undefined && old !== ref) this.forgetRef(old);
    if (ref === null) {
      this.refs.delete(pool.id);
      return;
    }
    this.refs.set(pool.id, ref);
    this.symbols.set(ref, pool.coin);
    this.sizes.set(ref, jsonStringBytes(pool.coin));
  }

  /** Adds a pool only if its join value is unknown (start-up fill from a second source). */
  setIfAbsent(pool: { id: string; orderBook: string | null; coin: string | null }): void {
    if (this.refs.has(pool.id)) return;
    const ref = this.joinColumn === 'id' ? pool.id : pool.orderBook;
    if (ref !== null && this.symbols.has(ref)) return;
    this.set(pool);
  }

  delete(id: string): void {
    const ref = this.refs.get(id);
    if (ref !== undefined) this.forgetRef(ref);
    this.refs.delete(id);
  }

  clear(): void {
    this.symbols.clear();
    this.sizes.clear();
    this.refs.clear();
  }

  /** Takes `other`'s pools instead of its own (a deployment switch: the new deployment's pools). */
  replaceWith(other: PoolCache): void {
    this.clear();
    for (const [k, v] of other.symbols) this.symbols.set(k, v);
    for (const [k, v] of other.sizes) this.sizes.set(k, v);
    for (const [k, v] of other.refs) this.refs.set(k, v);
  }

  private forgetRef(ref: string): void {
    this.symbols.delete(ref);
    this.sizes.delete(ref);
  }
}
