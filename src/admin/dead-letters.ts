import type pg from 'pg';
import { type Lsn, parseLsn } from '../checkpoint/lsn.js';
import type { TupleValues } from '../decode/pgoutput.js';
import type { Logger } from '../log.js';
import type { InflightQueue } from '../sinks/inflight.js';
import { relationOf } from '../source/relation.js';
import type { ChangeRouter } from '../trades/router.js';
import type { Metrics } from './metrics.js';
import { InvalidRequest, Conflict, NotFound } from '../errors.js';

export const DEAD_LETTER_STATES = ['pending', 'retried', 'resolved', 'discarded'] as const;
export type DeadLetterState = (typeof DEAD_LETTER_STATES)[number];

/** Which dead letters an action applies to. Every field narrows; none at all means "all". */
export interface DeadLetterFilter {
  ids?: number[];
  reason?: string;
  table?: string;
  state?: DeadLetterState;
  /** first_seen at or after / before (ISO or unix seconds) */
  from?: string;
  to?: string;
  /** trades waiting for this pool (unknown_pool) */
  poolRef?: string;
}

export interface DeadLetterRow {
  id: number;
  sourceTable: string;
  operation: string;
  rowKey: string;
  lsn: string;
  commitTime: Date | null;
  raw: Record<string, string | null>;
  reasonCode: string;
  reason: string;
  state: DeadLetterState;
  attempts: number;
  firstSeen: Date;
  lastSeen: Date;
  note: string | null;
}

export interface RetryResult {
  selected: number;
  resolved: number;
  failed: number;
  /** ids that still cannot be mapped, with the reason now */
  failures: { id: number; reasonCode: string; reason: string }[];
}

const MAX_PAGE = 1000;
const MAX_RETRY = 10_000;
const MAX_IDS = 10_000;

function when(v: unknown, name: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0)
    return new Date(v * 1000).toISOString();
  if (typeof v === 'string' && v.length < 64) {
    if (/^\d+$/.test(v)) return new Date(Number(v) * 1000).toISOString();
    if (!Number.isNaN(Date.parse(v))) return new Date(Date.parse(v)).toISOString();
  }
  throw new InvalidRequest(`${name} must be unix seconds or an ISO 8601 time`);
}

function short(v: unknown, name: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string' && v.length > 0 && v.length <= 256) return v;
  throw new InvalidRequest(`${name} must be a non-empty string of at most 256 characters`);
}

/** Validates a filter from a query string or a JSON body. Throws InvalidRequest. */
export function parseFilter(
  input: Record<string, unknown>,
  allowed: string[] = [],
): DeadLetterFilter {
  const known = new Set(['ids', 'reason', 'table', 'state', 'from', 'to', ...allowed]);
  for (const k of Object.keys(input))
    if (!known.has(k)) throw new InvalidRequest(`unknown field ${JSON.stringify(k)}`);
  const f: DeadLetterFilter = {};
  if (input.ids !== undefined) {
    const raw = typeof input.ids === 'string' ? input.ids.split(',') : input.ids;
    if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_IDS) {
      throw new InvalidRequest(`ids must be a non-empty list of at most ${MAX_IDS} ids`);
    }
    f.ids = raw.map((x) => {
      const n = typeof x === 'string' && /^\d+$/.test(x) ? Number(x) : x;
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1)
        throw new InvalidRequest('ids must be positive integers');
      return n;
    });
  }
  const reason = short(input.reason, 'reason');
  if (reason !== undefined) f.reason = reason;
  const table = short(input.table, 'table');
  if (table !== undefined) f.table = table;
  if (input.state !== undefined) {
    if (!DEAD_LETTER_STATES.includes(input.state as DeadLetterState)) {
      throw new InvalidRequest(`state must be one of ${DEAD_LETTER_STATES.join(', ')}`);
    }
    f.state = input.state as DeadLetterState;
  }
  const from = when(input.from, 'from');
  if (from !== undefined) f.from = from;
  const to = when(input.to, 'to');
  if (to !== undefined) f.to = to;
  return f;
}

