import type pg from 'pg';
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
}

function fromRow(r: Row): Checkpoint {
  return {
    slot: r.slot,
    sink: r.sink,
    lsn: parseLsnOrNull(r.lsn),
    state: r.state,
    snapshotLsn: parseLsnOrNull(r.snapshot_lsn),
    commitTime: r.commit_time,
    updatedAt: r.updated_at,
  };
}

export async function readCheckpoint(
  db: Queryable,
  slot: string,
  sink: string,
): Promise<Checkpoint | null> {
  const { rows } = await db.query<Row>(
    `SELECT slot, sink, lsn::text, state, snapshot_lsn::text, commit_time, updated_at
       FROM slotline.checkpoints WHERE slot = $1 AND sink = $2`,
    [slot, sink],
  );
  return rows[0] ? fromRow(rows[0]) : null;
}

export async function readCheckpoints(db: Queryable, slot: string): Promise<Checkpoint[]> {
  const { rows } = await db.query<Row>(
    `SELECT slot, sink, lsn::text, state, snapshot_lsn::text, commit_time, updated_at
       FROM slotline.checkpoints WHERE slot = $1 ORDER BY sink`,
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
  await db.query(
    `UPDATE slotline.checkpoints
        SET lsn = $3::pg_lsn,
            commit_time = COALESCE(timestamptz '2000-01-01 00:00:00+00' + $4::bigint * interval '1 microsecond', commit_time),
            updated_at = now()
      WHERE slot = $1 AND sink = $2 AND state = 'streaming' AND (lsn IS NULL OR lsn < $3::pg_lsn)`,
    [slot, sink, formatLsn(lsn), commitTimeMicros === null ? null : commitTimeMicros.toString()],
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
