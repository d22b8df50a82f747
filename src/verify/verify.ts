import pg from 'pg';
import { type Lsn, formatLsn, parseLsn } from '../checkpoint/lsn.js';
import type { Logger } from '../log.js';
import { sleep } from '../retry.js';
import { hasOhlcvAggregates, recordRefresh, StaleSpan } from '../sinks/ohlcv-refresh.js';
import { BEGIN_WRITE, TIMESCALE_SINK } from '../sinks/timescale.js';
import { inCompressedChunk } from '../sinks/timescale-sql.js';
import { TRADES_TABLE } from '../source/checks.js';
import {
  bucketSpans,
  compareBuckets,
  type BucketMismatch,
  type BucketSum,
  type TimeSpan,
  type VerifyReport,
  type VerifyRequest,
} from './buckets.js';
import { quoteIdent } from '../sql.js';

/**
 * `slotline verify`: source `order_book_trades` against sink `analytics_trades`,
 * per time bucket (trade time: `timestamp` at the source, `time` in the sink).
 *
 * Each side is summarised in SQL, on its own server, as a row count and the
 * sum of a 60-bit hash of every row: the first 15 hex digits of
 * md5(json_build_array(id, price::text, quantity::text, side::text)). A sum
 * does not depend on row order, and both sides hash the same text: numeric
 * prints an integer the same way whatever its typmod (numeric(78,0) at the
 * source, numeric in the sink), and json_build_array quotes the strings, so no
 * separator can be forged by an id. Both databases must use the same encoding
 * (UTF8) for md5 to see the same bytes.
 *
 * Dead letters: a source trade that has a pending, retried or discarded dead
 * letter is left out of both sides (and out of the repair). The connector
 * could not map it, so the sink holds either nothing or the last good version
 * of it; the report counts these ids, the dead letters say why. A discarded
 * dead letter stays out until retention purges it; then the row is compared
 * again (fix or delete it at the source). Source rows with an empty id are
 * never compared (they are dead letters under the key '(missing)').
 *
 * The stream is moving while we read. Each comparison reads the source in one
 * snapshot together with pg_current_wal_insert_lsn() (every commit the
 * snapshot sees ends at or before it), waits until the sink's checkpoint has
 * passed that position (so the sink holds at least everything the snapshot
 * saw), then reads the sink. Rows committed in between may still differ, so a
 * mismatched bucket is compared again before it counts.
 *
 * Repair, for the buckets that differ:
 * 1. Sink rows whose (id, time) no longer exists at the source are deleted
 *    (a backfill only writes, it cannot remove them). A row is deleted only
 *    if it is absent from the source snapshot, absent again from a second,
 *    later read of the source (a commit that was not yet visible to the
 *    first snapshot is visible by then), and its source_lsn is at or below
 *    the first snapshot's WAL position: a row the stream re-inserted since
 *    carries a newer LSN and is left alone. Anything the source does after
 *    that second read reaches the sink through the stream as usual. These
 *    deletes go to TimescaleDB only; Kafka consumers get no event for them.
 *    Each row is named by (id, time) as constants, so TimescaleDB decompresses
 *    only the batches that hold them (see sinks/timescale-trades.ts), and the
 *    OHLCV refresh they owe is recorded with them for the connector to run.
 * 2. The buckets that still differ are backfilled through the running
 *    connector (the watermark backfill, so nothing the stream deletes comes
 *    back), then compared again.
 */

export interface VerifyOptions {
  sourceUrl: string;
  sinkUrl: string;
  /** SLOTLINE_SOURCE_SCHEMA */
  sourceSchema: string;
  /** SLOTLINE_SINK_SCHEMA */
  sinkSchema: string;
  slot: string;
  request: VerifyRequest;
  /**
   * Re-reads source trades with time in [from, to) into the sinks through the
   * running connector and resolves, with the number of rows read, once they
   * are durable. Needed for a repair.
   */
  backfill?: (span: TimeSpan) => Promise<number>;
  /** How long a comparison waits for the sink's checkpoint to reach the source's position (default 10 s). */
  settleMs?: number;
  /** How many more times a mismatched bucket is compared before it counts (default 2). */
  rechecks?: number;
  log: Logger;
  signal?: AbortSignal;
}

const DEFAULT_SETTLE_MS = 10_000;
const DEFAULT_RECHECKS = 2;
const MAX_REPORTED = 100;
const DEAD_STATES = ['pending', 'retried', 'discarded'];

/** The per-row hash, identical SQL on both sides. */
const rowHash = (id: string, price: string, quantity: string, side: string) =>
  `('x' || left(md5(json_build_array(${id}, ${price}::text, ${quantity}::text, ${side}::text)::text), 15))::bit(60)::bigint`;

