import type pg from 'pg';
import type { Metrics } from '../admin/metrics.js';
import type { TupleValues } from '../decode/pgoutput.js';
import type { Logger } from '../log.js';
import { sleep } from '../retry.js';
import type { ChangeRouter, RelationLike } from '../trades/router.js';
import { roomIn, type QueueRoom, type WatermarkReader } from './watermark.js';
import { TRADES_TABLE } from './checks.js';
import { tableRelation } from './relation.js';
import { quoteIdent } from '../sql.js';
import { InvalidRequest, Conflict, NotFound } from '../errors.js';

export interface BackfillRange {
  /** unix seconds, inclusive */
  fromTs: number | null;
  /** unix seconds, exclusive */
  toTs: number | null;
  fromId: string | null;
  toId: string | null;
  chunkSize: number;
}

export interface BackfillOptions {
  slot: string;
  sourceSchema: string;
  source: pg.Pool;
  sink: pg.Pool;
  router: ChangeRouter;
  /** The stream's watermark windows (shared with the dead-letter retry). */
  reader: WatermarkReader;
  /** The in-flight queue: a chunk starts only when it has room. */
  queue: QueueRoom;
  /** Most rows in one chunk, whatever the request asks (default: no cap); a quarter of SLOTLINE_INFLIGHT_MAX_ROWS keeps a chunk inside the bound. */
  maxChunkRows?: number;
  metrics: Metrics;
  log: Logger;
}

export interface BackfillInfo {
  id: number;
  state: 'running' | 'done' | 'cancelled' | 'failed';
  range: BackfillRange;
  lastId: string | null;
  rows: number;
  chunks: number;
  error: string | null;
}

const DEFAULT_CHUNK = 5000;
const MAX_CHUNK = 50_000;
const CANCEL_GRACE_MS = 5000;

function seconds(v: unknown, name: string): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  if (typeof v === 'string' && v.length > 0 && v.length < 64) {
    if (/^\d+$/.test(v)) return Number(v);
    const ms = Date.parse(v);
    if (!Number.isNaN(ms)) return Math.floor(ms / 1000);
  }
  throw new InvalidRequest(`${name} must be unix seconds or an ISO 8601 time`);
}

function text(v: unknown, name: string): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string' && v.length > 0 && v.length <= 1024) return v;
  throw new InvalidRequest(`${name} must be a non-empty string`);
}

/** Validates a backfill request: a time range and/or an id range. Throws InvalidRequest. */
export function parseBackfillRange(body: Record<string, unknown>): BackfillRange {
  const known = new Set(['from', 'to', 'fromId', 'toId', 'chunkSize']);
  for (const k of Object.keys(body))
    if (!known.has(k)) throw new InvalidRequest(`unknown field ${JSON.stringify(k)}`);
  const r: BackfillRange = {
    fromTs: seconds(body.from, 'from'),
    toTs: seconds(body.to, 'to'),
    fromId: text(body.fromId, 'fromId'),
    toId: text(body.toId, 'toId'),
    chunkSize: DEFAULT_CHUNK,
  };
  if (body.chunkSize !== undefined) {
    const c = body.chunkSize;
    if (typeof c !== 'number' || !Number.isInteger(c) || c < 1 || c > MAX_CHUNK) {
      throw new InvalidRequest(`chunkSize must be a whole number from 1 to ${MAX_CHUNK}`);
    }
    r.chunkSize = c;
  }
  if (r.fromTs === null && r.fromId === null)
    throw new InvalidRequest('give "from" (a time) or "fromId"');
  if (r.fromTs !== null && r.toTs !== null && r.toTs <= r.fromTs)
    throw new InvalidRequest('"to" must be after "from"');
  if (r.fromId !== null && r.toId !== null && r.toId < r.fromId)
    throw new InvalidRequest('"toId" must not be before "fromId"');
  return r;
}

