/**
 * What callers without the admin token (/readyz, /status, /api/sync/stats) see
 * of an error: its code and, for the errors an operator acts on, what to do.
 * The full message can name hosts, ports, roles and SQL (`connect ECONNREFUSED
 * 10.0.3.7:5432`); it stays in the log and behind the token.
 */
const RESNAPSHOT =
  'Recovery: run `slotline setup --resnapshot` (new slot, fresh snapshot), then `slotline run`';

const HINTS: Record<string, string> = {
  connection: 'a database connection failed; retrying',
  auth_failed: 'a database refused the credentials; update them (the Secret), then restart',
  slot_in_use: 'another process streams from the slot; retrying',
  slot_missing: `the replication slot is missing. ${RESNAPSHOT}`,
  slot_invalidated: `the replication slot lost WAL it needed (max_slot_wal_keep_size). ${RESNAPSHOT}`,
  slot_foreign:
    "the replication slot is not slotline's: choose another SLOTLINE_SLOT, or run `slotline setup --resnapshot`",
  publication_missing:
    'the publication was dropped. Fix: recreate it (`slotline setup`), then run `slotline setup --resnapshot`',
  source_changed: `the source is another server than the one the sink's history came from. ${RESNAPSHOT}`,
  sink_schema_mismatch: "the sink's tables are not what slotline writes; run `slotline setup`",
  leadership_lost: 'another replica leads now',
};

const DETAILS = 'details in the log, or in /status with the admin token';

/** The error as shown without the token: `code: what to do`; null for no error. */
export function publicError(code: string | null): string | null {
  if (code === null) return null;
  return `${code}: ${HINTS[code] ?? DETAILS}`;
}

/** A failure text (a backfill's, a verify's) as shown without the token. */
export function publicFailure(message: string | null): string | null {
  return message === null ? null : `failed (${DETAILS})`;
}