/** A span whose ends may be open (the first pass over the whole range). */
type OpenSpan = { from: number | null; to: number | null };

interface Comparison {
  mismatches: BucketMismatch[];
  buckets: number;
  sourceRows: number;
  sinkRows: number;
  /** the sink's checkpoint reached the source's position before the sink was read */
  settled: boolean;
}

interface SumRow {
  bucket: string;
  rows: string;
  hash: string;
}

function connect(url: string, log: Logger): pg.Client {
  const c = new pg.Client({ connectionString: url, application_name: 'slotline-verify' });
  c.on('error', (err) => log.debug({ err }, 'verify connection failed'));
  return c;
}

export async function runVerify(o: VerifyOptions): Promise<VerifyReport> {
  const started = new Date();
  const req = o.request;
  if (req.repair && !o.backfill) throw new Error('a repair needs the running connector');
  const source = connect(o.sourceUrl, o.log);
  const sink = connect(o.sinkUrl, o.log);
  // A shutdown must not wait for a long scan: closing the connections ends the queries.
  const abort = () => {
    void source.end().catch(() => undefined);
    void sink.end().catch(() => undefined);
  };
  o.signal?.addEventListener('abort', abort, { once: true });
  try {
    await source.connect();
    await sink.connect();
    const v = new Verifier(o, source, sink, await deadLettered(sink, o));
    const first = await v.compare([{ from: req.from, to: req.to }]);
    let last = first;
    for (let i = 0; i < (o.rechecks ?? DEFAULT_RECHECKS) && last.mismatches.length > 0; i++) {
      last = await v.compare(bucketSpans(buckets(last), req.bucketSeconds));
    }
    const found = last.mismatches.length;
    let deleted = 0;
    let recopied = 0;
    let error: string | null = null;
    if (req.repair && found > 0) {
      try {
        deleted = await v.deleteGone(bucketSpans(buckets(last), req.bucketSeconds));
        if (deleted > 0) last = await v.compare(bucketSpans(buckets(last), req.bucketSeconds));
        for (const span of bucketSpans(buckets(last), req.bucketSeconds)) {
          v.check();
          o.log.info({ from: span.from, to: span.to }, 'verify: backfilling buckets that differ');
          recopied += await (o.backfill as NonNullable<VerifyOptions['backfill']>)(span);
        }
        for (let i = 0; i <= (o.rechecks ?? DEFAULT_RECHECKS) && last.mismatches.length > 0; i++) {
          last = await v.compare(bucketSpans(buckets(last), req.bucketSeconds));
        }
      } catch (err) {
        error = (err as Error).message;
      }
    }
    const remaining = last.mismatches.length;
    return {
      range: { from: req.from, to: req.to, bucketSeconds: req.bucketSeconds },
      startedAt: started.toISOString(),
      durationMs: Date.now() - started.getTime(),
      ok: remaining === 0,
      buckets: {
        checked: first.buckets,
        mismatched: found,
        repaired: req.repair ? Math.max(0, found - remaining) : 0,
        remaining,
      },
      rows: {
        source: first.sourceRows,
        sink: first.sinkRows,
        deadLettered: v.excluded.size,
        recopied,
        deleted,
      },
      sinkBehind: !last.settled,
      mismatches: last.mismatches.slice(0, MAX_REPORTED),
      error,
    };
  } finally {
    o.signal?.removeEventListener('abort', abort);
    await source.end().catch(() => undefined);
    await sink.end().catch(() => undefined);
  }
}

const buckets = (c: Comparison) => c.mismatches.map((m) => m.bucket);

async function deadLettered(sink: pg.Client, o: VerifyOptions): Promise<Set<string>> {
  const { rows } = await sink.query<{ row_key: string }>(
    `SELECT DISTINCT row_key FROM slotline.dead_letters
      WHERE slot = $1 AND source_table = $2 AND state = ANY($3::text[])`,
    [o.slot, `${o.sourceSchema}.${TRADES_TABLE}`, DEAD_STATES],
  );
  return new Set(rows.map((r) => r.row_key));
}

class Verifier {
  private readonly src: string;
  private readonly dst: string;
  private readonly skip: string[];

  constructor(
    private readonly o: VerifyOptions,
    private readonly source: pg.Client,
    private readonly sink: pg.Client,
    readonly excluded: Set<string>,
  ) {
    this.src = `${quoteIdent(o.sourceSchema)}.${quoteIdent(TRADES_TABLE)}`;
    this.dst = `${quoteIdent(o.sinkSchema)}.analytics_trades`;
    this.skip = [...excluded];
  }

