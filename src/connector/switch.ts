import type pg from 'pg';
import { type Lsn, formatLsn } from '../checkpoint/lsn.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Batch } from '../sinks/batch.js';
import { InflightQueue } from '../sinks/inflight.js';
import type { Sink } from '../sinks/sink.js';
import { TimescaleSink } from '../sinks/timescale.js';
import type { SinkSwitch, SwitchCounts } from '../sinks/timescale-switch.js';
import { assertPassed } from '../check/result.js';
import { checkTables } from '../source/checks.js';
import { identifySystem } from '../source/identity.js';
import { movePublication } from '../source/ponder.js';
import { createSlotWithSnapshot } from '../source/slot.js';
import { copySnapshot } from '../source/snapshot.js';
import { PoolCache } from '../trades/pools.js';
import { ChangeRouter } from '../trades/router.js';

export interface SwitchDeps {
  cfg: Config;
  source: pg.Pool;
  /** Every enabled sink, opened, TimescaleDB first. */
  sinks: readonly Sink[];
  /** Aborted on shutdown. */
  signal: AbortSignal;
  log: Logger;
}

export interface SwitchOutcome {
  from: string | null;
  to: string;
  /** Where streaming resumes: the switch snapshot's consistent point. */
  lsn: Lsn;
  generation: number;
  /** The new deployment's pools, for the stream's symbols. */
  pools: PoolCache;
  copied: Record<string, number>;
  counts: SwitchCounts;
  ms: number;
}

/**
 * Moves the sink from one Ponder deployment to another while no replication
 * session runs (between two, or before the first):
 *
 * 1. the new tables are checked, then the publication moves to them: from
 *    that point on, every change committed to them is published;
 * 2. a temporary slot exports a snapshot; its consistent point C comes after
 *    the commit of every transaction running when it was made, so after the
 *    move too. Rows committed before C are in the snapshot, and the main slot,
 *    streamed from C afterwards, skips exactly those transactions (as after
 *    the initial snapshot, src/source/snapshot.ts): nothing lost or doubled;
 * 3. the new tables are copied in that snapshot through their own router and
 *    bounded queue, into the sink's switch transaction (staged) and into the
 *    other sinks (Kafka: read events, as an initial snapshot sends);
 * 4. the sink reconciles and commits in one transaction (timescale-switch.ts):
 *    the checkpoint is C, in a new source generation, with the new schema.
 *
 * Whatever fails before that commit, the sink still holds the old deployment
 * whole, and the switch is tried again. Returns null when stopped meanwhile.
 */
export async function switchDeployment(
  d: SwitchDeps,
  from: string | null,
  to: string,
): Promise<SwitchOutcome | null> {
  const [primary, ...others] = d.sinks;
  if (!(primary instanceof TimescaleSink)) throw new Error('the first sink must be TimescaleDB');
  const t0 = Date.now();
  const { cfg, log } = d;
  assertPassed(await checkTables(d.source, to));
  const how = await movePublication(d.source, cfg.publication, to, log);
  const { walEnd: _walEnd, ...identity } = await identifySystem(cfg.sourceUrl);
  const exported = await createSlotWithSnapshot(cfg.sourceUrl, switchSlotName(cfg.slot), {
    temporary: true,
  });
  try {
    const lsn = exported.consistentPoint;
    const prepared = Date.now() - t0;
    log.info(
      { from, to, lsn: formatLsn(lsn), publication: how, ms: prepared },
      'deployment switch: copying',
    );
    const stage = await primary.beginSwitch();
    let failed: unknown;
    // The other sinks' records of the copy already name the new deployment.
    for (const s of others) s.followSchema?.(to);
    try {
      const copy = await copyDeployment(d, {
        to,
        lsn,
        snapshot: exported.snapshotName,
        stage,
        others,
      });
      if (copy === null) {
        await stage.abort();
        return null;
      }
      const copiedAt = Date.now();
      // The others first: the primary's commit is what marks the switch done.
      for (const s of others) await s.completeSnapshot(lsn, { sweep: false });
      const counts = await stage.commit({ schema: to, lsn, identity }, from);
      log.info(
        {
          prepareMs: prepared,
          copyMs: copiedAt - t0 - prepared,
          reconcileMs: Date.now() - copiedAt,
        },
        'deployment switch: committed',
      );
      return {
        from,
        to,
        lsn,
        generation: stage.generation,
        pools: copy.pools,
        copied: copy.copied,
        counts,
        ms: Date.now() - t0,
      };
    } catch (err) {
      failed = err;
      await stage.abort();
      for (const s of others) s.followSchema?.(from ?? to);
      throw err;
    } finally {
      stage.release(failed);
    }
  } finally {
    // Ends the temporary slot with its connection.
    await exported.connection.end().catch(() => undefined);
  }
}

/** The temporary slot's name: the main slot's, shortened to leave room for the suffix. */
export function switchSlotName(slot: string): string {
  return `${slot.slice(0, 63 - '_switch'.length)}_switch`;
}

interface CopyPlan {
  to: string;
  lsn: Lsn;
  snapshot: string;
  stage: SinkSwitch;
  others: readonly Sink[];
}

/**
 * The new deployment's tables, copied in the snapshot into the switch's own
 * bounded queue, which the staged sink transaction and the other sinks drain.
 * Memory stays bounded by SLOTLINE_INFLIGHT_MAX_* as in the initial snapshot.
 */
async function copyDeployment(
  d: SwitchDeps,
  p: CopyPlan,
): Promise<{ pools: PoolCache; copied: Record<string, number> } | null> {
  const { cfg } = d;
  const pools = new PoolCache(cfg.poolJoinColumn);
  const writers: [string, (b: Batch) => Promise<void>][] = [
    ['switch', (b) => p.stage.write(b)],
    ...p.others.map((s): [string, (b: Batch) => Promise<void>] => [s.name, (b) => s.write(b)]),
  ];
  const queue = new InflightQueue(
    {
      batchMaxRows: cfg.batchMaxRows,
      maxRows: cfg.inflightMaxRows,
      maxBytes: cfg.inflightMaxBytes,
    },
    writers.map(([name]) => name),
  );
  const router = new ChangeRouter(
    queue,
    pools,
    { sourceSchema: p.to, applyTruncate: true, idleAckIntervalMs: 0, maxRowBytes: cfg.maxRowBytes },
    d.log.child({ component: 'switch-router' }),
  );
  const stop = new AbortController();
  const signal = AbortSignal.any([d.signal, stop.signal]);
  const drained = writers.map(([name, write]) => drain(queue, name, write, stop.signal));
  // A writer that fails ends the copy; one that returns has been stopped.
  const failure = Promise.race(
    drained.map((w) => w.then(() => new Promise<never>(() => undefined))),
  );
  try {
    const copying = copySnapshot({
      url: cfg.sourceUrl,
      snapshotName: p.snapshot,
      lsn: p.lsn,
      schema: p.to,
      router,
      queue,
      signal,
      log: d.log,
    });
    copying.catch(() => undefined);
    const copied = await Promise.race([copying, failure]);
    await Promise.race([queue.flushAll(), failure]);
    return d.signal.aborted ? null : { pools, copied };
  } finally {
    stop.abort();
    await Promise.allSettled(drained);
  }
}

async function drain(
  queue: InflightQueue,
  name: string,
  write: (b: Batch) => Promise<void>,
  signal: AbortSignal,
): Promise<void> {
  for (;;) {
    const batch = await queue.next(name, signal);
    if (!batch) return;
    await write(batch);
    queue.release(name, batch);
  }
}
