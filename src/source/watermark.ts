import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { type Lsn, parseLsn } from '../checkpoint/lsn.js';
import type { Logger } from '../log.js';
import type { InflightQueue } from '../sinks/inflight.js';
import { sleep } from '../retry.js';
import { WATERMARK_PREFIX, type ChangeRouter, type StreamWatcher } from '../trades/router.js';

/** What a re-read needs from the in-flight queue: its bound. */
export type QueueRoom = Pick<InflightQueue, 'full' | 'drained'>;

/** Resolves once the queue is under its bound, or rejects when `signal` aborts. */
export async function roomIn(queue: QueueRoom, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  if (!queue.full) return;
  await new Promise<void>((resolve, reject) => {
    const abort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', abort, { once: true });
    void queue.drained().then(() => {
      signal.removeEventListener('abort', abort);
      resolve();
    });
  });
}

/** Keys the stream changed between a window's low and high watermark. */
export interface ChangedKeys {
  trades: ReadonlySet<string>;
  pools: ReadonlySet<string>;
}

export interface WatermarkReaderOptions {
  slot: string;
  /** The source, where the watermarks are written (pg_logical_emit_message) and rows read. */
  source: pg.Pool;
  /** The router whose stream carries the watermarks; the reader is its watcher while started. */
  router: Pick<ChangeRouter, 'watcher' | 'skipBefore' | 'stats'>;
  /** The acknowledged position (min over every sink): what is durable everywhere. */
  flushLsn(): Lsn;
  log: Logger;
  /** How often a wait looks at the stream's position (default 25 ms). */
  pollMs?: number;
}

export interface WindowRead<T> {
  /** Reads the rows, between the low and the high watermark. */
  select(): Promise<T>;
  /**
   * Called in stream order at the high watermark, inside its transaction:
   * push what `select` read, except the `changed` keys, at `lsn`. Called again
   * if the stream replays that transaction before it is durable.
   */
  apply(result: T, changed: ChangedKeys, lsn: Lsn): void;
}

interface Window {
  open: boolean;
  trades: Set<string>;
  pools: Set<string>;
  onHigh: ((lsn: Lsn) => void) | null;
  high: Lsn | null;
}

/**
 * Reads source rows beside the live stream without undoing what the stream
 * did (the watermark technique of DBLog and Debezium's incremental
 * snapshots): a low watermark, the SELECT, a high watermark, all written to
 * the WAL; keys the stream changes between the two are left to the stream,
 * and the rest is applied at the high watermark's position in the stream, so
 * the write is newer than anything a sink held when the row was read, and
 * anything later still wins. Backfills and dead-letter retries both read
 * through it; several windows may be open at once.
 */
export class WatermarkReader implements StreamWatcher {
  private readonly windows = new Map<string, Window>();
  private readonly pollMs: number;

  constructor(private readonly opts: WatermarkReaderOptions) {
    this.pollMs = opts.pollMs ?? 25;
  }

  /** Watches the router's stream from now on. */
  start(): void {
    this.opts.router.watcher = this;
  }

  stop(): void {
    if (this.opts.router.watcher === this) this.opts.router.watcher = null;
  }

  /**
   * One window: resolves once what `apply` pushed is durable in every sink.
   * A window whose watermarks the stream skipped (an LSN reset forward) is
   * read again. Rejects with the signal's reason when it aborts; every wait
   * listens to it, so a paused stream never holds a caller.
   */
  async read<T>(
    w: WindowRead<T>,
    signal: AbortSignal,
  ): Promise<{ result: T; lsn: Lsn; changed: ChangedKeys }> {
    for (;;) {
      signal.throwIfAborted();
      const token = randomUUID();
      const win: Window = {
        open: false,
        trades: new Set(),
        pools: new Set(),
        onHigh: null,
        high: null,
      };
      this.windows.set(token, win);
      try {
        await this.mark(token, 'low');
        const result = await w.select();
        win.onHigh = (lsn) => w.apply(result, win, lsn);
        await this.mark(token, 'high');
        const after = await this.walInsertLsn();
        await this.until(() => win.high !== null || this.passed(after), signal);
        if (win.high === null) {
          this.opts.log.info('the stream passed a watermark unseen (an LSN reset?): reading again');
          continue;
        }
        await this.until(() => win.high !== null && this.opts.flushLsn() > win.high, signal);
        return { result, lsn: win.high, changed: win };
      } finally {
        this.windows.delete(token);
      }
    }
  }

  onWatermark(content: string, lsn: Lsn): void {
    let mark: { slot?: unknown; window?: unknown; kind?: unknown };
    try {
      mark = JSON.parse(content) as typeof mark;
    } catch {
      return;
    }
    if (mark.slot !== this.opts.slot || typeof mark.window !== 'string') return;
    const win = this.windows.get(mark.window);
    if (!win) return;
    if (mark.kind === 'low') {
      win.open = true;
      win.trades.clear();
      win.pools.clear();
    } else if (mark.kind === 'high' && win.open && win.onHigh) {
      win.onHigh(lsn);
      win.high = lsn;
    }
  }

  onTradeKey(id: string): void {
    for (const w of this.windows.values()) if (w.open) w.trades.add(id);
  }

  onPoolKey(id: string): void {
    for (const w of this.windows.values()) if (w.open) w.pools.add(id);
  }

  /**
   * The stream went past `after` (the WAL position once the high watermark
   * committed) without showing it: transactions arrive in commit order, so a
   * later commit routed, or a skip point beyond it, means it was skipped.
   */
  private passed(after: Lsn): boolean {
    const r = this.opts.router;
    return r.skipBefore > after || (r.stats.lastCommitEnd ?? 0n) > after;
  }

  private async until(ready: () => boolean, signal: AbortSignal): Promise<void> {
    while (!ready()) {
      signal.throwIfAborted();
      await sleep(this.pollMs, signal);
    }
  }

  private async mark(token: string, kind: 'low' | 'high'): Promise<void> {
    await this.opts.source.query('SELECT pg_logical_emit_message(true, $1, $2)', [
      WATERMARK_PREFIX,
      JSON.stringify({ slot: this.opts.slot, window: token, kind }),
    ]);
  }

  private async walInsertLsn(): Promise<Lsn> {
    const { rows } = await this.opts.source.query<{ lsn: string }>(
      'SELECT pg_current_wal_insert_lsn()::text AS lsn',
    );
    return parseLsn(rows[0]?.lsn ?? '0/0');
  }
}
