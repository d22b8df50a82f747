import pg from 'pg';
import type { Logger } from '../log.js';
import { escapedLiteral, quoteIdent, quoteLiteral } from '../sql.js';

/** The continuous aggregates over analytics_trades that slotline makes (sql/003_ohlcv_timescale.sql). */
export const OHLCV_VIEWS = ['ohlcv_1m', 'ohlcv_1h'] as const;

/**
 * How far back the aggregates' refresh policies re-read on their own, with
 * room to spare: ohlcv_1m's policy re-reads the last day every minute,
 * ohlcv_1h's the last 7 days every 15 minutes (start_offset in
 * sql/003_ohlcv_timescale.sql). A change to an older trade is the
 * connector's to refresh; a newer one is left to the policies, so the hot
 * path never records anything.
 */
export const POLICY_REACH_SECONDS = 12 * 3600;

/**
 * Refresh windows are widened to whole hours: refresh_continuous_aggregate
 * recomputes only the buckets wholly inside its window, and an hour holds whole
 * buckets of both views.
 */
export const ALIGN_SECONDS = 3600;

/** A span of trade time in unix seconds, both ends included; null: open. */
export interface Span {
  from: number | null;
  to: number | null;
}

/** The trade times one sink transaction changed that the refresh policies will not re-read. */
export class StaleSpan {
  private min = Infinity;
  private max = -Infinity;
  private open = false;

  /** `horizon`: unix seconds; a change at or after it is the policies' to refresh. */
  constructor(private readonly horizon: number) {}

  static now(): StaleSpan {
    return new StaleSpan(Date.now() / 1000 - POLICY_REACH_SECONDS);
  }

  /** A trade at `seconds` was written or removed. */
  add(seconds: number): void {
    if (!(seconds < this.horizon)) return;
    if (seconds < this.min) this.min = seconds;
    if (seconds > this.max) this.max = seconds;
  }

  /** Trades anywhere between `from` and `to` (unix seconds) were written or removed. */
  addRange(from: number, to: number): void {
    if (!(from < this.horizon)) return;
    this.add(from);
    // What lies at or past the horizon is the policies'; the rest up to it is ours.
    this.add(Math.min(to, this.horizon - 1));
  }

  /** Rows at unknown times were removed (a TRUNCATE, a sweep). */
  addAll(): void {
    this.open = true;
  }

  span(): Span | null {
    if (this.open) return { from: null, to: null };
    return this.min === Infinity ? null : { from: this.min, to: this.max };
  }
}

/**
 * The windows to refresh for `spans`: widened outwards to multiples of
 * `align`, an open end closed at `ceiling` (newer trades are the policies'),
 * sorted, and overlapping or touching windows merged. Ends are exclusive.
 */
export function refreshWindows(spans: readonly Span[], align: number, ceiling: number): Span[] {
  const up = (s: number) => Math.ceil(s / align) * align;
  const windows = spans
    .map((s) => ({
      from: s.from === null ? null : Math.floor(s.from / align) * align,
      // `to` is included: the window ends after it.
      to: s.to === null ? up(ceiling) : up(Math.floor(s.to) + 1),
    }))
    .sort((a, b) => (a.from ?? -Infinity) - (b.from ?? -Infinity));
  const out: Span[] = [];
  for (const w of windows) {
    const last = out[out.length - 1];
    if (last && (w.from === null || (last.to !== null && w.from <= last.to))) {
      last.to = Math.max(last.to ?? -Infinity, w.to);
    } else out.push({ ...w });
  }
  return out;
}

/** Records, inside the caller's transaction, that the aggregates owe a refresh over `span`. */
export async function recordRefresh(
  client: Pick<pg.ClientBase, 'query'>,
  slot: string,
  span: Span,
): Promise<void> {
  await client.query(recordRefreshText(slot, span));
}

/**
 * recordRefresh as one statement with its values inline, to travel in the
 * message that commits the write (one round trip less per batch).
 */
export function recordRefreshText(slot: string, span: Span): string {
  const at = (seconds: number | null) => {
    if (seconds === null) return 'NULL';
    if (!Number.isFinite(seconds)) throw new Error(`ohlcv refresh bound is not finite: ${seconds}`);
    return `to_timestamp(${String(seconds)}::float8)`;
  };
  return `INSERT INTO slotline.ohlcv_refresh (slot, from_time, to_time)
     VALUES (${escapedLiteral(slot)}, ${at(span.from)}, ${at(span.to)})`;
}

