import pg from 'pg';
import { type Lsn, parseLsn, parseLsnOrNull } from '../checkpoint/lsn.js';
import {
  SlotInUseError,
  SlotInvalidatedError,
  SlotMissingError,
  SlotlineError,
} from '../errors.js';

type Queryable = Pick<pg.ClientBase, 'query'>;

export interface SlotInfo {
  name: string;
  plugin: string | null;
  database: string | null;
  active: boolean;
  activePid: number | null;
  restartLsn: Lsn | null;
  confirmedFlushLsn: Lsn | null;
  /** reserved | extended | unreserved | lost (PostgreSQL 13+) */
  walStatus: string | null;
  safeWalSize: bigint | null;
  currentLsn: Lsn;
}

export async function inspectSlot(db: Queryable, name: string): Promise<SlotInfo | null> {
  const { rows } = await db.query<{
    slot_name: string;
    plugin: string | null;
    database: string | null;
    active: boolean;
    active_pid: number | null;
    restart_lsn: string | null;
    confirmed_flush_lsn: string | null;
    wal_status: string | null;
    safe_wal_size: string | null;
    current_lsn: string;
  }>(
    `SELECT slot_name, plugin, database, active, active_pid, restart_lsn::text, confirmed_flush_lsn::text,
            wal_status, safe_wal_size::text, pg_current_wal_lsn()::text AS current_lsn
       FROM pg_replication_slots WHERE slot_name = $1`,
    [name],
  );
  const r = rows[0];
  if (!r) return null;
  return {
    name: r.slot_name,
    plugin: r.plugin,
    database: r.database,
    active: r.active,
    activePid: r.active_pid,
    restartLsn: parseLsnOrNull(r.restart_lsn),
    confirmedFlushLsn: parseLsnOrNull(r.confirmed_flush_lsn),
    walStatus: r.wal_status,
    safeWalSize: r.safe_wal_size === null ? null : BigInt(r.safe_wal_size),
    currentLsn: parseLsn(r.current_lsn),
  };
}

export async function createSlot(db: Queryable, name: string): Promise<Lsn> {
  const { rows } = await db.query<{ lsn: string }>(
    `SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')`,
    [name],
  );
  return parseLsn((rows[0] as { lsn: string }).lsn);
}

/** Drops the slot; refuses (retriably) while another process streams from it. */
export async function dropSlot(db: Queryable, name: string): Promise<void> {
  const info = await inspectSlot(db, name);
  if (!info) return;
  if (info.active)
    throw new SlotInUseError(
      `replication slot ${name} is active for PID ${info.activePid}; not dropping it`,
    );
  await db.query('SELECT pg_drop_replication_slot($1)', [name]);
}

export interface ExportedSnapshot {
  /** The replication connection that must stay open, and idle, while the snapshot is used. */
  connection: pg.Client;
  consistentPoint: Lsn;
  snapshotName: string;
}

/**
 * Creates the slot on a replication connection and exports its snapshot: rows
 * read in that snapshot plus the changes streamed from the consistent point
 * are exactly the table's history, with nothing lost or doubled. A temporary
 * slot (a deployment switch's) only serves the snapshot and its consistent
 * point, and goes when its connection ends.
 */
export async function createSlotWithSnapshot(
  url: string,
  name: string,
  opts: { temporary?: boolean } = {},
): Promise<ExportedSnapshot> {
  const connection = new pg.Client({
    connectionString: url,
    replication: 'database',
    application_name: 'slotline-snapshot',
  } as pg.ClientConfig);
  // The server ending it (a restart) fails the copy that uses the snapshot; no crash.
  connection.on('error', () => undefined);
  await connection.connect();
  try {
    // The slot name was validated by the config schema ([a-z0-9_]); quoting keeps it literal.
    const { rows } = await connection.query<{ consistent_point: string; snapshot_name: string }>(
      `CREATE_REPLICATION_SLOT "${name}"${opts.temporary ? ' TEMPORARY' : ''} LOGICAL pgoutput EXPORT_SNAPSHOT`,
    );
    const r = rows[0];
    if (!r?.snapshot_name) throw new Error('CREATE_REPLICATION_SLOT returned no snapshot');
    return {
      connection,
      consistentPoint: parseLsn(r.consistent_point),
      snapshotName: r.snapshot_name,
    };
  } catch (err) {
    await connection.end().catch(() => undefined);
    throw err;
  }
}

/** A slot of that name exists, but the sink has no checkpoint for it: someone else's. */
export function foreignSlot(slot: string, why?: string): SlotlineError {
  return new SlotlineError(
    'slot_foreign',
    `source: replication slot ${slot} exists but ${why ?? "the sink has no checkpoint for it, so it is not slotline's (or the sink was reset)"}`,
    {
      remedy: {
        side: 'source',
        variable: 'SLOTLINE_SLOT',
        fix: "choose another SLOTLINE_SLOT, or, if it is slotline's, run `slotline setup --resnapshot` to start it over with a fresh snapshot",
      },
    },
  );
}

export function slotGone(slot: string, lsn: string): SlotMissingError {
  return new SlotMissingError(
    `source: replication slot ${slot} no longer exists (dropped by someone, or the server was rebuilt); changes after ${lsn} cannot be replayed from it`,
  );
}

export function slotLost(slot: string): SlotInvalidatedError {
  return new SlotInvalidatedError(
    `source: replication slot ${slot} was invalidated (wal_status 'lost': it fell further behind than max_slot_wal_keep_size allows); the WAL it needed is gone`,
  );
}