/**
 * Re-reads source trades by range, in chunks, beside the live stream, each
 * chunk through a watermark window (see WatermarkReader): rows the stream
 * changes meanwhile are left to it, the rest is applied at the high
 * watermark like a streamed update. A chunk starts only when the in-flight
 * queue has room, and is at most a quarter of its row bound.
 */
export class Backfiller {
  private job: BackfillInfo | null = null;
  private abort: AbortController | null = null;
  private stopping = false;
  private running: Promise<void> | null = null;
  private relation: RelationLike | null = null;
  /** resume() has looked for a backfill left running: a 'running' row without a job is stale. */
  private resumeChecked = false;

  constructor(private readonly opts: BackfillOptions) {}

  info(): BackfillInfo | null {
    return this.job;
  }

  /** Starts a backfill; Conflict while one runs. */
  async start(range: BackfillRange): Promise<BackfillInfo> {
    if (this.job?.state === 'running')
      throw new Conflict(`backfill ${this.job.id} is running; DELETE /admin/backfill cancels it`);
    if (this.resumeChecked) {
      // Left 'running' by a cancel whose last save failed: nothing runs it any more.
      await this.opts.sink.query(
        `UPDATE slotline.backfills SET state = 'cancelled', updated_at = now() WHERE slot = $1 AND state = 'running'`,
        [this.opts.slot],
      );
    }
    const { rows } = await this.opts.sink
      .query<{ id: string }>(
        `INSERT INTO slotline.backfills (slot, from_ts, to_ts, from_id, to_id, chunk_size, state)
         VALUES ($1, $2, $3, $4, $5, $6, 'running') RETURNING id::text`,
        [this.opts.slot, range.fromTs, range.toTs, range.fromId, range.toId, range.chunkSize],
      )
      .catch((err: { code?: string }) => {
        if (err.code === '23505') throw new Conflict('a backfill is already running for this slot');
        throw err;
      });
    return this.launch({
      id: Number(rows[0]?.id),
      state: 'running',
      range,
      lastId: null,
      rows: 0,
      chunks: 0,
      error: null,
    });
  }

  /** Picks up a backfill that was running when the connector stopped. */
  async resume(): Promise<BackfillInfo | null> {
    const { rows } = await this.opts.sink.query<{
      id: string;
      from_ts: string | null;
      to_ts: string | null;
      from_id: string | null;
      to_id: string | null;
      chunk_size: number;
      last_id: string | null;
      rows: string;
    }>(
      `SELECT id::text, from_ts::text, to_ts::text, from_id, to_id, chunk_size, last_id, rows::text
         FROM slotline.backfills WHERE slot = $1 AND state = 'running'`,
      [this.opts.slot],
    );
    this.resumeChecked = true;
    const r = rows[0];
    if (!r || this.job?.state === 'running') return null;
    this.opts.log.info({ backfill: r.id, lastId: r.last_id }, 'resuming a backfill');
    return this.launch({
      id: Number(r.id),
      state: 'running',
      range: {
        fromTs: r.from_ts === null ? null : Number(r.from_ts),
        toTs: r.to_ts === null ? null : Number(r.to_ts),
        fromId: r.from_id,
        toId: r.to_id,
        chunkSize: r.chunk_size,
      },
      lastId: r.last_id,
      rows: Number(r.rows),
      chunks: 0,
      error: null,
    });
  }

  /** Cancels the running backfill; returns promptly whatever the stream does. */
  async cancel(): Promise<BackfillInfo> {
    const job = this.job;
    if (!job || job.state !== 'running') throw new NotFound('no backfill is running');
    this.abort?.abort();
    // Every wait listens to the signal; only a source query already sent may
    // take longer, and it can finish on its own.
    const ended = await Promise.race([
      this.running?.then(() => true),
      sleep(CANCEL_GRACE_MS).then(() => false),
    ]);
    if (!ended) job.state = 'cancelled';
    return job;
  }

