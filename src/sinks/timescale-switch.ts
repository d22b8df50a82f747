import type pg from 'pg';
import { type Lsn, formatLsn } from '../checkpoint/lsn.js';
import type { SourceIdentity } from '../checkpoint/store.js';
import { classifyError } from '../errors.js';
import type { Batch } from './batch.js';
import { coalesce } from './coalesce.js';
import { recordRefresh, StaleSpan } from './ohlcv-refresh.js';
import {
  inCompressedChunk,
  letterRow,
  POOL_COLUMNS,
  POOL_ROWS,
  poolRow,
  type statements,
  TRADE_COLUMNS,
  TRADE_ROWS,
  tradeRow,
  versionSql,
} from './timescale-sql.js';
import { removeRows } from './timescale-trades.js';

/**
 * The sink's side of a Ponder deployment switch (see connector/switch.ts):
 * one transaction on one connection, so that no reader ever sees rows of two
 * deployments. The new deployment's rows, copied in the switch's snapshot,
 * first go to temporary tables (dropped at the end of the transaction, also
 * on a rollback); then commit() reconciles: rows only the old deployment has
 * are removed, new and changed rows are written with the new generation, and
 * rows equal in both are left as they are (not rewritten: their continuous
 * aggregates stay valid, and the switch writes only what differs). The
 * checkpoint moves to the snapshot's consistent point, the generation up by
 * one, and the schema to the new deployment's, in the same transaction.
 *
 * The transaction starts as every sink write does (BEGIN_WRITE, the epoch held
 * FOR SHARE). Rows to remove are located first (a read) and removed by (id,
 * time), so TimescaleDB decompresses only the compressed batches that hold
 * them, as writeTrades does; the span of old trade time removed or written is
 * recorded in slotline.ohlcv_refresh in the same transaction, so the OHLCV
 * aggregates are refreshed over it once it has committed.
 */
export interface SwitchTarget {
  /** The new deployment's schema. */
  schema: string;
  /** The switch snapshot's consistent point: streaming resumes there. */
  lsn: Lsn;
  identity: SourceIdentity;
}

export interface SwitchCounts {
  /** Sink trades the new deployment lacks (or holds at another time), removed. */
  tradesRemoved: number;
  /** Trades new or different in the new deployment, written. */
  tradesWritten: number;
  /** Trades equal in both deployments, left untouched. */
  tradesKept: number;
  poolsRemoved: number;
  poolsWritten: number;
  /** Dead letters of the old deployment, resolved: the copy re-read every row. */
  lettersResolved: number;
}

export type SwitchSql = ReturnType<typeof statements> & ReturnType<typeof switchStatements>;

/** Where the switch writes, and what it owes the OHLCV aggregates. */
export interface SwitchSink {
  sql: SwitchSql;
  slot: string;
  sink: string;
  /** ohlcv_1m and ohlcv_1h are continuous aggregates: rewritten history must refresh them. */
  aggregates: boolean;
  /** Called once the switch committed having recorded a refresh (the refresher runs it). */
  refreshOwed(): void;
}

/** Rows the switch removes per page of its cursor. */
const REMOVE_PAGE = 5_000;

export class SinkSwitch {
  private done = false;
  private readonly sql: SwitchSql;
  private readonly slot: string;

  private constructor(
    private readonly client: pg.PoolClient,
    private readonly to: SwitchSink,
    /** The generation the new deployment's rows carry. */
    readonly generation: number,
  ) {
    this.sql = to.sql;
    this.slot = to.slot;
  }

  /**
   * Opens the switch transaction on `client` (already holding the slot's
   * leader epoch FOR SHARE): takes the next generation and creates the
   * staging tables.
   */
  static async begin(client: pg.PoolClient, to: SwitchSink, current: number): Promise<SinkSwitch> {
    for (const q of to.sql.switchStage) await client.query(q);
    return new SinkSwitch(client, to, current + 1);
  }

  /** A batch of the copy: pools and trades into the staging tables, dead letters as they are. */
  async write(batch: Batch): Promise<void> {
    for (const seg of coalesce(batch.changes, this.generation)) {
      if (seg.tradeDeletes.length + seg.poolDeletes.length > 0 || seg.truncate)
        throw new Error('a snapshot copy holds no deletes');
      const json = (rows: unknown[]) => [JSON.stringify(rows)];
      if (seg.poolUpserts.length > 0)
        await this.client.query(this.sql.switchStagePools, json(seg.poolUpserts.map(poolRow)));
      if (seg.tradeUpserts.length > 0)
        await this.client.query(this.sql.switchStageTrades, json(seg.tradeUpserts.map(tradeRow)));
      if (seg.deadLetters.length > 0)
        await this.client.query(this.sql.deadLetters, [
          JSON.stringify(seg.deadLetters.map(letterRow)),
          this.slot,
        ]);
    }
  }