/** The WHERE clause of a filter, with its parameters after `slot` ($1). */
function where(
  f: DeadLetterFilter,
  states: readonly DeadLetterState[] | null,
): { sql: string; params: unknown[] } {
  const params: unknown[] = [];
  const parts = ['slot = $1'];
  const add = (clause: (n: string) => string, v: unknown) => {
    params.push(v);
    parts.push(clause(`$${params.length + 1}`));
  };
  if (f.ids) add((n) => `id = ANY(${n}::bigint[])`, f.ids);
  if (f.reason) add((n) => `reason_code = ${n}`, f.reason);
  if (f.table) add((n) => `(source_table = ${n} OR source_table LIKE '%.' || ${n})`, f.table);
  if (f.state) add((n) => `state = ${n}`, f.state);
  if (f.from) add((n) => `first_seen >= ${n}::timestamptz`, f.from);
  if (f.to) add((n) => `first_seen < ${n}::timestamptz`, f.to);
  if (f.poolRef) add((n) => `raw->>'pool_id' = ${n}`, f.poolRef);
  if (states) add((n) => `state = ANY(${n}::text[])`, states);
  return { sql: parts.join(' AND '), params };
}

interface Row {
  id: string;
  source_table: string;
  operation: string;
  row_key: string;
  lsn: string;
  commit_time: Date | null;
  raw: Record<string, string | null>;
  reason_code: string;
  reason: string;
  state: DeadLetterState;
  attempts: number;
  first_seen: Date;
  last_seen: Date;
  note: string | null;
}

const COLUMNS = `id::text, source_table, operation, row_key, lsn::text, commit_time, raw, reason_code, reason, state,
                 attempts, first_seen, last_seen, note`;

function fromRow(r: Row): DeadLetterRow {
  return {
    id: Number(r.id),
    sourceTable: r.source_table,
    operation: r.operation,
    rowKey: r.row_key,
    lsn: r.lsn,
    commitTime: r.commit_time,
    raw: r.raw,
    reasonCode: r.reason_code,
    reason: r.reason,
    state: r.state,
    attempts: r.attempts,
    firstSeen: r.first_seen,
    lastSeen: r.last_seen,
    note: r.note,
  };
}

export interface DeadLetterServiceOptions {
  slot: string;
  sink: pg.Pool;
  /** Resolved and discarded entries older than this are purged (SLOTLINE_DEAD_LETTER_RETENTION_DAYS). */
  retentionDays: number;
  metrics: Metrics;
  log: Logger;
}

/**
 * What an operator does with dead letters: list, show, retry (re-map with the
 * current code and pools, write to every sink in order, mark resolved),
 * discard with a note, purge old settled ones. Trades that waited for an
 * unknown pool are retried by themselves as soon as the pool streams in.
 * Pending entries are never purged.
 */
