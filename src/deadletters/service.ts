import type pg from 'pg';
import type { DeadLetterFilter, DeadLetterRow, DeadLetterState } from './types.js';
import type { Metrics } from '../admin/metrics.js';
import { InvalidRequest, Conflict, NotFound } from '../errors.js';
import type { Logger } from '../log.js';
import type { InflightQueue } from '../sinks/inflight.js';
import type { WatermarkReader } from '../source/watermark.js';
import type { ChangeRouter } from '../trades/router.js';
import { keyedTable, rereadKeys, type KeyedTable, type Outcome } from './reread.js';

export interface RetryResult {
  selected: number;
  /** settled: written as the source has the row now, gone at the source, or superseded */
  resolved: number;
  /** of the resolved: the row is gone at the source, nothing written */
  gone: number;
  /** of the resolved: the stream changed the row while it was re-read */
  superseded: number;
  failed: number;
  /** ids that still cannot be mapped, with the reason now */
  failures: { id: number; reasonCode: string; reason: string }[];
}

const MAX_PAGE = 1000;
const MAX_RETRY = 10_000;
/** Letters re-read through one watermark window. */
const PAGE = 1000;

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
  // Exact: "schema.table", or "table" in any schema. Never a pattern (a `%` would match everything).
  if (f.table)
    add((n) => `(source_table = ${n} OR split_part(source_table, '.', 2) = ${n})`, f.table);
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
  /** The source: a retry re-reads the rows' current state there. */
  source: pg.Pool;
  /** SLOTLINE_SOURCE_SCHEMA */
  sourceSchema: string;
  /** Letters re-read through one watermark window (default 1,000); a quarter of SLOTLINE_INFLIGHT_MAX_ROWS keeps a window inside the bound. */
  maxKeysPerRead?: number;
  /** How long an operator's retry waits for the stream to reach its watermarks (default 25 s, under the CLI's 30 s). */
  operatorWaitMs?: number;
  /** Resolved and discarded entries older than this are purged (SLOTLINE_DEAD_LETTER_RETENTION_DAYS). */
  retentionDays: number;
  metrics: Metrics;
  log: Logger;
}

type Queryable = Pick<pg.ClientBase, 'query'>;

/**
 * A page of a slot's dead letters, ordered by id, after `afterId`. Reads the
 * sink only: the CLI uses it straight when the connector is down.
 */
export async function listDeadLetters(
  sink: Queryable,
  slot: string,
  f: DeadLetterFilter,
  limit: number,
  afterId: number,
): Promise<{ items: DeadLetterRow[]; next: number | null }> {
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE)
    throw new InvalidRequest(`limit must be 1 to ${MAX_PAGE}`);
  const w = where(f, null);
  const params = [slot, ...w.params, afterId, limit];
  const { rows } = await sink.query<Row>(
    `SELECT ${COLUMNS} FROM slotline.dead_letters d WHERE ${w.sql} AND d.id > $${params.length - 1}
      ORDER BY d.id LIMIT $${params.length}`,
    params,
  );
  const items = rows.map(fromRow);
  return { items, next: items.length === limit ? (items[items.length - 1]?.id ?? null) : null };
}

/** One dead letter of the slot; NotFound when there is none. Reads the sink only. */
export async function showDeadLetter(
  sink: Queryable,
  slot: string,
  id: number,
): Promise<DeadLetterRow> {
  const { rows } = await sink.query<Row>(
    `SELECT ${COLUMNS} FROM slotline.dead_letters WHERE slot = $1 AND id = $2`,
    [slot, id],
  );
  if (!rows[0]) throw new NotFound(`no dead letter ${id}`);
  return fromRow(rows[0]);
}

/**
 * What an operator does with dead letters: list, show, retry, discard with a
 * note, purge old settled ones. A retry never replays the stored row: it
 * re-reads each letter's row from the source now, through a watermark window
 * (a keyed backfill), so it follows the stream's apply rule. Row gone at the
 * source: resolved, nothing written. Row maps now: written at the watermark,
 * resolved once durable in every sink. Still bad: `retried`, with the reason
 * now. Trades that waited for an unknown pool are retried by themselves once
 * the pool streams in and their letters are durable. Pending entries are
 * never purged.
 */