  /** Reconciles the sink to the staged deployment and commits; see the class comment. */
  async commit(target: SwitchTarget, from: string | null): Promise<SwitchCounts> {
    const c = this.client;
    const count = async (q: string, params: unknown[] = []) =>
      (await c.query(q, params)).rowCount ?? 0;
    for (const q of this.sql.switchAnalyze) await c.query(q);
    const staged = await c.query<{ n: string }>(this.sql.switchStagedTrades);
    const stale = StaleSpan.now();
    const tradesRemoved = await this.removeTrades(target, stale);
    const tradesWritten = await this.writeTrades(stale);
    const poolsRemoved = await count(this.sql.switchRemovePools);
    const poolsWritten = await count(this.sql.switchWritePools);
    for (const q of this.sql.purge) await c.query(q, [this.generation, this.slot]);
    const note = `superseded: the Ponder deployment moved from ${from ?? '?'} to ${target.schema}; the switch re-read every row`;
    const lettersResolved = await count(this.sql.switchResolveLetters, [
      this.slot,
      this.generation,
      note,
    ]);
    await c.query(this.sql.switchCheckpoint, [
      this.slot,
      this.to.sink,
      this.generation,
      formatLsn(target.lsn),
      target.schema,
      target.identity.systemId,
      target.identity.timeline,
    ]);
    const span = this.to.aggregates ? stale.span() : null;
    if (span !== null) await recordRefresh(c, this.slot, span);
    await c.query('COMMIT');
    this.done = true;
    if (span !== null) this.to.refreshOwed();
    return {
      tradesRemoved,
      tradesWritten,
      tradesKept: Number(staged.rows[0]?.n ?? 0) - tradesWritten,
      poolsRemoved,
      poolsWritten,
      lettersResolved,
    };
  }

  /**
   * Sink trades the new deployment lacks (or holds at another time): located
   * by a read, then removed by (id, time) under the new generation's version,
   * which is newer than any row of the old one. The read is a cursor taken a
   * page at a time, so memory stays a page whatever the two deployments differ
   * by (the cursor reads as of its declaration: the removals do not disturb it).
   */
  private async removeTrades(target: SwitchTarget, stale: StaleSpan): Promise<number> {
    const c = this.client;
    const version = { g: this.generation, l: formatLsn(target.lsn), s: 0 };
    await c.query(`DECLARE switch_removed NO SCROLL CURSOR FOR ${this.sql.switchLocateRemoved}`);
    let removed = 0;
    for (;;) {
      const { rows } = await c.query<{ i: string; t: string; e: number; z: boolean }>(
        `FETCH ${REMOVE_PAGE} FROM switch_removed`,
      );
      if (rows.length === 0) break;
      for (const r of rows) stale.add(r.e);
      await removeRows(
        c,
        this.sql,
        rows.map((r) => ({ i: r.i, t: r.t, nt: null, ...version, z: r.z })),
      );
      removed += rows.length;
    }
    await c.query('CLOSE switch_removed');
    return removed;
  }

  /** Trades new or different in the new deployment; their times go into `stale`. */
  private async writeTrades(stale: StaleSpan): Promise<number> {
    const { rows } = await this.client.query<{ n: number; lo: number | null; hi: number | null }>(
      this.sql.switchWriteTrades,
    );
    const w = rows[0];
    if (w && w.lo !== null && w.hi !== null) stale.addRange(w.lo, w.hi);
    return w?.n ?? 0;
  }

  /** Rolls back (the sink keeps the old deployment, whole) and returns the connection. */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.client.query('ROLLBACK').catch(() => undefined);
  }

  /** The connection goes back to the pool; a broken one is discarded. */
  release(err?: unknown): void {
    const broken = err !== undefined && classifyError(err, 'sink').retriable;
    this.client.release(broken ? (err as Error) : undefined);
  }
}

/** The columns of a column list (TRADE_COLUMNS, POOL_COLUMNS), less `skip` and the version. */
const dataColumns = (list: string, skip: string[]) =>
  list
    .split(',')
    .map((c) => c.trim())
    .filter((c) => !skip.includes(c) && !c.startsWith('source_'));
/** What makes a row different between deployments (not its key, its version, nor volume, which follows). */
const TRADE_DATA = dataColumns(TRADE_COLUMNS, ['trade_id', 'time', 'volume']);
const POOL_DATA = dataColumns(POOL_COLUMNS, ['id']);

const distinct = (a: string, b: string, cols: string[]) =>
  `(${cols.map((x) => `${a}.${x}`).join(', ')}) IS DISTINCT FROM (${cols.map((x) => `${b}.${x}`).join(', ')})`;

/** A column list, each qualified by `alias`. */
const cols = (alias: string, list: string) =>
  list
    .split(',')
    .map((c) => `${alias}.${c.trim()}`)
    .join(', ');

/** `SET c = EXCLUDED.c` for every column but the key. */
const setAll = (cols: string) =>
  cols
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c !== 'trade_id' && c !== 'time' && c !== 'id')
    .map((c) => `${c} = EXCLUDED.${c}`)
    .join(', ');

