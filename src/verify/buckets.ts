import { InvalidRequest } from '../errors.js';

/**
 * The pure half of `slotline verify`: source and sink are summarised per time
 * bucket (row count and an order-independent hash, computed in SQL, see
 * verify.ts), and the summaries are compared here. Also the request parsing
 * shared by the CLI and POST /api/sync/run, and the old service's answer shape.
 */

/** One bucket of one side: trades with `bucket <= time < bucket + size`. */
export interface BucketSum {
  /** unix seconds, the bucket's start (a multiple of the bucket size) */
  bucket: number;
  rows: number;
  /** decimal sum of per-row hashes; equal sets of rows give equal sums whatever their order */
  hash: string;
}

export interface BucketMismatch {
  bucket: number;
  sourceRows: number;
  sinkRows: number;
  sourceHash: string;
  sinkHash: string;
}

/** Time range of a verify, unix seconds, `from` inclusive, `to` exclusive; null: unbounded. */
export interface VerifyRange {
  from: number | null;
  to: number | null;
  bucketSeconds: number;
}

export interface VerifyRequest extends VerifyRange {
  repair: boolean;
}

/** A contiguous run of buckets, for a backfill or a recheck. */
export interface TimeSpan {
  from: number;
  to: number;
}

export const DEFAULT_BUCKET_SECONDS = 3600;
export const MIN_BUCKET_SECONDS = 60;
/** A year and a day: more than this is one bucket in practice. */
export const MAX_BUCKET_SECONDS = 366 * 86_400;

/** Buckets whose count or hash differ, including buckets only one side has; sorted by time. */
export function compareBuckets(source: BucketSum[], sink: BucketSum[]): BucketMismatch[] {
  const bySink = new Map(sink.map((b) => [b.bucket, b]));
  const out: BucketMismatch[] = [];
  for (const s of source) {
    const k = bySink.get(s.bucket);
    bySink.delete(s.bucket);
    if (k && k.rows === s.rows && k.hash === s.hash) continue;
    out.push({
      bucket: s.bucket,
      sourceRows: s.rows,
      sinkRows: k?.rows ?? 0,
      sourceHash: s.hash,
      sinkHash: k?.hash ?? '0',
    });
  }
  for (const k of bySink.values()) {
    out.push({
      bucket: k.bucket,
      sourceRows: 0,
      sinkRows: k.rows,
      sourceHash: '0',
      sinkHash: k.hash,
    });
  }
  return out.sort((a, b) => a.bucket - b.bucket);
}

/** Adjacent buckets merged into spans, so that one backfill covers each run of them. */
export function bucketSpans(buckets: readonly number[], bucketSeconds: number): TimeSpan[] {
  const sorted = [...new Set(buckets)].sort((a, b) => a - b);
  const spans: TimeSpan[] = [];
  for (const b of sorted) {
    const last = spans[spans.length - 1];
    if (last && last.to === b) last.to = b + bucketSeconds;
    else spans.push({ from: b, to: b + bucketSeconds });
  }
  return spans;
}

/** Widens a range to whole buckets, so that both sides and a repair see the same buckets. */
export function alignRange(r: VerifyRange): VerifyRange {
  const size = r.bucketSeconds;
  return {
    from: r.from === null ? null : Math.floor(r.from / size) * size,
    to: r.to === null ? null : Math.ceil(r.to / size) * size,
    bucketSeconds: size,
  };
}

/** Unix seconds or an ISO 8601 time (as text or a number); 400 otherwise. */
export function parseTime(v: unknown, name: string): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  if (typeof v === 'string' && v.length > 0 && v.length < 64) {
    if (/^\d{1,15}$/.test(v)) return Number(v);
    const ms = Date.parse(v);
    if (!Number.isNaN(ms)) return Math.floor(ms / 1000);
  }
  throw new InvalidRequest(`${name} must be unix seconds or an ISO 8601 time`);
}

export interface RequestDefaults {
  /** SLOTLINE_VERIFY_BUCKET_SECONDS */
  bucketSeconds: number;
  /** Used when `from` is absent: now - lookback (0: all history). */
  lookbackSeconds: number;
  /** unix seconds */
  now: number;
  repair: boolean;
}

/**
 * A verify request from a JSON body (POST /api/sync/run) or the CLI's flags:
 * `from`, `to` (unix s or ISO), `bucketSeconds`, `repair`. Without `from` it
 * covers the lookback window (all history when it is 0); without `to` it
 * stops at the start of the current bucket, which the live stream is still
 * filling (comparing it under load would only find rows in flight). Throws InvalidRequest.
 */