export class DeadLetterService {
  private router: ChangeRouter | null = null;
  private queue: InflightQueue | null = null;
  /** Pool references that pending unknown_pool dead letters wait for. */
  private readonly waiting = new Set<string>();
  private timers: NodeJS.Timeout[] = [];
  private gaugeSoon: NodeJS.Timeout | null = null;
  private retrying: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: DeadLetterServiceOptions) {}

  /** Connects to the running pipeline: from now on retries are possible. */
  async attach(router: ChangeRouter, queue: InflightQueue): Promise<void> {
    this.router = router;
    this.queue = queue;
    router.deadLetters = {
      // The entries gauge follows soon after new dead letters (they are written within moments).
      onDeadLetter: () => {
        if (this.gaugeSoon) return;
        this.gaugeSoon = setTimeout(() => {
          this.gaugeSoon = null;
          void this.refreshGauge().catch(() => undefined);
        }, 2000);
        this.gaugeSoon.unref();
      },
      onUnknownPool: (ref) => this.waiting.add(ref),
      onPoolAppeared: (ref) => {
        if (!this.waiting.delete(ref)) return;
        this.opts.log.info(
          { pool: ref },
          'a pool that dead-lettered trades waited for appeared: retrying them',
        );
        this.enqueueRetry({ reason: 'unknown_pool', poolRef: ref });
      },
    };
    const { rows } = await this.opts.sink.query<{ ref: string }>(
      `SELECT DISTINCT raw->>'pool_id' AS ref FROM slotline.dead_letters
        WHERE slot = $1 AND reason_code = 'unknown_pool' AND state IN ('pending', 'retried') AND raw->>'pool_id' IS NOT NULL`,
      [this.opts.slot],
    );
    for (const r of rows) this.waiting.add(r.ref);
    // Pools that appeared while we were down: retry what now maps.
    if (rows.length > 0) this.enqueueRetry({ reason: 'unknown_pool' });
  }

  detach(): void {
    if (this.router) this.router.deadLetters = null;
    this.router = null;
    this.queue = null;
  }

  /** Metrics by reason and state every 30 s; retention purge every hour. */
  startTimers(): void {
    const gauge = () => void this.refreshGauge().catch(() => undefined);
    const purge = () =>
      void this.purge(this.opts.retentionDays).catch((err: unknown) =>
        this.opts.log.warn({ err }, 'dead letter purge failed'),
      );
    gauge();
    this.timers.push(setInterval(gauge, 30_000), setInterval(purge, 3_600_000));
    for (const t of this.timers) t.unref();
  }

  stopTimers(): void {
    if (this.gaugeSoon) clearTimeout(this.gaugeSoon);
    this.gaugeSoon = null;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  async list(
    f: DeadLetterFilter,
    limit: number,
    afterId: number,
  ): Promise<{ items: DeadLetterRow[]; next: number | null }> {
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE)
      throw new InvalidRequest(`limit must be 1 to ${MAX_PAGE}`);
    const w = where(f, null);
    const params = [this.opts.slot, ...w.params, afterId, limit];
    const { rows } = await this.opts.sink.query<Row>(
      `SELECT ${COLUMNS} FROM slotline.dead_letters WHERE ${w.sql} AND id > $${params.length - 1}
        ORDER BY id LIMIT $${params.length}`,
      params,
    );
    const items = rows.map(fromRow);
    return { items, next: items.length === limit ? (items[items.length - 1]?.id ?? null) : null };
  }

  async show(id: number): Promise<DeadLetterRow> {
    const { rows } = await this.opts.sink.query<Row>(
      `SELECT ${COLUMNS} FROM slotline.dead_letters WHERE slot = $1 AND id = $2`,
      [this.opts.slot, id],
    );
    if (!rows[0]) throw new NotFound(`no dead letter ${id}`);
    return fromRow(rows[0]);
  }

  /** Retries the pending and retried entries the filter selects (one retry at a time). */
  retry(f: DeadLetterFilter): Promise<RetryResult> {
    const run = this.retrying.then(() => this.retryNow(f));
    this.retrying = run.catch(() => undefined);
    return run;
  }

  async discard(f: DeadLetterFilter, note: string): Promise<{ discarded: number }> {
    const w = where(f, ['pending', 'retried']);
    const params = [this.opts.slot, ...w.params, note];
    const r = await this.opts.sink.query(
      `UPDATE slotline.dead_letters SET state = 'discarded', note = $${params.length}, last_seen = now() WHERE ${w.sql}`,
      params,
    );
    void this.refreshGauge().catch(() => undefined);
    return { discarded: r.rowCount ?? 0 };
  }

  /** Deletes resolved and discarded entries last seen more than `days` ago; never pending ones. */
  async purge(days: number): Promise<{ purged: number }> {
    const r = await this.opts.sink.query(
      `DELETE FROM slotline.dead_letters
        WHERE slot = $1 AND state IN ('resolved', 'discarded') AND last_seen < now() - $2::double precision * interval '1 day'`,
      [this.opts.slot, days],
    );
    const purged = r.rowCount ?? 0;
    if (purged > 0) this.opts.log.info({ purged, days }, 'settled dead letters purged');
    void this.refreshGauge().catch(() => undefined);
    return { purged };
  }

  private enqueueRetry(f: DeadLetterFilter): void {
    void this.retry(f).then(
      (r) => {
        if (r.resolved > 0)
          this.opts.log.info(
            { resolved: r.resolved, failed: r.failed },
            'dead letters retried automatically',
          );
      },
      (err: unknown) => this.opts.log.warn({ err }, 'automatic dead letter retry failed'),
    );
  }

  private async retryNow(f: DeadLetterFilter): Promise<RetryResult> {
    const router = this.router;
    const queue = this.queue;
    if (!router || !queue)
      throw new Conflict('dead letters can be retried only while the connector streams');
    const w = where(f, ['pending', 'retried']);
    const params = [this.opts.slot, ...w.params, MAX_RETRY];
    const { rows } = await this.opts.sink.query<Row>(
      `SELECT ${COLUMNS} FROM slotline.dead_letters WHERE ${w.sql} ORDER BY lsn, id LIMIT $${params.length}`,
      params,
    );
    const resolved: number[] = [];
    const failures: RetryResult['failures'] = [];
    for (const r of rows) {
      const id = Number(r.id);
      if (r.operation === 'delete') {
        failures.push({
          id,
          reasonCode: r.reason_code,
          reason: 'a delete without a key cannot be retried; discard it',
        });
        continue;
      }
      const [schema = '', name = ''] = r.source_table.split('.');
      const columns = Object.keys(r.raw);
      const relation = relationOf(schema, name, columns);
      const values: TupleValues = columns.map((c) => r.raw[c] ?? null);
      const op = r.operation === 'insert' || r.operation === 'update' ? r.operation : 'snapshot';
      const lsn: Lsn = parseLsn(r.lsn);
      const rejection = router.remap(relation, values, lsn, op);
      if (rejection) failures.push({ id, reasonCode: rejection.code, reason: rejection.reason });
      else resolved.push(id);
    }
    // Resolved only once every sink holds the rows.
    if (resolved.length > 0) await queue.barrier();
    if (resolved.length > 0) {
      await this.opts.sink.query(
        `UPDATE slotline.dead_letters SET state = 'resolved', attempts = attempts + 1, last_seen = now(),
                note = 'resolved by retry' WHERE id = ANY($1::bigint[])`,
        [resolved],
      );
    }
    if (failures.length > 0) {
      await this.opts.sink.query(
        `UPDATE slotline.dead_letters d SET state = 'retried', attempts = attempts + 1, last_seen = now(),
                reason_code = f.code, reason = f.reason
           FROM json_to_recordset($1::json) AS f(id bigint, code text, reason text) WHERE d.id = f.id`,
        [JSON.stringify(failures.map((x) => ({ id: x.id, code: x.reasonCode, reason: x.reason })))],
      );
    }
    void this.refreshGauge().catch(() => undefined);
    return {
      selected: rows.length,
      resolved: resolved.length,
      failed: failures.length,
      failures: failures.slice(0, 100),
    };
  }

  private async refreshGauge(): Promise<void> {
    const { rows } = await this.opts.sink.query<{ reason_code: string; state: string; n: string }>(
      `SELECT reason_code, state, count(*)::text AS n FROM slotline.dead_letters WHERE slot = $1 GROUP BY 1, 2`,
      [this.opts.slot],
    );
    const g = this.opts.metrics.deadLettersByState;
    g.reset();
    for (const r of rows) g.set({ reason: r.reason_code, state: r.state }, Number(r.n));
  }
}