/**
 * The statements of a switch, beside the sink's others (timescale-sql.ts);
 * `schema` quoted, `rawSchema` the same name as a value, `timescale` as there.
 */
export function switchStatements(schema: string, rawSchema: string, timescale: boolean) {
  return {
    ...stageStatements(schema),
    ...reconcileStatements(schema, rawSchema, timescale),
  };
}

/** Temporary staging tables: private to the switch's connection, gone with its transaction. */
function stageStatements(schema: string) {
  return {
    switchStage: [
      `CREATE TEMP TABLE switch_trades (LIKE ${schema}.analytics_trades INCLUDING DEFAULTS) ON COMMIT DROP`,
      'ALTER TABLE pg_temp.switch_trades ADD PRIMARY KEY (trade_id)',
      `CREATE TEMP TABLE switch_pools (LIKE ${schema}.pools INCLUDING DEFAULTS) ON COMMIT DROP`,
      'ALTER TABLE pg_temp.switch_pools ADD PRIMARY KEY (id)',
    ],
    switchStageTrades: `
      INSERT INTO pg_temp.switch_trades (${TRADE_COLUMNS})
      ${TRADE_ROWS}
      ON CONFLICT (trade_id) DO UPDATE SET ${setAll(TRADE_COLUMNS)}, time = EXCLUDED.time`,
    switchStagePools: `
      INSERT INTO pg_temp.switch_pools (${POOL_COLUMNS})
      ${POOL_ROWS}
      ON CONFLICT (id) DO UPDATE SET ${setAll(POOL_COLUMNS)}`,
    /** Temporary tables are never auto-analyzed: without statistics the anti-joins below crawl. */
    switchAnalyze: ['ANALYZE pg_temp.switch_trades', 'ANALYZE pg_temp.switch_pools'],
    switchStagedTrades: 'SELECT count(*)::text AS n FROM pg_temp.switch_trades',
  };
}

/** The staged deployment becomes the sink's: what only the old one had goes, what differs is written. */
function reconcileStatements(schema: string, rawSchema: string, timescale: boolean) {
  const trades = `${schema}.analytics_trades`;
  const pools = `${schema}.pools`;
  return {
    /**
     * The rows to remove, as tradeLocate reports them (a read: a DELETE with
     * this anti-join would decompress every batch of every compressed chunk).
     */
    switchLocateRemoved: `
      SELECT x.trade_id AS i, x.time::text AS t, extract(epoch FROM x.time)::float8 AS e,
             ${inCompressedChunk('x', rawSchema, timescale)} AS z
        FROM ${trades} x
       WHERE NOT EXISTS (SELECT 1 FROM pg_temp.switch_trades s WHERE s.trade_id = x.trade_id AND s.time = x.time)`,
    // A join finds the few rows that differ; ON CONFLICT then only sees those.
    switchWriteTrades: `
      WITH w AS (
        INSERT INTO ${trades} AS t (${TRADE_COLUMNS})
        SELECT ${cols('s', TRADE_COLUMNS)} FROM pg_temp.switch_trades s
          LEFT JOIN ${trades} o ON o.trade_id = s.trade_id AND o.time = s.time
         WHERE o.trade_id IS NULL OR ${distinct('o', 's', TRADE_DATA)}
        ON CONFLICT (trade_id, time) DO UPDATE SET ${setAll(TRADE_COLUMNS)}
         WHERE ${versionSql('t')} <= ${versionSql('EXCLUDED')}
        RETURNING t.time)
      SELECT count(*)::int AS n, extract(epoch FROM min(time))::float8 AS lo,
             extract(epoch FROM max(time))::float8 AS hi
        FROM w`,
    switchRemovePools: `
      DELETE FROM ${pools} p WHERE NOT EXISTS (SELECT 1 FROM pg_temp.switch_pools s WHERE s.id = p.id)`,
    switchWritePools: `
      INSERT INTO ${pools} AS p (${POOL_COLUMNS})
      SELECT ${cols('s', POOL_COLUMNS)} FROM pg_temp.switch_pools s
        LEFT JOIN ${pools} o ON o.id = s.id
       WHERE o.id IS NULL OR ${distinct('o', 's', POOL_DATA)}
      ON CONFLICT (id) DO UPDATE SET ${setAll(POOL_COLUMNS)}
       WHERE ${versionSql('p')} <= ${versionSql('EXCLUDED')}`,
    switchResolveLetters: `
      UPDATE slotline.dead_letters SET state = 'resolved', note = $3, last_seen = now()
       WHERE slot = $1 AND state IN ('pending', 'retried') AND generation < $2`,
    switchCheckpoint: `
      UPDATE slotline.checkpoints
         SET generation = $3, lsn = $4::pg_lsn, snapshot_lsn = $4::pg_lsn, state = 'streaming',
             source_schema = $5, system_id = $6, timeline = $7, commit_time = NULL, updated_at = now()
       WHERE slot = $1 AND sink = $2`,
  };
}
