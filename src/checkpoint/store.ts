import type pg from 'pg';
import { LeadershipLostError } from '../errors.js';
import { escapedLiteral } from '../sql.js';
import { type Lsn, formatLsn, parseLsnOrNull } from './lsn.js';

export type CheckpointState = 'pending_snapshot' | 'snapshotting' | 'streaming';

export interface Checkpoint {
  slot: string;
  sink: string;
  lsn: Lsn | null;
  state: CheckpointState;
  snapshotLsn: Lsn | null;
  commitTime: Date | null;
  updatedAt: Date;
  /** Source generation (see sinks/version.ts): bumped by every new snapshot. */
  generation: number;
  /** The source server of this generation (IDENTIFY_SYSTEM); null before it was recorded. */
  source: SourceIdentity | null;
  /** The source schema (Ponder deployment) of this generation's rows; null before it was recorded. */
  sourceSchema: string | null;
}

export interface SourceIdentity {
  /** pg_control's system identifier, a 64-bit integer kept as text. */
  systemId: string;
  timeline: number;
}

type Queryable = Pick<pg.ClientBase, 'query'>;

interface Row {
  slot: string;
  sink: string;
  lsn: string | null;
  state: CheckpointState;
  snapshot_lsn: string | null;
  commit_time: Date | null;
  updated_at: Date;
  generation: number;
  system_id: string | null;
  timeline: number | null;
  source_schema: string | null;
}

const COLUMNS = `slot, sink, lsn::text, state, snapshot_lsn::text, commit_time, updated_at, generation,
                 system_id, timeline, source_schema`;

function fromRow(r: Row): Checkpoint {
  return {
    slot: r.slot,
    sink: r.sink,
    lsn: parseLsnOrNull(r.lsn),
    state: r.state,
    snapshotLsn: parseLsnOrNull(r.snapshot_lsn),
    commitTime: r.commit_time,
    updatedAt: r.updated_at,
    generation: r.generation,
    source:
      r.system_id === null ? null : { systemId: r.system_id, timeline: Number(r.timeline ?? 0) },
    sourceSchema: r.source_schema,
  };
}

export async function readCheckpoint(
  db: Queryable,
  slot: string,
  sink: string,
): Promise<Checkpoint | null> {
  const { rows } = await db.query<Row>(
    `SELECT ${COLUMNS} FROM slotline.checkpoints WHERE slot = $1 AND sink = $2`,
    [slot, sink],
  );
  return rows[0] ? fromRow(rows[0]) : null;
}

export async function readCheckpoints(db: Queryable, slot: string): Promise<Checkpoint[]> {
  const { rows } = await db.query<Row>(
    `SELECT ${COLUMNS} FROM slotline.checkpoints WHERE slot = $1 ORDER BY sink`,
    [slot],
  );
  return rows.map(fromRow);
}

/** Sets a sink's state (and LSNs), creating its row if needed. */
export async function setCheckpointState(
  db: Queryable,
  slot: string,
  sink: string,
  state: CheckpointState,
  lsn: Lsn | null,
  snapshotLsn: Lsn | null,
): Promise<void> {
  await db.query(
    `INSERT INTO slotline.checkpoints (slot, sink, lsn, state, snapshot_lsn)
     VALUES ($1, $2, $3::pg_lsn, $4, $5::pg_lsn)
     ON CONFLICT (slot, sink) DO UPDATE
        SET lsn = EXCLUDED.lsn, state = EXCLUDED.state, snapshot_lsn = EXCLUDED.snapshot_lsn, updated_at = now()`,
    [
      slot,
      sink,
      lsn === null ? null : formatLsn(lsn),
      state,
      snapshotLsn === null ? null : formatLsn(snapshotLsn),
    ],
  );
}

/**
 * Moves a streaming sink's checkpoint forward, inside the caller's transaction.
 * A lower LSN is ignored: the checkpoint never moves backwards.
 */
export async function advanceCheckpoint(
  db: Queryable,
  slot: string,
  sink: string,
  lsn: Lsn,
  commitTimeMicros: bigint | null,
): Promise<void> {
  await db.query(ADVANCE('$1', '$2', '$3', '$4'), [
    slot,
    sink,
    formatLsn(lsn),
    commitTimeMicros === null ? null : commitTimeMicros.toString(),
  ]);
}

const ADVANCE = (
  slot: string,
  sink: string,
  lsn: string,
  micros: string,
) => `UPDATE slotline.checkpoints
        SET lsn = ${lsn}::pg_lsn,
            commit_time = COALESCE(timestamptz '2000-01-01 00:00:00+00' + ${micros}::bigint * interval '1 microsecond', commit_time),
            updated_at = now()
      WHERE slot = ${slot} AND sink = ${sink} AND state = 'streaming' AND (lsn IS NULL OR lsn < ${lsn}::pg_lsn)`;

/**
 * advanceCheckpoint's statement with its values inline, to share one
 * simple-protocol message (one round trip) with the COMMIT after it.
 */
