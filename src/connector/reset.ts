import type pg from 'pg';
import type { ResetOutcome } from '../admin/port.js';
import { formatLsn, minLsn } from '../checkpoint/lsn.js';
import { planLsnReset } from '../checkpoint/reset-plan.js';
import { readCheckpoints } from '../checkpoint/store.js';
import { Conflict } from '../errors.js';
import type { Logger } from '../log.js';
import { sleep } from '../retry.js';
import { inspectSlot, type SlotInfo } from '../source/slot.js';
import type { Pipeline } from './pipeline.js';
import type { ResetRequest } from './supervisor.js';

export interface LsnResetterOptions {
  source: pg.Pool;
  sink: pg.Pool;
  slot: string;
  pipeline: Pipeline;
  log: Logger;
  /** How long to wait for the server to end the old replication connection (default 10 s). */
  releaseTimeoutMs?: number;
}

/** An operator's LSN reset: where it may go (planLsnReset), and moving every sink there. */
export class LsnResetter {
  constructor(private readonly o: LsnResetterOptions) {}

  /**
   * The reset's window, from the slot and the checkpoints. With `settled`, it
   * first waits for the server to end the old replication connection: only
   * then has it processed every status update we sent, and the slot's
   * confirmed flush is final.
   */
  async check(r: ResetRequest, settled: boolean): Promise<ResetOutcome> {
    const info = settled ? await this.released() : await inspectSlot(this.o.source, this.o.slot);
    if (!info?.confirmedFlushLsn)
      throw new Conflict(`replication slot ${this.o.slot} does not exist`);
    const checkpoints = await readCheckpoints(this.o.sink, this.o.slot);
    const checkpoint = minLsn(checkpoints.flatMap((c) => (c.lsn === null ? [] : [c.lsn])));
    if (checkpoint === null) throw new Conflict('no sink has a checkpoint yet');
    const plan = planLsnReset({
      target: r.target,
      force: r.force,
      confirmedFlush: info.confirmedFlushLsn,
      checkpoint,
      walEnd: info.currentLsn,
    });
    if (!plan.ok) throw new Conflict(plan.message);
    return plan;
  }

  /**
   * Runs between two sessions, with no stream that could acknowledge: the
   * target is checked against the slot as it is now, then every sink and the
   * acker move together.
   */
  async apply(r: ResetRequest): Promise<ResetOutcome> {
    const plan = await this.check(r, true);
    if (plan.mode !== 'noop') {
      await this.o.pipeline.resetTo(plan.to);
      this.o.log.warn(
        { mode: plan.mode, from: formatLsn(plan.from), to: formatLsn(plan.to) },
        'LSN reset by an operator: streaming again from there',
      );
    }
    return plan;
  }

  private async released(): Promise<SlotInfo | null> {
    const deadline = Date.now() + (this.o.releaseTimeoutMs ?? 10_000);
    for (;;) {
      const info = await inspectSlot(this.o.source, this.o.slot);
      if (!info?.active) return info;
      if (Date.now() > deadline)
        throw new Conflict(
          `replication slot ${this.o.slot} is still in use by process ${info.activePid}`,
        );
      await sleep(20);
    }
  }
}
