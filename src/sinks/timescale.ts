import pg from 'pg';
import type { Lsn } from '../checkpoint/lsn.js';
import {
  advanceCheckpoint,
  beginGeneration,
  claimEpoch,
  lockEpoch,
  readCheckpoint,
  recordSourceIdentity,
  resetCheckpoint,
  setCheckpointState,
  type Checkpoint,
  type SourceIdentity,
} from '../checkpoint/store.js';
import { supersedeLetters } from '../deadletters/supersede.js';
import { classifyError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Batch } from './batch.js';
import { coalesce, type Segment } from './coalesce.js';
import type { CompleteSnapshotOptions, Sink } from './sink.js';
import { quoteIdent } from '../sql.js';
import { poolFields, statements, tradeFields } from './timescale-sql.js';
import { SinkSwitch, switchStatements } from './timescale-switch.js';
import { versionFields } from './version.js';

export interface TimescaleSinkOptions {
  url: string;
  /** Schema of analytics_trades and pools (SLOTLINE_SINK_SCHEMA, default public). */
  schema: string;
  slot: string;
  log: Logger;
  /** How often tombstones that can no longer matter are purged (default 60 s). */
  purgeIntervalMs?: number;
}

export const TIMESCALE_SINK = 'timescale';

/**
 * Writes batches into TimescaleDB (or plain PostgreSQL): one transaction per
 * batch holding the rows and the checkpoint. Values arrive as text in one JSON
 * parameter per statement and are cast in SQL, so no amount passes through a
 * JS number. Every write is guarded by the row version (generation, commit
 * LSN, position in the transaction) and by tombstones: replaying a change, or
 * applying an older one, never overwrites a newer version nor undoes a delete.
 * Every transaction first checks that this replica's leader epoch is current.
 */
export class TimescaleSink implements Sink {
  readonly name = TIMESCALE_SINK;
  private pool: pg.Pool | null = null;
  private readonly sql: ReturnType<typeof statements> & ReturnType<typeof switchStatements>;
  /** This replica's leader epoch in the sink; null until claimEpoch(). */
  private epoch: string | null = null;
  private lastPurge = Date.now();
  private pendingLetters = true;
  private lettersCheckedAt = 0;

  constructor(private readonly opts: TimescaleSinkOptions) {
    const schema = quoteIdent(opts.schema);
    this.sql = { ...statements(schema), ...switchStatements(schema) };
  }

  async open(): Promise<void> {
    if (this.pool) return;
    this.pool = new pg.Pool({
      connectionString: this.opts.url,
      max: 2,
      application_name: 'slotline-sink',
    });
    // An idle client that loses its connection must not crash the process.
    this.pool.on('error', (err) =>
      this.opts.log.warn({ err: classifyError(err, 'sink') }, 'idle sink connection failed'),
    );
    // A checked-out client whose server goes away emits 'error' too (pg always does on an
    // unexpected end), and the pool only listens to idle ones: without this the process
    // crashed when the sink restarted mid-write. The failed query rejects and is retried.
    this.pool.on('connect', (client) => client.on('error', () => undefined));
  }

  private db(): pg.Pool {
    if (!this.pool) throw new Error('TimescaleSink used before open()');
    return this.pool;
  }

  checkpoint(): Promise<Checkpoint | null> {
    return readCheckpoint(this.db(), this.opts.slot, this.name);
  }

  /**
   * Makes this replica the slot's leader in the sink (epoch + 1). Call once the
   * leader lock is held and the sink is open, before anything is written: from
   * then on a replica that led before fails every write with leadership_lost.
   */
  async claimEpoch(holder: string): Promise<void> {
    this.epoch = await claimEpoch(this.db(), this.opts.slot, holder);
    this.opts.log.info({ epoch: this.epoch }, 'leader epoch claimed in the sink');
  }