export function parseVerifyRequest(
  body: Record<string, unknown>,
  d: RequestDefaults,
): VerifyRequest {
  const known = new Set(['from', 'to', 'bucketSeconds', 'repair']);
  for (const k of Object.keys(body))
    if (!known.has(k)) throw new InvalidRequest(`unknown field ${JSON.stringify(k)}`);
  let size = d.bucketSeconds;
  if (body.bucketSeconds !== undefined) {
    const b = body.bucketSeconds;
    if (
      typeof b !== 'number' ||
      !Number.isInteger(b) ||
      b < MIN_BUCKET_SECONDS ||
      b > MAX_BUCKET_SECONDS
    ) {
      throw new InvalidRequest(
        `bucketSeconds must be a whole number from ${MIN_BUCKET_SECONDS} to ${MAX_BUCKET_SECONDS}`,
      );
    }
    size = b;
  }
  if (body.repair !== undefined && typeof body.repair !== 'boolean')
    throw new InvalidRequest('repair must be a boolean');
  let from = parseTime(body.from, 'from');
  let to = parseTime(body.to, 'to');
  if (from === null && d.lookbackSeconds > 0) from = Math.max(0, d.now - d.lookbackSeconds);
  if (to === null) to = Math.floor(d.now / size) * size;
  if (from !== null && to !== null && to <= from)
    throw new InvalidRequest('"to" must be after "from"');
  return {
    ...alignRange({ from, to, bucketSeconds: size }),
    repair: typeof body.repair === 'boolean' ? body.repair : d.repair,
  };
}

export interface VerifyReport {
  range: VerifyRange;
  startedAt: string;
  durationMs: number;
  /** True when every bucket matches at the end (after repair, if asked). */
  ok: boolean;
  buckets: {
    /** buckets compared in the first pass (present on either side) */
    checked: number;
    /** buckets that differed after the rechecks, before any repair */
    mismatched: number;
    /** of those, buckets that match after the repair */
    repaired: number;
    /** buckets that still differ */
    remaining: number;
  };
  rows: {
    source: number;
    sink: number;
    /** source trade ids left out of both sides: they have a pending, retried or discarded dead letter */
    deadLettered: number;
    /** rows the repair's backfills re-read from the source */
    recopied: number;
    /** sink rows the repair removed: gone at the source */
    deleted: number;
  };
  /**
   * The sink's checkpoint had not reached the source's WAL position within
   * the settle time at some comparison: recent buckets may differ only
   * because the connector is behind (or not running).
   */
  sinkBehind: boolean;
  /** The buckets that still differ (at most 100). */
  mismatches: BucketMismatch[];
  /** Why a repair could not complete, if it could not. */
  error: string | null;
}

/** The answer of the old analytics service's POST /api/sync/run, filled from a verify. */
export interface SyncRunAnswer {
  success: boolean;
  message: string;
  /** trades re-copied from the source plus sink rows removed */
  processed: number;
  /** buckets that still differ after the pass */
  errors: number;
  /** source trades compared */
  total: number;
  /** milliseconds */
  duration: number;
  verify: VerifyReport;
}

export function syncRunAnswer(r: VerifyReport): SyncRunAnswer {
  const b = r.buckets;
  let message: string;
  if (r.error !== null) message = `repair incomplete: ${r.error}`;
  else if (b.mismatched === 0) message = `in sync: ${b.checked} buckets match`;
  else if (b.remaining === 0)
    message = `repaired ${b.repaired} of ${b.checked} buckets (${r.rows.recopied} trades re-copied, ${r.rows.deleted} removed)`;
  else
    message = `${b.remaining} of ${b.checked} buckets still differ${r.sinkBehind ? ' (the sink is behind the source: is the connector streaming?)' : ''}`;
  return {
    success: r.ok && r.error === null,
    message,
    processed: r.rows.recopied + r.rows.deleted,
    errors: b.remaining,
    total: r.rows.source,
    duration: r.durationMs,
    verify: r,
  };
}

/** A verify report as `slotline verify` prints it: times as ISO 8601 UTC, not unix seconds. */
export type PrintedVerifyReport = Omit<VerifyReport, 'range' | 'mismatches'> & {
  range: { from: string | null; to: string | null; bucketSeconds: number };
  mismatches: (Omit<BucketMismatch, 'bucket'> & { bucket: string })[];
};

/** Unix seconds as `2023-11-14T22:00:00Z`. */
export function isoSeconds(unix: number): string {
  return new Date(unix * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

export function printedReport(r: VerifyReport): PrintedVerifyReport {
  return {
    ...r,
    range: {
      from: r.range.from === null ? null : isoSeconds(r.range.from),
      to: r.range.to === null ? null : isoSeconds(r.range.to),
      bucketSeconds: r.range.bucketSeconds,
    },
    mismatches: r.mismatches.map((m) => ({ ...m, bucket: isoSeconds(m.bucket) })),
  };
}