  check(): void {
    if (this.o.signal?.aborted) throw new Error('verify cancelled: the connector is stopping');
  }

  /** Both sides over `spans`, the sink read once it holds what the source snapshot saw. */
  async compare(spans: OpenSpan[]): Promise<Comparison> {
    this.check();
    const size = this.o.request.bucketSeconds;
    const { lsn, result: src } = await this.sourceSnapshot(async () => {
      const out: BucketSum[] = [];
      for (const s of spans) {
        const { rows } = await this.source.query<SumRow>(
          `SELECT (floor(t."timestamp"::numeric / $1::numeric) * $1::numeric)::bigint::text AS bucket,
                  count(*)::text AS rows,
                  coalesce(sum(${rowHash('t.id', 't.price', 't.quantity', 't.side')}), 0)::text AS hash
             FROM ${this.src} t
            WHERE t."timestamp" IS NOT NULL
              AND t.id <> '' -- never in the sink: dead-lettered as missing_key, under the key '(missing)'
              AND ($2::bigint IS NULL OR t."timestamp" >= $2::bigint)
              AND ($3::bigint IS NULL OR t."timestamp" < $3::bigint)
              AND NOT EXISTS (SELECT 1 FROM unnest($4::text[]) AS x(id) WHERE x.id = t.id)
            GROUP BY 1`,
          [size, s.from, s.to, this.skip],
        );
        out.push(...rows.map(sum));
      }
      return out;
    });
    const settled = await this.sinkReached(lsn);
    const dst: BucketSum[] = [];
    for (const s of spans) {
      const { rows } = await this.sink.query<SumRow>(
        `SELECT (floor(extract(epoch FROM t.time)::numeric / $1::numeric) * $1::numeric)::bigint::text AS bucket,
                count(*)::text AS rows,
                coalesce(sum(${rowHash('t.trade_id', 't.price', 't.quantity', 't.side')}), 0)::text AS hash
           FROM ${this.dst} t
          WHERE ($2::bigint IS NULL OR t.time >= to_timestamp($2::bigint))
            AND ($3::bigint IS NULL OR t.time < to_timestamp($3::bigint))
            AND NOT EXISTS (SELECT 1 FROM unnest($4::text[]) AS x(id) WHERE x.id = t.trade_id)
          GROUP BY 1`,
        [size, s.from, s.to, this.skip],
      );
      dst.push(...rows.map(sum));
    }
    const total = (xs: BucketSum[]) => xs.reduce((n, b) => n + b.rows, 0);
    return {
      mismatches: compareBuckets(src, dst),
      buckets: new Set([...src, ...dst].map((b) => b.bucket)).size,
      sourceRows: total(src),
      sinkRows: total(dst),
      settled,
    };
  }

  /**
   * Deletes sink rows in `spans` whose (id, time) the source no longer has
   * (see the guards at the top of this file). Returns how many.
   */
  async deleteGone(spans: TimeSpan[]): Promise<number> {
    let deleted = 0;
    for (const s of spans) {
      this.check();
      const { lsn, result: present } = await this.sourceSnapshot(async () => {
        const { rows } = await this.source.query<{ id: string; ts: string }>(
          `SELECT id, "timestamp"::bigint::text AS ts FROM ${this.src}
            WHERE "timestamp" >= $1::bigint AND "timestamp" < $2::bigint`,
          [s.from, s.to],
        );
        return new Set(rows.map((r) => key(r.id, r.ts)));
      });
      const { rows: held } = await this.sink.query<Held>(
        `SELECT trade_id AS id, extract(epoch FROM time)::bigint::text AS ts, time::text AS t,
                ${inCompressedChunk('x', this.o.sinkSchema, await this.timescale())} AS z
           FROM ${this.dst} x
          WHERE time >= to_timestamp($1::bigint) AND time < to_timestamp($2::bigint)
            AND source_lsn <= $3::pg_lsn`,
        [s.from, s.to, formatLsn(lsn)],
      );
      const candidates = held.filter(
        (r) => !present.has(key(r.id, r.ts)) && !this.excluded.has(r.id),
      );
      if (candidates.length === 0) continue;
      // A second look in a new snapshot: a commit that was not visible to the first is now.
      const { rows: again } = await this.source.query<{ id: string; ts: string }>(
        `SELECT id, "timestamp"::bigint::text AS ts FROM ${this.src} WHERE id = ANY($1::text[])`,
        [candidates.map((c) => c.id)],
      );
      const still = new Set(again.map((r) => key(r.id, r.ts)));
      const gone = candidates.filter((c) => !still.has(key(c.id, c.ts)));
      if (gone.length === 0) continue;
      const n = await this.remove(gone, lsn);
      deleted += n;
      this.o.log.info(
        { from: s.from, to: s.to, deleted: n },
        'verify: removed sink rows that no longer exist at the source',
      );
      this.o.log.debug({ ids: gone.map((g) => g.id) }, 'verify: removed trade ids');
    }
    return deleted;
  }

