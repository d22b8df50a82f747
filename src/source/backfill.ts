import type pg from 'pg';
import type { Metrics } from '../admin/metrics.js';
import { type Lsn, formatLsn } from '../checkpoint/lsn.js';
import type { TupleValues } from '../decode/pgoutput.js';
import type { Logger } from '../log.js';
import { sleep } from '../retry.js';
import {
  WATERMARK_PREFIX,
  type ChangeRouter,
  type RelationLike,
  type StreamWatcher,
} from '../trades/router.js';
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
  /** The acknowledged position (min over sinks), to know when a chunk is durable. */
  flushLsn(): Lsn;
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

interface Window {
  chunk: number;
  open: boolean;
  keys: Set<string>;
  rows: TupleValues[] | null;
  done: (lsn: Lsn) => void;
}

/**
 * Re-reads source trades by range, in chunks, beside the live stream, without
 * resurrecting rows the stream deletes (the watermark technique of DBLog and
 * Debezium's incremental snapshots): each chunk's SELECT sits between a low
 * and a high watermark written to the WAL; ids the stream changes between the
 * two are dropped from the chunk, and the rest is handed to the sinks at the
 * high watermark's position in the stream, so anything later still wins.
 */
export class Backfiller implements StreamWatcher {
  private job: BackfillInfo | null = null;
  private window: Window | null = null;
  private cancelled = false;
  private stopping = false;
  private running: Promise<void> | null = null;
  private relation: RelationLike | null = null;

  constructor(private readonly opts: BackfillOptions) {}

  info(): BackfillInfo | null {
    return this.job;
  }

  /** Starts a backfill; 409 while one runs. */
  async start(range: BackfillRange): Promise<BackfillInfo> {
    if (this.job?.state === 'running')
      throw new Conflict(`backfill ${this.job.id} is running; DELETE /admin/backfill cancels it`);
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

  async cancel(): Promise<BackfillInfo> {
    const job = this.job;
    if (!job || job.state !== 'running') throw new NotFound('no backfill is running');
    this.cancelled = true;
    await this.running;
    return job;
  }

  /** Stops the loop (connector shutdown); a running backfill stays 'running' and resumes next start. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.cancelled = true;
    this.window?.done(0n);
    await this.running?.catch(() => undefined);
    this.opts.router.watcher = null;
  }

  onWatermark(content: string, lsn: Lsn): void {
    const w = this.window;
    const job = this.job;
    if (!w || !job) return;
    let mark: { slot?: unknown; job?: unknown; chunk?: unknown; kind?: unknown };
    try {
      mark = JSON.parse(content) as typeof mark;
    } catch {
      return;
    }
    if (mark.slot !== this.opts.slot || mark.job !== job.id || mark.chunk !== w.chunk) return;
    if (mark.kind === 'low') {
      w.open = true;
      w.keys.clear();
    } else if (mark.kind === 'high' && w.open && w.rows) {
      const relation = this.relation as RelationLike;
      const idCol = relation.columns.findIndex((c) => c.name === 'id');
      let n = 0;
      for (const row of w.rows) {
        const id = row[idCol];
        if (typeof id === 'string' && w.keys.has(id)) continue;
        this.opts.router.snapshotRow(relation, row, lsn, 256);
        n++;
      }
      this.opts.metrics.backfillRows.inc(n);
      w.open = false;
      w.done(lsn);
    }
  }

  onTradeKey(id: string): void {
    if (this.window?.open) this.window.keys.add(id);
  }

  private launch(job: BackfillInfo): BackfillInfo {
    this.job = job;
    this.cancelled = false;
    this.opts.router.watcher = this;
    this.opts.metrics.backfillRunning.set(1);
    this.running = this.loop(job).then(
      () => undefined,
      async (err: unknown) => {
        job.state = 'failed';
        job.error = (err as Error).message;
        this.opts.log.error({ err, backfill: job.id }, 'backfill failed');
        await this.save(job).catch(() => undefined);
      },
    );
    this.running.finally(() => {
      this.opts.metrics.backfillRunning.set(0);
      if (this.opts.router.watcher === this) this.opts.router.watcher = null;
    });
    return job;
  }

  private async loop(job: BackfillInfo): Promise<void> {
    const log = this.opts.log.child({ backfill: job.id });
    log.info({ range: job.range }, 'backfill started');
    const relation = await this.columns();
    const list = relation.columns.map((c) => quoteIdent(c.name)).join(', ');
    const r = job.range;
    while (!this.cancelled) {
      const chunk = job.chunks + 1;
      const done = new Promise<Lsn>((resolve) => {
        this.window = { chunk, open: false, keys: new Set(), rows: null, done: resolve };
      });
      await this.mark(job, chunk, 'low');
      const params: unknown[] = [job.lastId, r.fromTs, r.toTs, r.fromId, r.toId, r.chunkSize];
      const { rows } = await this.opts.source.query<Record<string, string | null>>({
        text: `SELECT ${list} FROM ${quoteIdent(this.opts.sourceSchema)}.${quoteIdent(TRADES_TABLE)}
                WHERE ($1::text IS NULL OR id > $1)
                  AND ($2::bigint IS NULL OR timestamp >= $2) AND ($3::bigint IS NULL OR timestamp < $3)
                  AND ($4::text IS NULL OR id >= $4) AND ($5::text IS NULL OR id <= $5)
                ORDER BY id LIMIT $6`,
        values: params,
        rowMode: 'array',
        // Every value as text: amounts must never become JS numbers.
        types: { getTypeParser: () => (v: string) => v },
      } as pg.QueryConfig);
      const chunkRows = rows as unknown as TupleValues[];
      (this.window as unknown as Window).rows = chunkRows;
      await this.mark(job, chunk, 'high');
      const lsn = await done;
      if (this.cancelled && lsn === 0n) break;
      // The chunk is in the stream at `lsn`; record progress once every sink has it.
      while (this.opts.flushLsn() <= lsn && !this.cancelled) await sleep(20);
      job.chunks = chunk;
      job.rows += chunkRows.length;
      const idCol = relation.columns.findIndex((c) => c.name === 'id');
      const last = chunkRows[chunkRows.length - 1]?.[idCol];
      if (typeof last === 'string') job.lastId = last;
      if (chunkRows.length < r.chunkSize) {
        job.state = 'done';
        break;
      }
      await this.save(job);
    }
    this.window = null;
    // Cancelled by an operator; stopped with the connector, it stays 'running' and resumes.
    if (job.state === 'running' && this.cancelled && !this.stopping) job.state = 'cancelled';
    await this.save(job);
    log.info(
      {
        state: job.state,
        rows: job.rows,
        chunks: job.chunks,
        lsn: formatLsn(this.opts.flushLsn()),
      },
      'backfill ended',
    );
  }

  private async mark(job: BackfillInfo, chunk: number, kind: 'low' | 'high'): Promise<void> {
    await this.opts.source.query('SELECT pg_logical_emit_message(true, $1, $2)', [
      WATERMARK_PREFIX,
      JSON.stringify({ slot: this.opts.slot, job: job.id, chunk, kind }),
    ]);
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
