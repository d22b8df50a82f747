import pg from 'pg';
import { type Lsn, formatLsn } from '../checkpoint/lsn.js';
import type { SourceIdentity } from '../checkpoint/store.js';
import type { Logger } from '../log.js';
import type { InflightQueue } from '../sinks/inflight.js';
import type { Sink } from '../sinks/sink.js';
import type { TimescaleSink } from '../sinks/timescale.js';
import type { PoolCache } from '../trades/pools.js';
import type { ChangeRouter } from '../trades/router.js';
import { POOLS_TABLE, TRADES_TABLE } from './checks.js';
import { connectionOf, CopyOutQuery } from './copy-both.js';
import { parseCopyTextRow } from './copy-text.js';
import { identifySystem } from './identity.js';
import { tableRelation } from './relation.js';
import { createSlot, createSlotWithSnapshot, dropSlot, inspectSlot } from './slot.js';
import { quoteIdent } from '../sql.js';

export interface SnapshotCopyOptions {
  url: string;
  /** Name exported by CREATE_REPLICATION_SLOT; valid while that connection stays idle. */
  snapshotName: string;
  /** The slot's consistent point: every copied row is stamped with it. */
  lsn: Lsn;
  schema: string;
  router: ChangeRouter;
  queue: InflightQueue;
  signal: AbortSignal;
  log: Logger;
}

/**
 * Copies the source tables as of the slot's exported snapshot with COPY … TO
 * STDOUT, through the same router and bounded queue as the stream: pools first
 * (so trades find their symbols), then trades. When the queue is full the
 * socket is paused, so any table size runs in bounded memory.
 */
export async function copySnapshot(opts: SnapshotCopyOptions): Promise<Record<string, number>> {
  const client = new pg.Client({
    connectionString: opts.url,
    application_name: 'slotline-snapshot-copy',
  });
  await client.connect();
  const counts: Record<string, number> = {};
  const abort = () => client.end().catch(() => undefined);
  opts.signal.addEventListener('abort', abort, { once: true });
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await client.query(`SET TRANSACTION SNAPSHOT '${opts.snapshotName.replace(/'/g, "''")}'`);
    for (const table of [POOLS_TABLE, TRADES_TABLE]) {
      counts[table] = await copyTable(client, table, opts);
      opts.log.info({ table, rows: counts[table] }, 'snapshot table copied');
    }
    await client.query('COMMIT');
    return counts;
  } finally {
    opts.signal.removeEventListener('abort', abort);
    await client.end().catch(() => undefined);
  }
}

async function copyTable(
  client: pg.Client,
  table: string,
  opts: SnapshotCopyOptions,
): Promise<number> {
  const relation = await tableRelation(client, opts.schema, table);
  const list = relation.columns.map((c) => quoteIdent(c.name)).join(', ');
  const conn = connectionOf(client);
  let rows = 0;
  let paused = false;
  const query = new CopyOutQuery(
    `COPY (SELECT ${list} FROM ${quoteIdent(opts.schema)}.${quoteIdent(table)}) TO STDOUT`,
    (chunk) => {
      opts.router.snapshotRow(relation, parseCopyTextRow(chunk), opts.lsn, chunk.length);
      rows += 1;
      if (!paused && opts.queue.full) {
        paused = true;
        conn.stream.pause();
        void opts.queue.drained().then(() => {
          paused = false;
          conn.stream.resume();
        });
      }
    },
  );
  client.query(query);
  await query.done;
  return rows;
}

export interface InitialSnapshotOptions {
  /** SLOTLINE_SOURCE_URL */
  url: string;
  slot: string;
  /** SLOTLINE_SOURCE_SCHEMA */
  schema: string;
  /** SLOTLINE_SNAPSHOT */
  mode: 'initial' | 'never';
  /** A pool of ordinary connections to the source. */
  source: pg.Pool;
  /** Every enabled sink, opened, with its epoch claimed; `primary` among them. */
  sinks: Sink[];
  primary: TimescaleSink;
  router: ChangeRouter;
  queue: InflightQueue;
  pools: PoolCache;
  /** Fills the pool cache when no snapshot copies the pools (the connector's loadPools). */
  loadPools: () => Promise<void>;
  signal: AbortSignal;
  log: Logger;
}

/**
 * A new source history for the sink (first start, or after `setup
 * --resnapshot`): a new generation, then either a new slot with an exported
 * snapshot whose rows are copied, and every sink row the copy did not rewrite
 * removed; or, with SLOTLINE_SNAPSHOT=never, streaming only, where the sink
 * keeps what it holds (nothing was read to compare it with) and the slot
 * `setup` made is kept, so the changes since then are streamed. Returns the
 * LSN streaming starts at, or null when stopped meanwhile.
 */
export async function takeInitialSnapshot(o: InitialSnapshotOptions): Promise<Lsn | null> {
  const identity = await identifySystem(o.url);
  if (o.mode === 'never') return startWithoutSnapshot(o, identity);
  // A slot made by `setup` (or by an interrupted snapshot) has no usable snapshot any more.
  await dropSlot(o.source, o.slot);
  const gen = await o.primary.beginGeneration(identity, o.schema);
  const exported = await createSlotWithSnapshot(o.url, o.slot);
  try {
    const lsn = exported.consistentPoint;
    o.log.info({ lsn: formatLsn(lsn), generation: gen }, 'initial snapshot started');
    o.pools.clear();
    const t0 = Date.now();
    const counts = await copySnapshot({
      url: o.url,
      snapshotName: exported.snapshotName,
      lsn,
      schema: o.schema,
      router: o.router,
      queue: o.queue,
      signal: o.signal,
      log: o.log,
    });
    await o.queue.flushAll();
    if (o.signal.aborted) return null;
    await completeAll(o, lsn, true);
    o.log.info(
      { lsn: formatLsn(lsn), ...counts, ms: Date.now() - t0 },
      'initial snapshot complete',
    );
    return lsn;
  } finally {
    await exported.connection.end().catch(() => undefined);
  }
}

async function startWithoutSnapshot(
  o: InitialSnapshotOptions,
  identity: SourceIdentity,
): Promise<Lsn> {
  const ck = await o.primary.checkpoint();
  const slot = await inspectSlot(o.source, o.slot);
  let lsn: Lsn;
  if (slot && ck && ck.state !== 'streaming' && slot.confirmedFlushLsn !== null) {
    // Made by `setup` (or by an interrupted first start): it holds every change since.
    lsn = slot.confirmedFlushLsn;
  } else {
    await dropSlot(o.source, o.slot);
    lsn = await createSlot(o.source, o.slot);
  }
  const gen = await o.primary.beginGeneration(identity, o.schema);
  await o.loadPools();
  await completeAll(o, lsn, false);
  o.log.info(
    { lsn: formatLsn(lsn), generation: gen },
    'streaming without a snapshot (SLOTLINE_SNAPSHOT=never): the sink keeps what it held',
  );
  return lsn;
}

/** The other sinks first: the primary's 'streaming' state is what marks the snapshot done. */
async function completeAll(o: InitialSnapshotOptions, lsn: Lsn, sweep: boolean): Promise<void> {
  for (const s of o.sinks) if (s !== o.primary) await s.completeSnapshot(lsn, { sweep });
  await o.primary.completeSnapshot(lsn, { sweep });
}
