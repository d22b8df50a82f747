import pg from 'pg';
import type { SourceIdentity } from '../checkpoint/store.js';
import { SourceChangedError } from '../errors.js';
import type { Logger } from '../log.js';

/**
 * The source server's identity: IDENTIFY_SYSTEM on a replication connection
 * (https://www.postgresql.org/docs/15/protocol-replication.html) gives the
 * system identifier of its data directory (set by initdb, kept by physical
 * standbys and restored backups) and its current timeline, with no privilege
 * beyond REPLICATION, which the connector needs anyway.
 */
export async function identifySystem(url: string): Promise<SourceIdentity> {
  const client = new pg.Client({
    connectionString: url,
    replication: 'database',
    application_name: 'slotline-identify',
  } as pg.ClientConfig);
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rows } = await client.query<{ systemid: string; timeline: string | number }>(
      'IDENTIFY_SYSTEM',
    );
    const r = rows[0];
    if (!r) throw new Error('IDENTIFY_SYSTEM returned no row');
    return { systemId: String(r.systemid), timeline: Number(r.timeline) };
  } finally {
    await client.end().catch(() => undefined);
  }
}

export type IdentityVerdict = 'same' | 'unrecorded' | 'new_timeline' | 'other_server';

/**
 * Another system identifier is another server (Ponder re-indexed into a new
 * database, a restore into a fresh cluster): its LSNs mean nothing against the
 * sink's rows. The same system on another timeline is a promoted physical
 * standby or a point-in-time restore of the same history: its LSNs continue
 * the recorded ones, and the slot (which PostgreSQL 15 does not carry to a
 * standby or a restore) decides whether streaming can go on.
 */
export function judgeIdentity(
  recorded: SourceIdentity | null,
  current: SourceIdentity,
): IdentityVerdict {
  if (recorded === null) return 'unrecorded';
  if (recorded.systemId !== current.systemId) return 'other_server';
  return recorded.timeline === current.timeline ? 'same' : 'new_timeline';
}

export function sourceChanged(
  slot: string,
  recorded: SourceIdentity,
  current: SourceIdentity,
): SourceChangedError {
  return new SourceChangedError(
    `source: SLOTLINE_SOURCE_URL is another server (system identifier ${current.systemId}) than the one the sink's ` +
      `rows for slot ${slot} came from (${recorded.systemId}): its positions cannot be compared with theirs, so nothing ` +
      'was streamed. If the source was rebuilt on purpose, run `slotline setup --resnapshot` (a new snapshot replaces ' +
      'the sink contents with the new source), then `slotline run`; otherwise fix SLOTLINE_SOURCE_URL',
  );
}

/**
 * Before streaming from a checkpoint: refuses another server, records the
 * identity on first use (an install from before it was recorded) and a new
 * timeline of the same server. `record` writes it with the checkpoint.
 */
export async function verifySourceIdentity(opts: {
  url: string;
  slot: string;
  recorded: SourceIdentity | null;
  record: (current: SourceIdentity) => Promise<void>;
  log: Logger;
}): Promise<SourceIdentity> {
  const current = await identifySystem(opts.url);
  const verdict = judgeIdentity(opts.recorded, current);
  if (verdict === 'other_server') throw sourceChanged(opts.slot, opts.recorded!, current);
  if (verdict === 'new_timeline')
    opts.log.warn(
      { from: opts.recorded?.timeline, to: current.timeline, systemId: current.systemId },
      'source: same server on a new timeline (a promoted standby or a restore); its positions continue the recorded ones',
    );
  if (verdict !== 'same') await opts.record(current);
  return current;
}