/** Whether `schema` holds slotline's OHLCV views as continuous aggregates (TimescaleDB). */
export async function hasOhlcvAggregates(
  client: Pick<pg.ClientBase, 'query'>,
  schema: string,
): Promise<boolean> {
  const ext = await client.query(`SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'`);
  if (ext.rowCount === 0) return false;
  const { rows } = await client.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM timescaledb_information.continuous_aggregates
      WHERE view_schema = $1 AND view_name = ANY ($2::text[])`,
    [schema, OHLCV_VIEWS],
  );
  return rows[0]?.n === OHLCV_VIEWS.length;
}

export interface OhlcvRefresherOptions {
  url: string;
  /** SLOTLINE_SINK_SCHEMA, where the views are. */
  schema: string;
  slot: string;
  log: Logger;
  /** A refresh waits until no write has asked for one for this long (default 2 s)… */
  quietMs?: number;
  /** …but not longer than this after the first ask (default 60 s): a long backfill refreshes as it goes. */
  maxDelayMs?: number;
  /**
   * How often it looks for refreshes recorded elsewhere (`slotline verify
   * --repair`) or still owed after a failure, such as an overlapping policy
   * run (default 30 s).
   */
  pollMs?: number;
}

interface Owed {
  id: string;
  f: number | null;
  t: number | null;
}

/**
 * Refreshes ohlcv_1m and ohlcv_1h over the spans recorded in
 * slotline.ohlcv_refresh, after the transactions that recorded them
 * committed, then deletes them. One runs at a time, on a connection of its own
 * (each refresh commits by itself and cannot run in a transaction block). A
 * failure leaves the spans recorded for the next run.
 */
export class OhlcvRefresher {
  private timer: NodeJS.Timeout | null = null;
  private dueBy: number | null = null;
  private running: Promise<void> | null = null;
  private askedWhileRunning = false;
  private stopped = false;

  constructor(private readonly opts: OhlcvRefresherOptions) {}

  /** Starts polling; refreshes left owed by an earlier run come first. */
  start(): void {
    this.schedule(0);
  }

  /** A committed write recorded a span: refresh soon. */
  ask(): void {
    if (this.stopped) return;
    if (this.running) {
      this.askedWhileRunning = true;
      return;
    }
    const now = Date.now();
    this.dueBy ??= now + (this.opts.maxDelayMs ?? 60_000);
    this.schedule(Math.max(0, Math.min(this.opts.quietMs ?? 2_000, this.dueBy - now)));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tick(), ms);
    this.timer.unref();
  }

  private tick(): void {
    this.timer = null;
    this.dueBy = null;
    this.askedWhileRunning = false;
    this.running = this.refreshOwed()
      .catch((err: unknown) => {
        const e = err as Error & { code?: string };
        // 55P03: a policy (or another replica) refreshes an overlapping window right now.
        const level = e.code === '55P03' ? 'info' : 'warn';
        this.opts.log[level](
          { code: e.code },
          `OHLCV refresh failed, kept for the next try: ${e.message}`,
        );
      })
      .finally(() => {
        this.running = null;
        if (this.askedWhileRunning) this.ask();
        else this.schedule(this.opts.pollMs ?? 30_000);
      });
  }

  /** One pass over what is owed; resolves once refreshed and forgotten. */
  private async refreshOwed(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.opts.url,
      application_name: 'slotline-refresh',
    });
    client.on('error', () => undefined);
    await client.connect();
    try {
      const { rows } = await client.query<Owed>(
        `SELECT id::text, extract(epoch FROM from_time)::float8 AS f,
                extract(epoch FROM to_time)::float8 AS t
           FROM slotline.ohlcv_refresh WHERE slot = $1 ORDER BY id`,
        [this.opts.slot],
      );
      const last = rows[rows.length - 1];
      if (!last) return;
      const ceiling = Date.now() / 1000 - POLICY_REACH_SECONDS;
      const spans = rows.map((r) => ({ from: r.f, to: r.t }));
      const windows = refreshWindows(spans, ALIGN_SECONDS, ceiling);
      // The extension's schema need not be on the search_path (see sinks/schema.ts).
      const ext = await client.query<{ nspname: string }>(
        `SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
          WHERE e.extname = 'timescaledb'`,
      );
      const nsp = ext.rows[0]?.nspname ?? 'public';
      const started = Date.now();
      for (const w of windows)
        for (const view of OHLCV_VIEWS) await this.refresh(client, nsp, view, w);
      await client.query(`DELETE FROM slotline.ohlcv_refresh WHERE slot = $1 AND id <= $2`, [
        this.opts.slot,
        last.id,
      ]);
      this.opts.log.info(
        { windows, recorded: rows.length, ms: Date.now() - started },
        'OHLCV aggregates refreshed over rewritten history',
      );
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  private async refresh(client: pg.Client, ext: string, view: string, w: Span): Promise<void> {
    const at = (s: number | null) => (s === null ? 'NULL::timestamptz' : `to_timestamp(${s})`);
    const name = quoteLiteral(`${quoteIdent(this.opts.schema)}.${quoteIdent(view)}`);
    // A simple query with literals: CALL must be the only statement of its implicit transaction.
    await client.query(
      `CALL ${quoteIdent(ext)}.refresh_continuous_aggregate(${name}, ${at(w.from)}, ${at(w.to)})`,
    );
  }
}
