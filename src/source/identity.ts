import pg from 'pg';
import { type Lsn, formatLsn, parseLsn } from '../checkpoint/lsn.js';
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
export async function identifySystem(url: string): Promise<SourceIdentity & { walEnd: Lsn }> {
  const client = new pg.Client({
    connectionString: url,
    replication: 'database',
    application_name: 'slotline-identify',
  } as pg.ClientConfig);
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rows } = await client.query<{
      systemid: string;
      timeline: string | number;
      xlogpos: string;
    }>('IDENTIFY_SYSTEM');
    const r = rows[0];
    if (!r) throw new Error('IDENTIFY_SYSTEM returned no row');
    return {
      systemId: String(r.systemid),
      timeline: Number(r.timeline),
      walEnd: parseLsn(r.xlogpos),
    };
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
 * The same server whose WAL ends before the sink's checkpoint lost history the
 * sink holds (restored from a volume snapshot, say): what it writes next would
 * reuse positions the connector has already passed, and be skipped.
 */
export function sourceRewound(slot: string, walEnd: Lsn, checkpoint: Lsn): SourceChangedError {
  return new SourceChangedError(
    `source: the server's WAL ends at ${formatLsn(walEnd)}, before the sink's checkpoint ${formatLsn(checkpoint)} for ` +
      `slot ${slot}: it was restored to an earlier point, and changes it writes now would be skipped. ` +
      'Run `slotline setup --resnapshot` (a new snapshot of the source as it is), then `slotline run`',
  );
}

/**
 * Before streaming from a checkpoint: refuses another server, or the same one
 * rewound behind the checkpoint; records the identity on first use (an
 * install from before it was recorded) and a new timeline of the same
 * server. `record` writes it with the checkpoint.
 */
export async function verifySourceIdentity(opts: {
  url: string;
  slot: string;
  recorded: SourceIdentity | null;
  checkpoint: Lsn | null;
  record: (current: SourceIdentity) => Promise<void>;
  log: Logger;
}): Promise<SourceIdentity> {
  const { walEnd, ...current } = await identifySystem(opts.url);
  const verdict = judgeIdentity(opts.recorded, current);
  if (verdict === 'other_server' && opts.recorded)
    throw sourceChanged(opts.slot, opts.recorded, current);
  if (opts.checkpoint !== null && walEnd < opts.checkpoint)
    throw sourceRewound(opts.slot, walEnd, opts.checkpoint);
  if (verdict === 'new_timeline')
    opts.log.warn(
      { from: opts.recorded?.timeline, to: current.timeline, systemId: current.systemId },
      'source: same server on a new timeline (a promoted standby or a restore); its positions continue the recorded ones',
    );
  if (verdict !== 'same') await opts.record(current);
  return current;
}