export function advanceCheckpointText(
  slot: string,
  sink: string,
  lsn: Lsn,
  commitTimeMicros: bigint | null,
): string {
  return ADVANCE(
    escapedLiteral(slot),
    escapedLiteral(sink),
    `'${formatLsn(lsn)}'`,
    commitTimeMicros === null ? 'NULL' : `'${commitTimeMicros.toString()}'`,
  );
}

/**
 * An operator's LSN reset: the sink's checkpoint is set to `lsn`, backwards
 * (re-stream) or forwards (skip). The only write that may move a checkpoint
 * back; the connector is not streaming while it runs.
 */
export async function resetCheckpoint(
  db: Queryable,
  slot: string,
  sink: string,
  lsn: Lsn,
): Promise<number> {
  const r = await db.query(
    `UPDATE slotline.checkpoints SET lsn = $3::pg_lsn, updated_at = now()
      WHERE slot = $1 AND sink = $2 AND state = 'streaming'`,
    [slot, sink, formatLsn(lsn)],
  );
  return r.rowCount ?? 0;
}

/**
 * A new source history starts (a snapshot, or streaming without one): the sink's
 * generation goes up by one and the source's identity is recorded, with state
 * 'snapshotting'. Every row written from now on carries the new generation and
 * wins over any row of an older one. Returns the new generation.
 */
export async function beginGeneration(
  db: Queryable,
  slot: string,
  sink: string,
  source: SourceIdentity,
  schema: string,
): Promise<number> {
  const { rows } = await db.query<{ generation: number }>(
    `INSERT INTO slotline.checkpoints (slot, sink, state, generation, system_id, timeline, source_schema)
     VALUES ($1, $2, 'snapshotting', 1, $3, $4, $5)
     ON CONFLICT (slot, sink) DO UPDATE
        SET state = 'snapshotting', lsn = NULL, snapshot_lsn = NULL,
            generation = slotline.checkpoints.generation + 1,
            system_id = EXCLUDED.system_id, timeline = EXCLUDED.timeline,
            source_schema = EXCLUDED.source_schema, updated_at = now()
     RETURNING generation`,
    [slot, sink, source.systemId, source.timeline, schema],
  );
  return (rows[0] as { generation: number }).generation;
}

/** Records the source's identity for the current generation (first start after an upgrade, a new timeline). */
export async function recordSourceIdentity(
  db: Queryable,
  slot: string,
  sink: string,
  source: SourceIdentity,
): Promise<void> {
  await db.query(
    `UPDATE slotline.checkpoints SET system_id = $3, timeline = $4, updated_at = now()
      WHERE slot = $1 AND sink = $2`,
    [slot, sink, source.systemId, source.timeline],
  );
}

/** Who claims leadership: this process, and where the other replicas reach it. */
export interface LeaderClaim {
  holder: string;
  /** Its admin address (SLOTLINE_ADVERTISE_URL); null when it serves no HTTP. */
  address: string | null;
}

/** A claimed epoch, and the deployment's pause as the claim found it. */
export interface ClaimedEpoch {
  epoch: string;
  paused: boolean;
}

/**
 * Makes the caller the slot's leader in the sink: epoch + 1, recording its
 * address. Waits for the write transactions of the previous leader that are in
 * flight (they hold the row FOR SHARE), and for a pause it is storing; every
 * later one of theirs fails. Then reads the deployment's pause, in a statement
 * of its own so that it sees what those committed.
 */
export async function claimEpoch(
  db: Queryable,
  slot: string,
  claim: LeaderClaim,
): Promise<ClaimedEpoch> {
  const { rows } = await db.query<{ epoch: string }>(
    `INSERT INTO slotline.leaders AS l (slot, epoch, holder, address) VALUES ($1, 1, $2, $3)
     ON CONFLICT (slot) DO UPDATE
        SET epoch = l.epoch + 1, holder = EXCLUDED.holder, address = EXCLUDED.address, since = now()
     RETURNING epoch::text AS epoch`,
    [slot, claim.holder, claim.address],
  );
  const p = await db.query<{ paused: boolean }>(
    `SELECT paused FROM slotline.pauses WHERE slot = $1`,
    [slot],
  );
  return { epoch: (rows[0] as { epoch: string }).epoch, paused: p.rows[0]?.paused ?? false };
}

/** The slot's leader as the sink records it. */
export interface LeaderRecord {
  epoch: string;
  holder: string;
  address: string | null;
  since: Date;
}

/** The slot's leader record; null when no replica has led yet (or the table predates it). */
export async function readLeader(db: Queryable, slot: string): Promise<LeaderRecord | null> {
  try {
    const { rows } = await db.query<LeaderRecord>(
      `SELECT epoch::text AS epoch, holder, address, since FROM slotline.leaders WHERE slot = $1`,
      [slot],
    );
    return rows[0] ?? null;
  } catch (err) {
    // No table (set-up has never run) or no address column (a leader of an older
    // version has not applied this version's schema yet): no leader to find.
    const code = (err as { code?: string }).code;
    if (code === '42P01' || code === '42703' || code === '3F000') return null;
    throw err;
  }
}