  /** Runs `fn` in one sink transaction that holds this replica's epoch; passes the current generation. */
  private async transaction<T>(
    fn: (client: pg.PoolClient, gen: number, snapshotting: boolean) => Promise<T>,
  ): Promise<T> {
    const epoch = this.epoch;
    if (epoch === null) throw new Error('TimescaleSink written before claimEpoch()');
    const client = await this.db().connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const at = await lockEpoch(client, this.opts.slot, this.name, epoch);
      const result = await fn(client, at.generation, at.state === 'snapshotting');
      await client.query('COMMIT');
      return result;
    } catch (err) {
      broken = err as Error;
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      // A client whose transaction failed for a connection reason is discarded.
      client.release(
        broken !== undefined && classifyError(broken, 'sink').retriable ? broken : undefined,
      );
    }
  }

  async write(batch: Batch): Promise<void> {
    await this.transaction(async (client, gen, snapshotting) => {
      for (const seg of coalesce(batch.changes, gen)) {
        // While a snapshot is copied nothing else writes, and every row the sink
        // holds is of an older generation (the sweep removes those not rewritten):
        // no row of the id can be newer, so the per-id check is skipped.
        if (snapshotting) for (const u of seg.tradeUpserts) u.replace = false;
        await this.writeSegment(client, seg);
      }
      // A letter whose row a later change now settles is resolved in the same transaction.
      if (await this.lettersPending(client, batch))
        await supersedeLetters(client, this.opts.slot, batch.changes);
      if (batch.checkpoint !== null) {
        await advanceCheckpoint(
          client,
          this.opts.slot,
          this.name,
          batch.checkpoint,
          batch.commitTime,
        );
        if (Date.now() - this.lastPurge >= (this.opts.purgeIntervalMs ?? 60_000)) {
          this.lastPurge = Date.now();
          for (const q of this.sql.purge) await client.query(q, [gen, this.opts.slot]);
        }
      }
    });
  }

  /**
   * Whether any dead letter may wait for a later change: checked in the table at
   * most once a minute, and known at once when a batch writes letters. Spares
   * the hot path a statement per batch while there are none (the usual case).
   */
  private async lettersPending(client: pg.PoolClient, batch: Batch): Promise<boolean> {
    const writesLetters = batch.changes.some((c) => c.kind === 'dead_letter');
    if (Date.now() - this.lettersCheckedAt >= 60_000) {
      this.lettersCheckedAt = Date.now();
      const r = await client.query<{ e: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM slotline.dead_letters
                         WHERE slot = $1 AND state IN ('pending', 'retried')) AS e`,
        [this.opts.slot],
      );
      this.pendingLetters = r.rows[0]?.e === true;
    }
    if (writesLetters) this.pendingLetters = true;
    return this.pendingLetters;
  }

  private async writeSegment(client: pg.PoolClient, seg: Segment): Promise<void> {
    const json = (rows: unknown[]) => [JSON.stringify(rows)];
    if (seg.poolUpserts.length > 0) {
      await client.query(
        this.sql.poolUpsert,
        json(
          seg.poolUpserts.map(({ pool, version }) => ({
            ...poolFields(pool),
            ...versionFields(version),
          })),
        ),
      );
    }
    if (seg.poolDeletes.length > 0) {
      await client.query(
        this.sql.poolDelete,
        json(seg.poolDeletes.map((d) => ({ i: d.poolId, ...versionFields(d.version) }))),
      );
    }
    if (seg.tradeDeletes.length > 0) {
      await client.query(
        this.sql.tradeDelete,
        json(seg.tradeDeletes.map((d) => ({ i: d.tradeId, ...versionFields(d.version) }))),
      );
    }
    const checked = seg.tradeUpserts.filter((u) => u.replace);
    const hot = seg.tradeUpserts.filter((u) => !u.replace);
    if (checked.length > 0) {
      const rows = checked.map((u) => ({ ...tradeFields(u.trade), ...versionFields(u.version) }));
      await client.query(this.sql.tradeReplace, json(rows));
      await client.query(this.sql.tradeUpsertChecked, json(rows));
    }
    if (hot.length > 0) {
      await client.query(
        this.sql.tradeInsert,
        json(hot.map((u) => ({ ...tradeFields(u.trade), ...versionFields(u.version) }))),
      );
    }
    if (seg.deadLetters.length > 0) {
      await client.query(this.sql.deadLetters, [
        JSON.stringify(
          seg.deadLetters.map(({ letter: d, version }) => ({
            tb: d.sourceTable,
            op: d.operation,
            k: d.rowKey,
            ...versionFields(version),
            ct: d.commitTime === null ? null : d.commitTime.toString(),
            raw: d.raw,
            code: d.code,
            reason: d.reason,
          })),
        ),
        this.opts.slot,
      ]);
    }
    if (seg.truncate) {
      const v = versionFields(seg.truncate.version);
      const params = [v.g, v.l, v.s];
      if (seg.truncate.tables.includes('trades'))
        await client.query(this.sql.tradeTruncate, params);
      if (seg.truncate.tables.includes('pools')) await client.query(this.sql.poolTruncate, params);
    }
  }

  /**
   * A new source history starts (before a snapshot, or streaming without one):
   * the next generation, with the source's identity and schema. Returns the generation.
   */
  beginGeneration(source: SourceIdentity, schema: string): Promise<number> {
    return this.transaction((client) =>
      beginGeneration(client, this.opts.slot, this.name, source, schema),
    );
  }

  /**
   * The new generation's starting point is `lsn`: with `sweep` (a snapshot ran),
   * rows the snapshot did not (re)write are gone at the source and removed;
   * without it (SLOTLINE_SNAPSHOT=never) the sink keeps what it held, and the
   * stream's writes win over it by generation.
   */
  async completeSnapshot(lsn: Lsn, opts: CompleteSnapshotOptions = {}): Promise<void> {
    await this.transaction(async (client, gen) => {
      if (opts.sweep !== false) for (const q of this.sql.sweep) await client.query(q, [gen]);
      for (const q of this.sql.purge) await client.query(q, [gen, this.opts.slot]);
      await setCheckpointState(client, this.opts.slot, this.name, 'streaming', lsn, lsn);
    });
  }

  /**
   * Opens a Ponder deployment switch: one transaction, holding this replica's
   * epoch and the checkpoint row, into which the new deployment is staged and
   * then reconciled (see timescale-switch.ts). Only from a streaming checkpoint.
   */
  async beginSwitch(): Promise<SinkSwitch> {
    const epoch = this.epoch;
    if (epoch === null) throw new Error('TimescaleSink switched before claimEpoch()');
    const client = await this.db().connect();
    try {
      await client.query('BEGIN');
      const at = await lockEpoch(client, this.opts.slot, this.name, epoch);
      if (at.state !== 'streaming')
        throw new Error(`a switch needs a streaming checkpoint, not ${at.state}`);
      await client.query(
        'SELECT 1 FROM slotline.checkpoints WHERE slot = $1 AND sink = $2 FOR UPDATE',
        [this.opts.slot, this.name],
      );
      return await SinkSwitch.begin(client, this.sql, this.opts.slot, this.name, at.generation);
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      client.release(classifyError(err, 'sink').retriable ? (err as Error) : undefined);
      throw err;
    }
  }

  /** Records the source's identity for the current generation (see source/identity.ts). */
  recordSourceIdentity(source: SourceIdentity): Promise<void> {
    return this.transaction((client) =>
      recordSourceIdentity(client, this.opts.slot, this.name, source),
    );
  }

  /** An operator's LSN reset of this sink's checkpoint, under this replica's epoch. */
  async resetTo(lsn: Lsn): Promise<void> {
    await this.transaction((client) => resetCheckpoint(client, this.opts.slot, this.name, lsn));
  }

  async close(): Promise<void> {
    const p = this.pool;
    this.pool = null;
    await p?.end();
  }
}
