import pg from 'pg';
import type { Lsn } from '../checkpoint/lsn.js';
import {
  advanceCheckpoint,
  advanceCheckpointText,
  beginGeneration,
  checkEpoch,
  claimEpoch,
  lockEpoch,
  readCheckpoint,
  recordSourceIdentity,
  resetCheckpoint,
  setCheckpointState,
  type Checkpoint,
  type ClaimedEpoch,
  type LeaderClaim,
  type LockedEpoch,
  type SourceIdentity,
} from '../checkpoint/store.js';
import { supersedeLetters } from '../deadletters/supersede.js';
import { classifyError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Batch } from './batch.js';
import { coalesce, type Segment } from './coalesce.js';
import type { CompleteSnapshotOptions, Sink } from './sink.js';
import { deadPeerSettings, quoteIdent } from '../sql.js';
import {
  hasOhlcvAggregates,
  OhlcvRefresher,
  recordRefreshText,
  StaleSpan,
} from './ohlcv-refresh.js';
import { letterRow, poolRow, statements } from './timescale-sql.js';
import { SinkSwitch, switchStatements, type SwitchSql } from './timescale-switch.js';
import { addCopyCounts, type CopyCounts, newCopyCounts } from './timescale-copy.js';
import {
  BEGIN_WRITE,
  type EpochAt,
  FoldedOpening,
  openingText,
  StaleOpening,
} from './timescale-opening.js';
import { writeTrades } from './timescale-trades.js';
import { versionFields } from './version.js';

export interface TimescaleSinkOptions {
  url: string;
  /** Schema of analytics_trades and pools (SLOTLINE_SINK_SCHEMA, default public). */
  schema: string;
  slot: string;
  log: Logger;
  /** How often tombstones that can no longer matter are purged (default 60 s). */
  purgeIntervalMs?: number;
  /**
   * SLOTLINE_DEAD_PEER_TIMEOUT_MS: how soon the sink ends a session of ours that
   * went silent (unset: the server's defaults).
   */
  deadPeerTimeoutMs?: number;
  /** Timing of the OHLCV refreshes after writes to old history (defaults in ohlcv-refresh.ts). */
  refresh?: { quietMs?: number; maxDelayMs?: number; pollMs?: number };
}

/** What the sink database has, read once by the first transaction. */
interface Features {
  sql: SwitchSql;
  /** ohlcv_1m and ohlcv_1h are continuous aggregates: old history rewritten must refresh them. */
  aggregates: boolean;
  /**
   * slotline.refuse exists (a schema set up by this version): a streamed batch
   * may commit in its COPY's message (FoldedOpening.closeWith).
   */
  refuse: boolean;
}

export { BEGIN_WRITE };

export const TIMESCALE_SINK = 'timescale';

/** What runs inside a sink transaction (see TimescaleSink.transaction). */
type TransactionBody<T> = (
  client: pg.PoolClient,
  gen: number,
  snapshotting: boolean,
  f: Features,
  tail: string[],
  opening: FoldedOpening | null,
) => Promise<T>;

/**
 * Whether writeSegment's first statement for `segments` is the hot path's
 * COPY, the one statement that can carry a write's opening: one segment of
 * streamed inserts or snapshot rows and nothing else (the usual batch).
 */
function copyComesFirst(segments: readonly Segment[]): boolean {
  if (segments.length !== 1) return false;
  const seg = segments[0]!;
  return (
    seg.tradeUpserts.length > 0 &&
    seg.tradeDeletes.length === 0 &&
    seg.poolUpserts.length === 0 &&
    seg.poolDeletes.length === 0 &&
    seg.deadLetters.length === 0 &&
    seg.truncate === null &&
    seg.tradeUpserts.every((u) => !u.replace)
  );
}

