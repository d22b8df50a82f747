import type pg from 'pg';
import type { Metrics } from '../admin/metrics.js';
import type { PonderStatus } from '../admin/port.js';
import { formatLsn } from '../checkpoint/lsn.js';
import type { Logger } from '../log.js';
import { backoffDelay, type BackoffOptions } from '../retry.js';
import { resolveViews, type ViewsTarget } from '../source/ponder.js';
import type { SwitchOutcome } from './switch.js';

export interface FollowerOptions {
  source: pg.Pool;
  /** SLOTLINE_PONDER_VIEWS_SCHEMA */
  viewsSchema: string;
  /** SLOTLINE_PONDER_POLL_MS (default 5 s) */
  pollMs: number;
  /** Between failed switches (the connector's capped backoff). */
  backoff: BackoffOptions;
  metrics: Metrics;
  log: Logger;
  now?: () => number;
}

/**
 * Watches where Ponder's views point and says when the sink must move to
 * another deployment: the views select from a ready deployment that is not
 * the one streamed. The connector asks `wanted()` (it ends the session) and
 * reports back with switched() or failed(); a failed switch is tried again
 * after a capped backoff, never in a tight loop.
 */
export class DeploymentFollower {
  private current: string | null = null;
  private target: ViewsTarget | null = null;
  private timer: NodeJS.Timeout | null = null;
  private waiter: (() => void) | null = null;
  private failures = 0;
  private notBefore = 0;
  private problem: string | null = null;
  private last: PonderStatus['lastSwitch'] = null;
  private checking = false;
  /**
   * The publication may not cover the schema streamed (a switch failed after
   * moving it, or it was moved while the connector was down): the changes in
   * between were not published, so even the same deployment is copied again.
   */
  private stale = false;
  switching = false;
  private readonly now: () => number;

  constructor(private readonly o: FollowerOptions) {
    this.now = o.now ?? Date.now;
  }

  /** The schema streamed now. */
  get schema(): string | null {
    return this.current;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.check().catch(() => undefined), this.o.pollMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Reads the views now; wakes `wanted()` when a switch is due. Throws when the source cannot be read. */
  async check(): Promise<ViewsTarget> {
    if (this.checking && this.target) return this.target;
    this.checking = true;
    try {
      const target = await resolveViews(this.o.source, this.o.viewsSchema);
      const moved = target.kind === 'deployment' && target.schema !== this.pointedAt();
      this.target = target;
      if (moved)
        this.o.log.info(
          {
            views: this.o.viewsSchema,
            schema: target.schema,
            ready: target.ready,
            streaming: this.current,
          },
          'the Ponder views point at a deployment',
        );
      if (target.kind === 'unresolved' && this.problem !== target.reason) {
        this.o.log.warn({ views: this.o.viewsSchema }, target.reason);
      }
      this.publish();
      if (this.due() !== null) this.wakeWaiter();
      return target;
    } finally {
      this.checking = false;
    }
  }

  /** The ready deployment the views point at, when it is not the one streamed (or stale) and no backoff holds it back. */
  due(): string | null {
    const t = this.target;
    if (t?.kind !== 'deployment' || !t.ready || (t.schema === this.current && !this.stale))
      return null;
    return this.now() >= this.notBefore ? t.schema : null;
  }

  /** Resolves when a switch is due (at once if one is). */
  wanted(): Promise<void> {
    if (this.due() !== null) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiter = () => {
        this.waiter = null;
        resolve();
      };
    });
  }

  /** The sink holds `schema` (at start, from its checkpoint). */
  streaming(schema: string): void {
    this.current = schema;
    this.publish();
  }

  /** The sink's rows may miss changes of the schema streamed: copy the live deployment again. */
  resync(): void {
    this.stale = true;
  }

  switched(o: SwitchOutcome): void {
    this.current = o.to;
    this.stale = false;
    this.failures = 0;
    this.notBefore = 0;
    this.problem = null;
    const rowsCopied = Object.values(o.copied).reduce((a, b) => a + b, 0);
    this.last = {
      from: o.from,
      to: o.to,
      at: new Date(this.now()).toISOString(),
      durationMs: o.ms,
      generation: o.generation,
      lsn: formatLsn(o.lsn),
      rowsCopied,
      tradesWritten: o.counts.tradesWritten,
      tradesRemoved: o.counts.tradesRemoved,
      tradesKept: o.counts.tradesKept,
    };
    const m = this.o.metrics;
    m.ponderSwitches.inc();
    m.ponderLastSwitchSeconds.set(o.ms / 1000);
    m.ponderLastSwitchTimestampSeconds.set(this.now() / 1000);
    this.publish();
  }

  /** A switch failed: shown in /status, tried again after the backoff. */
  failed(message: string): void {
    this.problem = message;
    // It may have moved the publication already.
    this.stale = true;
    this.notBefore = this.now() + backoffDelay(this.failures++, this.o.backoff);
    this.publish();
  }

  status(): PonderStatus {
    const t = this.target;
    return {
      viewsSchema: this.o.viewsSchema,
      schema: this.current,
      viewsPointAt: this.pointedAt(),
      ready: t?.kind === 'deployment' && t.ready,
      switching: this.switching,
      problem: this.problem ?? (t?.kind === 'unresolved' ? t.reason : null),
      lastSwitch: this.last,
    };
  }

  private pointedAt(): string | null {
    return this.target?.kind === 'deployment' ? this.target.schema : null;
  }

  private wakeWaiter(): void {
    this.waiter?.();
  }

  /** slotline_ponder_*: which schema is streamed, and whether the views point elsewhere. */
  private publish(): void {
    const m = this.o.metrics;
    m.ponderDeployment.reset();
    if (this.current !== null) m.ponderDeployment.set({ schema: this.current }, 1);
    const pointed = this.pointedAt();
    m.ponderViewsMismatch.set(this.target !== null && pointed !== this.current ? 1 : 0);
  }
}
