import pg from 'pg';
import { setCheckpointState } from './checkpoint/store.js';
import { formatLsn } from './checkpoint/lsn.js';
import type { Config } from './config.js';
import { assertPassed } from './check/result.js';
import { preflight } from './check/preflight.js';
import { classifyError } from './errors.js';
import type { Logger } from './log.js';
import { applySinkSchema } from './sinks/schema.js';
import { TIMESCALE_SINK } from './sinks/timescale.js';
import { ensurePublication } from './source/checks.js';
import { liveDeployment } from './source/ponder.js';
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
 * `slotline setup`, idempotent: first every check of both databases (the
 * same as `slotline check`), and nothing is changed while one fails; then the
 * sink schema, the publication and the slot. The slot's checkpoint row is
 * written first (state pending_snapshot), so a slot slotline made is always
 * told apart from someone else's.
 */
export async function runSetup(cfg: Config, log: Logger, opts: SetupOptions): Promise<SetupReport> {
  const checks = await preflight(cfg, {
    create: opts.create,
    resnapshot: opts.resnapshot ?? false,
  });
  for (const c of checks)
    if (c.status === 'warn') log.warn({ code: c.error.code, check: c.name }, c.error.message);
  assertPassed(checks);

  const { timescale } = await at('sink', () =>
    applySinkSchema({
      url: cfg.sinkUrl,
      schema: cfg.sinkSchema,
      columnstoreAfterSeconds: cfg.columnstoreAfterSeconds,
      log,
    }),
  );
  const source = new pg.Client({
    connectionString: cfg.sourceUrl,
    application_name: 'slotline-setup',
  });
  const sink = new pg.Client({ connectionString: cfg.sinkUrl, application_name: 'slotline-setup' });
  try {
    await at('source', () => source.connect());
    await at('sink', () => sink.connect());
    // Follow mode: the deployment the views point at (the preflight checked it).
    const follow = cfg.ponderViewsSchema !== null;
    const schema = follow
      ? await at('source', () => liveDeployment(source, cfg))
      : cfg.sourceSchema;
    const pub = { schema, publication: cfg.publication, follow };
    if (opts.create) await at('source', () => ensurePublication(source, pub, log));
    // Source steps; the sink's checkpoint writes inside map their own errors first.
    return await at('source', () => setupSlot(cfg, source, sink, opts, timescale, log));
  } finally {
    await source.end().catch(() => undefined);
    await sink.end().catch(() => undefined);
  }
}

/** The slot, once the checks passed: kept, made, or (resnapshot) made anew. */
async function setupSlot(
  cfg: Config,
  source: pg.Client,
  sink: pg.Client,
  opts: SetupOptions,
  timescale: string | null,
  log: Logger,
): Promise<SetupReport> {
  const slot = await inspectSlot(source, cfg.slot);
  if (opts.resnapshot) {
    if (slot) await dropSlot(source, cfg.slot);
    await at('sink', () => pending(sink, cfg.slot));
    log.warn({ slot: cfg.slot }, 'resnapshot: slot dropped; the next run takes a new snapshot');
    if (!opts.create) return { timescale, slot: 'absent' };
    await createSlot(source, cfg.slot);
    return { timescale, slot: 'recreated_for_snapshot' };
  }
  if (slot) return { timescale, slot: 'exists' };
  if (!opts.create) return { timescale, slot: 'absent' };
  await at('sink', () => pending(sink, cfg.slot));
  const lsn = await createSlot(source, cfg.slot);
  log.info({ slot: cfg.slot, lsn: formatLsn(lsn) }, 'replication slot created');
  return { timescale, slot: 'created' };
}

/** Written before the slot is made: a slot with this row is slotline's. */
function pending(sink: pg.Client, slot: string): Promise<void> {
  return setCheckpointState(sink, slot, TIMESCALE_SINK, 'pending_snapshot', null, null);
}

/** Runs one step against a database; what it throws is mapped at that boundary. */
async function at<T>(side: 'source' | 'sink', step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    throw classifyError(err, side);
  }
}
