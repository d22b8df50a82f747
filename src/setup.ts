import pg from 'pg';
import { readCheckpoint, setCheckpointState } from './checkpoint/store.js';
import { formatLsn } from './checkpoint/lsn.js';
import type { Config } from './config.js';
import { SlotInvalidatedError, SlotMissingError, SlotlineError } from './errors.js';
import type { Logger } from './log.js';
import { applySinkSchema } from './sinks/schema.js';
import { TIMESCALE_SINK } from './sinks/timescale.js';
import { checkSource, ensurePublication, verifyPublication } from './source/checks.js';
import { checkFollowGrants, resolveViews } from './source/ponder.js';
import { createSlot, dropSlot, inspectSlot } from './source/slot.js';

export interface SetupOptions {
  /** Also create the publication and the slot (the `setup` command); false: only verify. */
  create: boolean;
  /** Start over with a new slot and a fresh snapshot (recovery from a lost slot). */
  resnapshot?: boolean;
}

export interface SetupReport {
  timescale: string | null;
  slot: 'created' | 'exists' | 'recreated_for_snapshot' | 'absent';
}

/**
 * `slotline setup`, idempotent: checks the source, applies the sink schema,
 * creates the publication and the slot. The slot's checkpoint row is written
 * first (state pending_snapshot), so a slot slotline made is always told apart
 * from someone else's.
 */
export async function runSetup(cfg: Config, log: Logger, opts: SetupOptions): Promise<SetupReport> {
  const { timescale } = await applySinkSchema({ url: cfg.sinkUrl, schema: cfg.sinkSchema, log });
  const source = new pg.Client({
    connectionString: cfg.sourceUrl,
    application_name: 'slotline-setup',
  });
  const sink = new pg.Client({ connectionString: cfg.sinkUrl, application_name: 'slotline-setup' });
  await source.connect();
  try {
    await sink.connect();
    const follow = cfg.ponderViewsSchema !== null;
    const schema = follow ? await liveDeployment(source, cfg) : cfg.sourceSchema;
    const checks = { schema, publication: cfg.publication, follow };
    await checkSource(source, checks);
    if (follow) await checkFollowGrants(source, schema, cfg.publication);
    if (opts.create) await ensurePublication(source, checks, log);
    else await verifyPublication(source, checks);

    const slot = await inspectSlot(source, cfg.slot);
    const ck = await readCheckpoint(sink, cfg.slot, TIMESCALE_SINK);
    if (opts.resnapshot) {
      if (slot) await dropSlot(source, cfg.slot);
      await setCheckpointState(sink, cfg.slot, TIMESCALE_SINK, 'pending_snapshot', null, null);
      log.warn({ slot: cfg.slot }, 'resnapshot: slot dropped; the next run takes a new snapshot');
      if (!opts.create) return { timescale, slot: 'absent' };
      await createSlot(source, cfg.slot);
      return { timescale, slot: 'recreated_for_snapshot' };
    }
    if (slot) {
      if (!ck) throw foreignSlot(cfg.slot);
      if (slot.walStatus === 'lost') throw slotLost(cfg.slot);
      return { timescale, slot: 'exists' };
    }
    if (ck?.state === 'streaming')
      throw slotGone(cfg.slot, ck.lsn === null ? '?' : formatLsn(ck.lsn));
    if (!opts.create) return { timescale, slot: 'absent' };
    await setCheckpointState(sink, cfg.slot, TIMESCALE_SINK, 'pending_snapshot', null, null);
    const lsn = await createSlot(source, cfg.slot);
    log.info({ slot: cfg.slot, lsn: formatLsn(lsn) }, 'replication slot created');
    return { timescale, slot: 'created' };
  } finally {
    await source.end().catch(() => undefined);
    await sink.end().catch(() => undefined);
  }
}

/**
 * Follow mode: the ready deployment the views point at, which setup checks
 * (it is what will be streamed) and a new publication covers. Before Ponder
 * has made one ready, a retriable wait.
 */
export async function liveDeployment(db: pg.Client | pg.Pool, cfg: Config): Promise<string> {
  const views = cfg.ponderViewsSchema as string;
  const target = await resolveViews(db, views);
  if (target.kind === 'deployment' && target.ready) return target.schema;
  const why =
    target.kind === 'unresolved'
      ? target.reason
      : `the views point at ${target.schema}, whose _ponder_meta does not say is_ready = 1 yet`;
  return Promise.reject(
    new SlotlineError('ponder_not_ready', `source: waiting for Ponder: ${why}`, {
      retriable: true,
    }),
  );
}

export function foreignSlot(slot: string): SlotlineError {
  return new SlotlineError(
    'slot_foreign',
    `source: replication slot ${slot} exists but the sink has no checkpoint for it, so it is not slotline's (or the sink was reset). ` +
      `Fix: choose another SLOTLINE_SLOT, or, if it is slotline's, run \`slotline setup --resnapshot\` to start it over with a fresh snapshot`,
  );
}

export function slotGone(slot: string, lsn: string): SlotMissingError {
  return new SlotMissingError(
    `source: replication slot ${slot} no longer exists (dropped by someone, or the server was rebuilt); changes after ${lsn} cannot be replayed from it. ` +
      'Recovery: run `slotline setup --resnapshot` (new slot, fresh snapshot; sink rows that no longer exist at the source are removed), then `slotline run`',
  );
}

export function slotLost(slot: string): SlotInvalidatedError {
  return new SlotInvalidatedError(
    `source: replication slot ${slot} was invalidated (wal_status 'lost': it fell further behind than max_slot_wal_keep_size allows); the WAL it needed is gone. ` +
      'Recovery: run `slotline setup --resnapshot` (new slot, fresh snapshot), then `slotline run`',
  );
}