const writesLetters = (batch: Batch) => batch.changes.some((c) => c.kind === 'dead_letter');

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
  private features: Features | null = null;
  private refresher: OhlcvRefresher | null = null;
  /** This replica's leader epoch in the sink; null until claimEpoch(). */
  private epoch: string | null = null;
  /** What the last committed write's epoch lock read: the next write assumes it (FoldedOpening). */
  private opened: EpochAt | null = null;
  private lastPurge = Date.now();
  private pendingLetters = true;
  private lettersCheckedAt = 0;

  constructor(private readonly opts: TimescaleSinkOptions) {}

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
    this.pool.on('connect', (client) => {
      client.on('error', () => undefined);
      // A write transaction holds the leader row FOR SHARE until it commits: if
      // this process is lost mid-transaction (its node gone), the next leader's
      // claim must not wait hours for the server to notice. Queued before any
      // query of whoever checks the client out.
      const t = this.opts.deadPeerTimeoutMs;
      if (t !== undefined)
        client
          .query(
            [...deadPeerSettings(t), `SET idle_in_transaction_session_timeout = ${t}`].join('; '),
          )
          .catch(() => undefined);
    });
  }

  private db(): pg.Pool {
    if (!this.pool) throw new Error('TimescaleSink used before open()');
    return this.pool;
  }

  private async detect(db: Pick<pg.ClientBase, 'query'>): Promise<Features> {
    if (this.features) return this.features;
    const ext = await db.query(`SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'`);
    const timescale = (ext.rowCount ?? 0) > 0;
    this.features = {
      sql: {
        ...statements(quoteIdent(this.opts.schema), this.opts.schema, timescale),
        ...switchStatements(quoteIdent(this.opts.schema), this.opts.schema, timescale),
      },
      aggregates: await hasOhlcvAggregates(db, this.opts.schema),
      refuse:
        (
          await db.query<{ present: boolean }>(
            `SELECT to_regprocedure('slotline.refuse(text,text)') IS NOT NULL AS present`,
          )
        ).rows[0]?.present === true,
    };
    return this.features;
  }

  checkpoint(): Promise<Checkpoint | null> {
    return readCheckpoint(this.db(), this.opts.slot, this.name);
  }

  /**
   * Makes this replica the slot's leader in the sink (epoch + 1). Call once the
   * leader lock is held and the sink is open, before anything is written: from
   * then on a replica that led before fails every write with leadership_lost.
   */
  async claimEpoch(claim: LeaderClaim): Promise<ClaimedEpoch> {
    this.opened = null;
    const claimed = await claimEpoch(this.db(), this.opts.slot, claim);
    this.epoch = claimed.epoch;
    this.opts.log.info({ epoch: this.epoch }, 'leader epoch claimed in the sink');
    // The leader refreshes what its writes (or a verify repair) recorded.
    if ((await this.detect(this.db())).aggregates && !this.refresher) {
      this.refresher = new OhlcvRefresher({
        url: this.opts.url,
        schema: this.opts.schema,
        slot: this.opts.slot,
        log: this.opts.log,
        ...this.opts.refresh,
      });
      this.refresher.start();
    }
    return claimed;
  }

  /**
   * Runs `fn` in one sink transaction that holds this replica's epoch; passes
   * the current generation. The BEGIN and the epoch lock go in one message,
   * and statements `fn` pushes onto `tail` go with the COMMIT: a transaction
   * costs the sink two round trips besides its own statements (under load,
   * each round trip waits for both processes to be scheduled). A tail
   * statement that fails skips the rest of its message, the COMMIT included.
   *
   * A write (`fold`) after a write saves one more: it assumes the generation
   * and state the last one read, and `fn` is handed the opening to send at the
   * head of its first message (see FoldedOpening); if the lock then reads
   * another generation or state, the transaction is rolled back and `fn` runs
   * again the plain way. Where `fn` let that message commit too (the usual
   * streamed batch: FoldedOpening.closeWith), nothing is left to send.
   */
  private async transaction<T>(fn: TransactionBody<T>, fold = false): Promise<T> {
    try {
      return await this.attempt(fn, fold);
    } catch (err) {
      if (!(err instanceof StaleOpening)) throw err;
      this.opts.log.debug({ at: err.at }, 'sink generation or state changed: write run again');
      return this.attempt(fn, false);
    }
  }

  private async attempt<T>(fn: TransactionBody<T>, fold: boolean): Promise<T> {
    const epoch = this.epoch;
    if (epoch === null) throw new Error('TimescaleSink written before claimEpoch()');
    const assumed = fold ? this.opened : null;
    // Only a write that commits vouches for the next one's assumption.
    this.opened = null;
    const client = await this.db().connect();
    let broken: Error | undefined;
    try {
      let at: EpochAt;
      let opening: FoldedOpening | null = null;
      if (assumed !== null) {
        at = assumed;
        opening = new FoldedOpening(assumed, this.opts.slot, this.name, epoch);
      } else {
        const begun = (await client.query(
          openingText(this.opts.slot, this.name),
        )) as unknown as pg.QueryResult[];
        at = checkEpoch(begun[begun.length - 1]!.rows as LockedEpoch[], this.opts.slot, epoch);
      }
      const f = await this.detect(client);
      const tail: string[] = [];
      const result = await fn(client, at.generation, at.state === 'snapshotting', f, tail, opening);
      // Never commit what no epoch lock checked.
      if (opening !== null && opening.settled === null)
        throw new Error('a folded opening was never sent: the write is rolled back');
      if (opening?.committed !== true) await client.query([...tail, 'COMMIT'].join(';\n'));
      else if (tail.length > 0)
        throw new Error('statements were left for a write already committed');
      if (fold) this.opened = at;
      return result;
    } catch (err) {
      broken = err as Error;
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      // A client whose transaction failed for a connection reason is discarded (after a
      // stale opening too: its message may have failed for one, and the case is rare).
      const discard =
        broken !== undefined &&
        (broken instanceof StaleOpening || classifyError(broken, 'sink').retriable);
      client.release(discard ? broken : undefined);
    }
  }

  async write(batch: Batch): Promise<void> {
    let owed = false;
    // Added to the totals only once the write commits (a failed write is retried whole).
    let counts = newCopyCounts();
    const body: TransactionBody<void> = async (client, gen, snapshotting, f, tail, opening) => {
      counts = newCopyCounts();
      const stale = StaleSpan.now();
      const segments = coalesce(batch.changes, gen);
      // While a snapshot is copied nothing else writes, and every row the sink
      // holds is of an older generation (the sweep removes those not rewritten):
      // no row of the id can be newer, so the per-id check is skipped.
      if (snapshotting)
        for (const seg of segments) for (const u of seg.tradeUpserts) u.replace = false;
      // The usual streamed batch opens its transaction in the COPY's message; any other first.
      let head = opening;
      if (head !== null && !copyComesFirst(segments)) {
        await head.alone(client);
        head = null;
      }
      // What ends the write after its rows, in the message that commits it: the OHLCV
      // refresh it owes (the rows' times are in `stale` by then) and its checkpoint.
      const ending = (): string[] => {
        const end: string[] = [];
        owed = this.owe(f, stale, end);
        if (batch.checkpoint !== null)
          end.push(
            advanceCheckpointText(this.opts.slot, this.name, batch.checkpoint, batch.commitTime),
          );
        return end;
      };
      // When nothing else is due, the usual batch also commits in the COPY's message.
      const purgeDue =
        batch.checkpoint !== null &&
        Date.now() - this.lastPurge >= (this.opts.purgeIntervalMs ?? 60_000);
      if (head !== null && f.refuse && !purgeDue && !this.lettersMayWait(batch))
        head.closeWith(ending);
      for (const seg of segments) await this.writeSegment(client, f.sql, seg, stale, counts, head);
      if (head?.committed) return;
      // A letter whose row a later change now settles is resolved in the same transaction.
      if (await this.lettersPending(client, batch))
        await supersedeLetters(client, this.opts.slot, batch.changes);
      if (!purgeDue) {
        tail.push(...ending());
        return;
      }
      owed = this.owe(f, stale, tail);
      this.lastPurge = Date.now();
      await advanceCheckpoint(
        client,
        this.opts.slot,
        this.name,
        batch.checkpoint!,
        batch.commitTime,
      );
      for (const q of f.sql.purge) await client.query(q, [gen, this.opts.slot]);
    };
    await this.transaction(body, true);
    addCopyCounts(counts);
    if (owed) this.refresher?.ask();
  }

  /**
   * Records, in the write's transaction (the message that commits it), the
   * span of old trade time it changed, which the aggregates' policies will not
   * re-read. Returns whether it did.
   */
  private owe(f: Features, stale: StaleSpan, tail: string[]): boolean {
    const span = f.aggregates ? stale.span() : null;
    if (span === null) return false;
    tail.push(recordRefreshText(this.opts.slot, span));
    return true;
  }

  /** Whether lettersPending may find letters or read the table: a write then ends apart. */
  private lettersMayWait(batch: Batch): boolean {
    return this.pendingLetters || this.lettersCheckDue() || writesLetters(batch);
  }

  /**
   * Whether any dead letter may wait for a later change: checked in the table at
   * most once a minute, and known at once when a batch writes letters. Spares
   * the hot path a statement per batch while there are none (the usual case).
   */
  private async lettersPending(client: pg.PoolClient, batch: Batch): Promise<boolean> {
    if (this.lettersCheckDue()) {
      this.lettersCheckedAt = Date.now();
      const r = await client.query<{ e: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM slotline.dead_letters
                         WHERE slot = $1 AND state IN ('pending', 'retried')) AS e`,
        [this.opts.slot],
      );
      this.pendingLetters = r.rows[0]?.e === true;
    }
    if (writesLetters(batch)) this.pendingLetters = true;
    return this.pendingLetters;
  }

  private lettersCheckDue(): boolean {
    return Date.now() - this.lettersCheckedAt >= 60_000;
  }

  private async writeSegment(
    client: pg.PoolClient,
    sql: Features['sql'],
    seg: Segment,
    stale: StaleSpan,
    counts: CopyCounts,
    opening: FoldedOpening | null = null,
  ): Promise<void> {
    const json = (rows: unknown[]) => [JSON.stringify(rows)];
    if (seg.poolUpserts.length > 0) {
      await client.query(sql.poolUpsert, json(seg.poolUpserts.map(poolRow)));
    }
    if (seg.poolDeletes.length > 0) {
      await client.query(
        sql.poolDelete,
        json(seg.poolDeletes.map((d) => ({ i: d.poolId, ...versionFields(d.version) }))),
      );
    }
    await writeTrades(client, sql, seg, stale, counts, opening);
    if (seg.deadLetters.length > 0) {
      await client.query(sql.deadLetters, [
        JSON.stringify(seg.deadLetters.map(letterRow)),
        this.opts.slot,
      ]);
    }
    if (seg.truncate) {
      const v = versionFields(seg.truncate.version);
      const params = [v.g, v.l, v.s];
      if (seg.truncate.tables.includes('trades')) {
        await client.query(sql.tradeTruncate, params);
        stale.addAll();
      }
      if (seg.truncate.tables.includes('pools')) await client.query(sql.poolTruncate, params);
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
    let owed = false;
    await this.transaction(async (client, gen, _snapshotting, f, tail) => {
      if (opts.sweep !== false) {
        const stale = StaleSpan.now();
        const swept = await client.query(f.sql.sweep.trades, [gen]);
        if ((swept.rowCount ?? 0) > 0) stale.addAll();
        await client.query(f.sql.sweep.pools, [gen]);
        owed = this.owe(f, stale, tail);
      }
      for (const q of f.sql.purge) await client.query(q, [gen, this.opts.slot]);
      await setCheckpointState(client, this.opts.slot, this.name, 'streaming', lsn, lsn);
    });
    if (owed) this.refresher?.ask();
  }

  /**
   * Opens a Ponder deployment switch: one transaction, holding this replica's
   * epoch and the checkpoint row, into which the new deployment is staged and
   * then reconciled (see timescale-switch.ts). Only from a streaming checkpoint.
   * It starts as every write does (BEGIN_WRITE), and records the OHLCV
   * refresh its rewrites owe, which the refresher runs after its commit.
   */
  async beginSwitch(): Promise<SinkSwitch> {
    const epoch = this.epoch;
    if (epoch === null) throw new Error('TimescaleSink switched before claimEpoch()');
    this.opened = null;
    const client = await this.db().connect();
    try {
      await client.query(BEGIN_WRITE);
      const at = await lockEpoch(client, this.opts.slot, this.name, epoch);
      if (at.state !== 'streaming')
        throw new Error(`a switch needs a streaming checkpoint, not ${at.state}`);
      await client.query(
        'SELECT 1 FROM slotline.checkpoints WHERE slot = $1 AND sink = $2 FOR UPDATE',
        [this.opts.slot, this.name],
      );
      const f = await this.detect(client);
      const to = {
        sql: f.sql,
        slot: this.opts.slot,
        sink: this.name,
        aggregates: f.aggregates,
        refreshOwed: () => this.refresher?.ask(),
      };
      return await SinkSwitch.begin(client, to, at.generation);
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
    const r = this.refresher;
    this.refresher = null;
    await r?.stop();
    const p = this.pool;
    this.pool = null;
    await p?.end();
  }
}