  /** Stops the loop (connector shutdown); a running backfill stays 'running' and resumes next start. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.abort?.abort();
    await this.running?.catch(() => undefined);
  }

  private launch(job: BackfillInfo): BackfillInfo {
    this.job = job;
    const abort = new AbortController();
    this.abort = abort;
    this.opts.metrics.backfillRunning.set(1);
    this.running = this.loop(job, abort.signal)
      .catch(async (err: unknown) => {
        if (abort.signal.aborted) job.state = this.stopping ? 'running' : 'cancelled';
        else {
          job.state = 'failed';
          job.error = (err as Error).message;
          this.opts.log.error({ err, backfill: job.id }, 'backfill failed');
        }
        await this.save(job).catch((e: unknown) =>
          this.opts.log.warn({ err: e, backfill: job.id }, 'cannot record how a backfill ended'),
        );
      })
      .finally(() => {
        if (this.job === job) this.opts.metrics.backfillRunning.set(0);
      });
    return job;
  }

  private async loop(job: BackfillInfo, signal: AbortSignal): Promise<void> {
    const log = this.opts.log.child({ backfill: job.id });
    log.info({ range: job.range }, 'backfill started');
    const relation = await this.columns();
    const idCol = relation.columns.findIndex((c) => c.name === 'id');
    const size = Math.max(1, Math.min(job.range.chunkSize, this.opts.maxChunkRows ?? Infinity));
    for (;;) {
      // Wait for room rather than push a chunk past the in-flight bound.
      await roomIn(this.opts.queue, signal);
      const { result: rows } = await this.opts.reader.read(
        {
          select: () => this.chunk(job, relation, size),
          apply: (chunk, changed, lsn) => {
            let n = 0;
            for (const row of chunk) {
              const id = row[idCol];
              if (typeof id === 'string' && changed.trades.has(id)) continue;
              this.opts.router.remap(relation, row, lsn, { deadLetter: true });
              n++;
            }
            this.opts.metrics.backfillRows.inc(n);
          },
        },
        signal,
      );
      job.chunks += 1;
      job.rows += rows.length;
      const last = rows[rows.length - 1]?.[idCol];
      if (typeof last === 'string') job.lastId = last;
      if (rows.length < size) break;
      await this.save(job);
    }
    job.state = 'done';
    await this.save(job);
    log.info({ state: job.state, rows: job.rows, chunks: job.chunks }, 'backfill ended');
  }

  private async chunk(
    job: BackfillInfo,
    relation: RelationLike,
    size: number,
  ): Promise<TupleValues[]> {
    const r = job.range;
    const list = relation.columns.map((c) => quoteIdent(c.name)).join(', ');
    const { rows } = await this.opts.source.query<Record<string, string | null>>({
      text: `SELECT ${list} FROM ${quoteIdent(this.opts.sourceSchema)}.${quoteIdent(TRADES_TABLE)}
              WHERE ($1::text IS NULL OR id > $1)
                AND ($2::bigint IS NULL OR timestamp >= $2) AND ($3::bigint IS NULL OR timestamp < $3)
                AND ($4::text IS NULL OR id >= $4) AND ($5::text IS NULL OR id <= $5)
              ORDER BY id LIMIT $6`,
      values: [job.lastId, r.fromTs, r.toTs, r.fromId, r.toId, size],
      rowMode: 'array',
      // Every value as text: amounts must never become JS numbers.
      types: { getTypeParser: () => (v: string) => v },
    } as pg.QueryConfig);
    return rows as unknown as TupleValues[];
  }

  private async save(job: BackfillInfo): Promise<void> {
    await this.opts.sink.query(
      `UPDATE slotline.backfills SET last_id = $2, rows = $3, state = $4, error = $5, updated_at = now() WHERE id = $1`,
      [job.id, job.lastId, job.rows, job.state, job.error],
    );
  }

  private async columns(): Promise<RelationLike> {
    if (this.relation) return this.relation;
    this.relation = await tableRelation(this.opts.source, this.opts.sourceSchema, TRADES_TABLE);
    return this.relation;
  }
}
