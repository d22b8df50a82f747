/**
 * The demo's live progress line: what is sampled from the two databases once a
 * second, and how it is shown. Sampling is I/O; formatting is pure.
 */
import pg from 'pg';
import { quoteIdent } from '../sql.js';

export interface ProgressSample {
  /** ms since the connector started */
  elapsedMs: number;
  phase: string;
  /** Trades per second into the sink since the previous sample; null before there are two. */
  tradesPerSecond: number | null;
  /** pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn); null before the slot exists. */
  slotLagBytes: number | null;
  sinkRows: number | null;
  sourceRows: number | null;
  deadLetters: number | null;
  reorgs: number;
}

const count = (n: number | null) => (n === null ? '-' : n.toLocaleString('en-US'));

export function formatBytes(n: number | null): string {
  if (n === null) return '-';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

export function formatProgress(s: ProgressSample): string {
  const secs = `${Math.floor(s.elapsedMs / 1000)}s`.padStart(5);
  const rate = s.tradesPerSecond === null ? '-' : Math.round(s.tradesPerSecond).toLocaleString();
  return [
    `${secs} ${s.phase.padEnd(12)}`,
    `${rate.padStart(6)} trades/s into sink`,
    `slot lag ${formatBytes(s.slotLagBytes).padStart(8)}`,
    `sink ${count(s.sinkRows)} / source ${count(s.sourceRows)} trades`,
    `${count(s.deadLetters)} dead letters`,
    `${s.reorgs} ${s.reorgs === 1 ? 'reorg' : 'reorgs'}`,
  ].join(' | ');
}

export interface SamplerOptions {
  sourceUrl: string;
  sinkUrl: string;
  sourceSchema: string;
  sinkSchema: string;
  slot: string;
}

const num = (v: string | null | undefined) => (v === null || v === undefined ? null : Number(v));

/** Reads the numbers of the progress line; a table that does not exist yet reads as null. */
export class ProgressSampler {
  private readonly source: pg.Pool;
  private readonly sink: pg.Pool;
  private previous: { at: number; sinkRows: number } | null = null;

  constructor(private readonly opts: SamplerOptions) {
    this.source = new pg.Pool({ connectionString: opts.sourceUrl, max: 1 });
    this.sink = new pg.Pool({ connectionString: opts.sinkUrl, max: 1 });
    // The server going away at shutdown is not news.
    this.source.on('error', () => undefined);
    this.sink.on('error', () => undefined);
  }

  async sample(): Promise<
    Pick<
      ProgressSample,
      'tradesPerSecond' | 'slotLagBytes' | 'sinkRows' | 'sourceRows' | 'deadLetters'
    >
  > {
    const [source, sinkRows, deadLetters] = await Promise.all([
      this.source
        .query<{ rows: string; lag: string | null }>(
          `SELECT (SELECT count(*) FROM ${quoteIdent(this.opts.sourceSchema)}.order_book_trades) AS rows,
                  (SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint
                     FROM pg_replication_slots WHERE slot_name = $1) AS lag`,
          [this.opts.slot],
        )
        .then((r) => r.rows[0])
        .catch(() => undefined),
      this.sinkCount(`${quoteIdent(this.opts.sinkSchema)}.analytics_trades`),
      this.sinkCount('slotline.dead_letters'),
    ]);
    const at = Date.now();
    let tradesPerSecond: number | null = null;
    if (sinkRows !== null) {
      if (this.previous && at > this.previous.at)
        tradesPerSecond = Math.max(
          0,
          ((sinkRows - this.previous.sinkRows) * 1000) / (at - this.previous.at),
        );
      this.previous = { at, sinkRows };
    }
    return {
      tradesPerSecond,
      slotLagBytes: num(source?.lag),
      sourceRows: num(source?.rows),
      sinkRows,
      deadLetters,
    };
  }

  /** Trade counts and exact total volumes (price × quantity) on both sides, as digit strings. */
  async totals(): Promise<{
    sourceRows: number;
    sinkRows: number;
    sourceVolume: string;
    sinkVolume: string;
  }> {
    const [source, sink] = await Promise.all([
      this.source.query<{ n: string; v: string }>(
        `SELECT count(*) AS n, coalesce(sum(price * quantity), 0)::text AS v
           FROM ${quoteIdent(this.opts.sourceSchema)}.order_book_trades`,
      ),
      this.sink.query<{ n: string; v: string }>(
        `SELECT count(*) AS n, coalesce(sum(volume), 0)::text AS v
           FROM ${quoteIdent(this.opts.sinkSchema)}.analytics_trades`,
      ),
    ]);
    const s = source.rows[0];
    const k = sink.rows[0];
    if (!s || !k) throw new Error('no totals');
    return { sourceRows: Number(s.n), sinkRows: Number(k.n), sourceVolume: s.v, sinkVolume: k.v };
  }

  private sinkCount(table: string): Promise<number | null> {
    return this.sink
      .query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`)
      .then((r) => num(r.rows[0]?.n))
      .catch(() => null);
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.source.end(), this.sink.end()]);
  }
}