  /**
   * Deletes `gone` in one transaction (set-based in rowstore chunks, the
   * planner kept off the others by their times; one constant statement per row
   * in compressed ones), with the OHLCV refresh it owes. Returns how many.
   */
  private async remove(gone: Held[], lsn: Lsn): Promise<number> {
    const at = formatLsn(lsn);
    const rowstore = gone.filter((g) => !g.z);
    const stale = StaleSpan.now();
    await this.sink.query(BEGIN_WRITE);
    try {
      let n = 0;
      if (rowstore.length > 0) {
        const r = await this.sink.query(
          `DELETE FROM ${this.dst} t
            USING unnest($1::text[], $2::timestamptz[]) AS g(id, time)
            WHERE t.trade_id = g.id AND t.time = g.time AND t.time = ANY ($2::timestamptz[])
              AND t.source_lsn <= $3::pg_lsn`,
          [rowstore.map((g) => g.id), rowstore.map((g) => g.t), at],
        );
        n += r.rowCount ?? 0;
      }
      for (const g of gone) {
        if (!g.z) continue;
        const r = await this.sink.query(
          `DELETE FROM ${this.dst} t
            WHERE t.trade_id = $1 AND t.time = $2::timestamptz AND t.source_lsn <= $3::pg_lsn`,
          [g.id, g.t, at],
        );
        n += r.rowCount ?? 0;
      }
      for (const g of gone) stale.add(Number(g.ts));
      const span = stale.span();
      if (n > 0 && span && (await this.aggregates()))
        await recordRefresh(this.sink, this.o.slot, span);
      await this.sink.query('COMMIT');
      return n;
    } catch (err) {
      await this.sink.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }

  private features: Promise<{ timescale: boolean; aggregates: boolean }> | null = null;

  private async detect(): Promise<{ timescale: boolean; aggregates: boolean }> {
    this.features ??= (async () => {
      const ext = await this.sink.query(`SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'`);
      return {
        timescale: (ext.rowCount ?? 0) > 0,
        aggregates: await hasOhlcvAggregates(this.sink, this.o.sinkSchema),
      };
    })();
    return this.features;
  }

  private async timescale(): Promise<boolean> {
    return (await this.detect()).timescale;
  }

  private async aggregates(): Promise<boolean> {
    return (await this.detect()).aggregates;
  }

  /**
   * Runs `fn` in one REPEATABLE READ snapshot of the source, with the WAL
   * insert position read at its start: every commit the snapshot sees ends at
   * or before that position.
   */
  private async sourceSnapshot<T>(fn: () => Promise<T>): Promise<{ lsn: Lsn; result: T }> {
    await this.source.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      const { rows } = await this.source.query<{ lsn: string }>(
        'SELECT pg_current_wal_insert_lsn()::text AS lsn',
      );
      const result = await fn();
      await this.source.query('COMMIT');
      return { lsn: parseLsn((rows[0] as { lsn: string }).lsn), result };
    } catch (err) {
      await this.source.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }

  /** Waits (up to settleMs) until the sink's checkpoint is at or past `lsn`. */
  private async sinkReached(lsn: Lsn): Promise<boolean> {
    const deadline = Date.now() + (this.o.settleMs ?? DEFAULT_SETTLE_MS);
    for (;;) {
      const { rows } = await this.sink.query<{ ok: boolean }>(
        `SELECT lsn >= $3::pg_lsn AS ok FROM slotline.checkpoints WHERE slot = $1 AND sink = $2`,
        [this.o.slot, TIMESCALE_SINK, formatLsn(lsn)],
      );
      if (rows[0]?.ok === true) return true;
      if (Date.now() >= deadline || this.o.signal?.aborted) return false;
      await sleep(100, this.o.signal);
    }
  }
}

const key = (id: string, ts: string) => `${ts}\u0000${id}`;

/** A sink row in a span that verify compares. */
interface Held {
  id: string;
  /** unix seconds */
  ts: string;
  /** its time as the server prints it (read back exactly by ::timestamptz) */
  t: string;
  /** in a compressed chunk */
  z: boolean;
}

function sum(r: SumRow): BucketSum {
  return { bucket: Number(r.bucket), rows: Number(r.rows), hash: r.hash };
}