/**
 * Stores the operator's pause (or resume) as the deployment's, under the
 * caller's epoch. False when another replica has claimed a newer one. The
 * leader row is only shared-locked, as the sink's writers do, so this never
 * waits behind a write; a claim in progress is waited for, and then refuses it.
 */
export async function storePause(
  db: Queryable,
  slot: string,
  epoch: string,
  paused: boolean,
): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO slotline.pauses AS p (slot, paused, paused_at, epoch)
     SELECT l.slot, $3::boolean, CASE WHEN $3::boolean THEN now() END, l.epoch
       FROM slotline.leaders l
      WHERE l.slot = $1 AND l.epoch = $2::bigint
        FOR SHARE OF l
     ON CONFLICT (slot) DO UPDATE
        SET paused = EXCLUDED.paused, paused_at = EXCLUDED.paused_at, epoch = EXCLUDED.epoch`,
    [slot, epoch, paused],
  );
  return rowCount === 1;
}

/**
 * Inside a sink write transaction: holds the slot's leader row FOR SHARE until
 * commit, and fails (not retriable) if another replica has claimed a newer epoch.
 * Returns the sink's current source generation and state.
 */
export async function lockEpoch(
  db: Queryable,
  slot: string,
  sink: string,
  epoch: string,
): Promise<{ generation: number; state: CheckpointState | null }> {
  const { rows } = await db.query<LockedEpoch>(LOCK_EPOCH('$1', '$2'), [slot, sink]);
  return checkEpoch(rows, slot, epoch);
}

/** What lockEpoch's statement reads. */
export interface LockedEpoch {
  epoch: string;
  holder: string;
  generation: number | null;
  state: CheckpointState | null;
}

/** The slot's leader row (l) beside the sink's checkpoint row (c), if any. */
const EPOCH_ROW = (slot: string, sink: string) => `slotline.leaders l
       LEFT JOIN slotline.checkpoints c ON c.slot = l.slot AND c.sink = ${sink}
      WHERE l.slot = ${slot}`;

const LOCK_EPOCH = (slot: string, sink: string) =>
  `SELECT l.epoch::text, l.holder, c.generation, c.state FROM ${EPOCH_ROW(slot, sink)} FOR SHARE OF l`;

/**
 * lockEpoch's statement with its values inline, to share one simple-protocol
 * message (one round trip) with the BEGIN before it; checkEpoch reads its rows.
 */
export function lockEpochText(slot: string, sink: string): string {
  return LOCK_EPOCH(escapedLiteral(slot), escapedLiteral(sink));
}

/** The SQLSTATE of expectEpochText's refusal. */
export const EPOCH_REFUSED = 'SLE01';

/**
 * checkEpoch done by the server, for a message that commits after it: a
 * statement that fails (EPOCH_REFUSED, via slotline.refuse) unless the slot's
 * epoch is `epoch` and the sink's generation and state are `at`, so nothing
 * later in the message runs. The caller still checks the lock's rows, which
 * name what changed.
 */
export function expectEpochText(
  slot: string,
  sink: string,
  epoch: string,
  at: { generation: number; state: CheckpointState | null },
): string {
  if (!/^\d+$/.test(epoch)) throw new Error(`not a leader epoch: ${epoch}`);
  const state = at.state === null ? 'NULL' : escapedLiteral(at.state);
  return `SELECT slotline.refuse('${EPOCH_REFUSED}', 'the leader epoch, generation or checkpoint state changed')
      WHERE NOT EXISTS (
        SELECT 1 FROM ${EPOCH_ROW(escapedLiteral(slot), escapedLiteral(sink))}
           AND l.epoch = ${epoch} AND coalesce(c.generation, 0) = ${Math.trunc(at.generation)}
           AND c.state IS NOT DISTINCT FROM ${state})`;
}

/** lockEpoch's check of the rows its statement read. */
export function checkEpoch(
  rows: readonly LockedEpoch[],
  slot: string,
  epoch: string,
): { generation: number; state: CheckpointState | null } {
  const r = rows[0];
  if (r?.epoch !== epoch) {
    throw new LeadershipLostError(
      `sink: another replica leads slot ${slot} now (epoch ${r?.epoch ?? 'none'} of ${r?.holder ?? '?'}, ours ${epoch}); ` +
        "this one stops writing and exits so that it cannot undo the new leader's writes",
    );
  }
  return { generation: r.generation ?? 0, state: r.state };
}

/** The slot's current leader epoch in the sink (null before any replica claimed one). */
export async function readEpoch(db: Queryable, slot: string): Promise<string | null> {
  const { rows } = await db.query<{ epoch: string }>(
    'SELECT epoch::text FROM slotline.leaders WHERE slot = $1',
    [slot],
  );
  return rows[0]?.epoch ?? null;
}