export class DeadLetterService {
  private attached: {
    router: ChangeRouter;
    queue: InflightQueue;
    reader: WatermarkReader;
    stop: AbortController;
  } | null = null;
  /** Pool references that pending unknown_pool dead letters wait for. */
  private readonly waiting = new Set<string>();
  private timers: NodeJS.Timeout[] = [];
  private gaugeSoon: NodeJS.Timeout | null = null;
  private retrying: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: DeadLetterServiceOptions) {}

  /** Connects to the running pipeline: from now on retries are possible. */
  async attach(router: ChangeRouter, queue: InflightQueue, reader: WatermarkReader): Promise<void> {
    this.attached = { router, queue, reader, stop: new AbortController() };
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
    const a = this.attached;
    this.attached = null;
    if (!a) return;
    a.stop.abort();
    if (a.router.deadLetters) a.router.deadLetters = null;
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

  list(
    f: DeadLetterFilter,
    limit: number,
    afterId: number,
  ): Promise<{ items: DeadLetterRow[]; next: number | null }> {
    return listDeadLetters(this.opts.sink, this.opts.slot, f, limit, afterId);
  }

  show(id: number): Promise<DeadLetterRow> {
    return showDeadLetter(this.opts.sink, this.opts.slot, id);
  }

  /**
   * Retries the pending and retried entries the filter selects (one retry at
   * a time). Refused (Conflict) when the stream does not reach the retry's
   * watermarks in time (paused, or far behind); what was settled by then stays.
   */
  retry(f: DeadLetterFilter): Promise<RetryResult> {
    const wait = AbortSignal.timeout(this.opts.operatorWaitMs ?? 25_000);
    return this.serially(f, MAX_RETRY, wait).catch((err: unknown) => {
      if (wait.aborted)
        throw new Conflict(
          'the stream did not reach the retry in time (paused, or far behind): try again later',
        );
      throw err;
    });
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

  private serially(f: DeadLetterFilter, limit: number, signal?: AbortSignal): Promise<RetryResult> {
    const run = this.retrying.then(() => this.retryNow(f, limit, signal));
    this.retrying = run.catch(() => undefined);
    return run;
  }

  private enqueueRetry(f: DeadLetterFilter): void {
    void this.serially(f, Infinity).then(
      (r) => {
        if (r.selected > 0)
          this.opts.log.info(
            { resolved: r.resolved, gone: r.gone, failed: r.failed },
            'dead letters retried automatically',
          );
      },
      (err: unknown) => {
        // Tried again when the pool streams in again or at the next start.
        if (f.poolRef) this.waiting.add(f.poolRef);
        if (!this.attached?.stop.signal.aborted)
          this.opts.log.warn({ err }, 'automatic dead letter retry failed');
      },
    );
  }

  private async retryNow(
    f: DeadLetterFilter,
    limit: number,
    timeout?: AbortSignal,
  ): Promise<RetryResult> {
    const a = this.attached;
    if (!a) throw new Conflict('dead letters can be retried only while the connector streams');
    const signal = timeout ? AbortSignal.any([a.stop.signal, timeout]) : a.stop.signal;
    // Letters still in flight are selected only once every sink holds them.
    await untilDone(a.queue.barrier(), signal);
    const total: RetryResult = {
      selected: 0,
      resolved: 0,
      gone: 0,
      superseded: 0,
      failed: 0,
      failures: [],
    };
    const w = where(f, ['pending', 'retried']);
    for (let after = 0; total.selected < limit;) {
      const page = Math.min(this.opts.maxKeysPerRead ?? PAGE, limit - total.selected);
      const params = [this.opts.slot, ...w.params, after, page];
      const { rows } = await this.opts.sink.query<Row>(
        `SELECT ${COLUMNS} FROM slotline.dead_letters d WHERE ${w.sql} AND d.id > $${params.length - 1}
          -- d.id: the bigint, not the id::text output column (text order skips letters)
          ORDER BY d.id LIMIT $${params.length}`,
        params,
      );
      if (rows.length === 0) break;
      after = Number(rows[rows.length - 1]?.id);
      const settled = await this.retryPage(rows.map(fromRow), a, signal);
      await this.record(settled);
      addUp(total, settled);
    }
    void this.refreshGauge().catch(() => undefined);
    total.failures = total.failures.slice(0, 100);
    return total;
  }

  /** One page of letters: their keys re-read, table by table. */
  private async retryPage(
    letters: DeadLetterRow[],
    a: NonNullable<DeadLetterService['attached']>,
    signal: AbortSignal,
  ): Promise<Settled[]> {
    const out: Settled[] = [];
    const byTable = new Map<KeyedTable, DeadLetterRow[]>();
    for (const l of letters) {
      const table = keyedTable(l.sourceTable);
      if (l.operation === 'delete' || l.rowKey === '(missing)' || table === null) {
        const why = table === null ? 'not a mapped table' : 'a change without a key';
        out.push({
          id: l.id,
          state: 'retried',
          code: l.reasonCode,
          reason: `${why} cannot be retried; discard it`,
        });
        continue;
      }
      byTable.set(table, [...(byTable.get(table) ?? []), l]);
    }
    const deps = { ...this.opts, router: a.router, reader: a.reader, queue: a.queue };
    for (const [table, group] of byTable) {
      const keys = [...new Set(group.map((l) => l.rowKey))];
      const outcomes = await rereadKeys(deps, table, keys, signal);
      for (const l of group) out.push(settle(l.id, outcomes.get(l.rowKey) ?? { kind: 'gone' }));
    }
    return out;
  }

  /** Writes what the retry found; a letter settled meanwhile (superseded in the sink) stays settled. */
  private async record(settled: Settled[]): Promise<void> {
    if (settled.length === 0) return;
    await this.opts.sink.query(
      `UPDATE slotline.dead_letters d SET state = f.state, attempts = attempts + 1, last_seen = now(),
              reason_code = coalesce(f.code, d.reason_code), reason = coalesce(f.reason, d.reason),
              note = coalesce(f.note, d.note)
         FROM json_to_recordset($1::json) AS f(id bigint, state text, code text, reason text, note text)
        WHERE d.id = f.id AND d.slot = $2 AND (f.state = 'resolved' OR d.state IN ('pending', 'retried'))`,
      [JSON.stringify(settled), this.opts.slot],
    );
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

interface Settled {
  id: number;
  state: 'resolved' | 'retried';
  code?: string;
  reason?: string;
  note?: string;
}

const NOTES = {
  written: 'resolved by retry: the row as the source has it now is in every sink',
  gone: 'resolved by retry: gone at the source',
  superseded: 'resolved: superseded by a later change of the row',
};

function settle(id: number, o: Outcome): Settled {
  if (o.kind === 'bad')
    return { id, state: 'retried', code: o.rejection.code, reason: o.rejection.reason };
  return { id, state: 'resolved', note: NOTES[o.kind] };
}

function addUp(total: RetryResult, settled: Settled[]): void {
  for (const s of settled) {
    total.selected += 1;
    if (s.state === 'resolved') {
      total.resolved += 1;
      if (s.note === NOTES.gone) total.gone += 1;
      if (s.note === NOTES.superseded) total.superseded += 1;
    } else {
      total.failed += 1;
      if (total.failures.length < 100)
        total.failures.push({ id: s.id, reasonCode: s.code ?? '', reason: s.reason ?? '' });
    }
  }
}

/** `p`, or the signal's reason once it aborts. */
function untilDone(p: Promise<void>, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  return new Promise((resolve, reject) => {
    const abort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', abort, { once: true });
    p.then(() => {
      signal.removeEventListener('abort', abort);
      resolve();
    }, reject);
  });
}
