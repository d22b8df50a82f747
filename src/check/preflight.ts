import pg from 'pg';
import type { Config } from '../config.js';
import { classifyError } from '../errors.js';
import { checkSink } from '../sinks/checks.js';
import { TIMESCALE_SINK } from '../sinks/timescale.js';
import { checkSource } from '../source/checks.js';
import { checkFollowGrants, liveDeployment } from '../source/ponder.js';
import { foreignSlot, inspectSlot, slotGone, slotLost } from '../source/slot.js';
import { attempt, failed, ok, type CheckResult } from './result.js';

export interface PreflightOptions {
  /** Setup will create a missing publication and slot; false: the publication must exist. */
  create: boolean;
  /** `setup --resnapshot`: the slot is dropped and made anew, whatever its state. */
  resnapshot: boolean;
}

type Queryable = Pick<pg.ClientBase, 'query'>;

/**
 * Every check of both databases, reading only: `setup` runs it before it
 * changes anything and refuses while a check fails; `slotline check` prints
 * it. A database that cannot be reached fails its `connect` check, and its
 * other checks are not run.
 */
export async function preflight(cfg: Config, opts: PreflightOptions): Promise<CheckResult[]> {
  const source = await connect(cfg.sourceUrl, 'source');
  const sink = await connect(cfg.sinkUrl, 'sink');
  try {
    const out: CheckResult[] = [source.result];
    if (source.client) out.push(...(await sourceChecks(source.client, cfg, opts)));
    out.push(sink.result);
    if (sink.client) out.push(...(await checkSink(sink.client, cfg.sinkSchema)));
    const [s, k] = [source.client, sink.client];
    if (s && k) out.push(await attempt('slot', () => checkSlot(s, k, cfg.slot, opts)));
    return out;
  } finally {
    await source.client?.end().catch(() => undefined);
    await sink.client?.end().catch(() => undefined);
  }
}

/**
 * The source's checks. In follow mode (SLOTLINE_PONDER_VIEWS_SCHEMA) they are
 * of the ready deployment the views point at, and the role must be able to
 * follow the next one; before Ponder made one ready, the tables and the
 * publication are not checked (ponder_views fails, retriable).
 */
async function sourceChecks(
  db: Queryable,
  cfg: Config,
  opts: PreflightOptions,
): Promise<CheckResult[]> {
  const base = { publication: cfg.publication, slot: cfg.slot, create: opts.create };
  const views = cfg.ponderViewsSchema;
  if (views === null) return checkSource(db, { ...base, schema: cfg.sourceSchema });
  let schema: string | null = null;
  const live = await attempt('ponder_views', async () => {
    schema = await liveDeployment(db, cfg);
    return ok('source', 'ponder_views', `${views} points at ${schema}, which is ready`);
  });
  const followed: string | null = schema;
  const out = [live, ...(await checkSource(db, { ...base, schema: followed, follow: true }))];
  if (followed !== null)
    out.push(
      await attempt('ponder_follow_grants', async () =>
        ok(
          'source',
          'ponder_follow_grants',
          await checkFollowGrants(db, followed, cfg.publication),
        ),
      ),
    );
  return out;
}

/** A connection for the checks, or the failed `connect` check saying why there is none. */
async function connect(
  url: string,
  side: 'source' | 'sink',
): Promise<{ client: pg.Client | null; result: CheckResult }> {
  const client = new pg.Client({ connectionString: url, application_name: 'slotline-check' });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const r = await client.query<{ version: string; role: string; db: string }>(
      `SELECT current_setting('server_version') AS version, current_user AS role, current_database() AS db`,
    );
    const v = r.rows[0];
    return {
      client,
      result: ok(
        side,
        'connect',
        `PostgreSQL ${v?.version ?? '?'}, database ${v?.db ?? '?'} as ${v?.role ?? '?'}`,
      ),
    };
  } catch (err) {
    await client.end().catch(() => undefined);
    return { client: null, result: failed('connect', classifyError(err, side), side) };
  }
}

/**
 * The slot and the sink's checkpoint agree: a slot slotline made has a
 * checkpoint row (written before the slot), a streaming checkpoint has its
 * slot, and the slot still has its WAL.
 */
async function checkSlot(
  source: Queryable,
  sink: Queryable,
  name: string,
  opts: PreflightOptions,
): Promise<CheckResult> {
  const slot = await inspectSlot(source, name);
  const ck = await checkpointOf(sink, name);
  if (opts.resnapshot)
    return ok(
      'source',
      'slot',
      `${name}: setup --resnapshot ${slot ? 'drops it and ' : ''}makes it anew`,
    );
  if (slot) {
    const db = (await source.query<{ db: string }>('SELECT current_database() AS db')).rows[0]?.db;
    if (slot.database !== db || slot.plugin !== 'pgoutput')
      return failed(
        'slot',
        foreignSlot(
          name,
          `it is another consumer's: a ${slot.plugin ?? 'physical'} slot of database ${slot.database ?? '(none)'}`,
        ),
      );
    if (!ck) return failed('slot', foreignSlot(name));
    if (slot.walStatus === 'lost') return failed('slot', slotLost(name));
    const behind =
      slot.confirmedFlushLsn === null ? '?' : String(slot.currentLsn - slot.confirmedFlushLsn);
    return ok(
      'source',
      'slot',
      `${name} exists (wal_status ${slot.walStatus ?? '?'}, ${behind} bytes behind${slot.active ? `, streamed by pid ${slot.activePid}` : ''})`,
    );
  }
  if (ck?.state === 'streaming') return failed('slot', slotGone(name, ck.lsn ?? '?'));
  return ok('source', 'slot', `${name} does not exist yet: setup creates it`);
}

/** The TimescaleDB sink's checkpoint of the slot; null before setup made the table. */
async function checkpointOf(
  sink: Queryable,
  slot: string,
): Promise<{ state: string; lsn: string | null } | null> {
  const t = await sink.query<{ present: boolean }>(
    `SELECT to_regclass('slotline.checkpoints') IS NOT NULL AS present`,
  );
  if (!t.rows[0]?.present) return null;
  const r = await sink.query<{ state: string; lsn: string | null }>(
    'SELECT state, lsn::text FROM slotline.checkpoints WHERE slot = $1 AND sink = $2',
    [slot, TIMESCALE_SINK],
  );
  return r.rows[0] ?? null;
}
