import type pg from 'pg';
import type { Logger } from '../log.js';
import { HEARTBEAT_PREFIX } from '../trades/router.js';

export interface HeartbeatOptions {
  pool: pg.Pool;
  /** SLOTLINE_HEARTBEAT_INTERVAL_MS (default 10 s); 0 disables. */
  intervalMs: number;
  slot: string;
  log: Logger;
}

/**
 * Writes a small transactional logical message to the source on a timer. It
 * travels through the slot like any commit, so a quiet database still moves
 * the checkpoint, and its commit time gives the true end-to-end lag. Optional:
 * a role that may not call pg_logical_emit_message just runs without it.
 */
export class Heartbeat {
  private timer: NodeJS.Timeout | null = null;
  private failures = 0;

  constructor(private readonly opts: HeartbeatOptions) {}

  start(): void {
    if (this.opts.intervalMs <= 0 || this.timer) return;
    this.timer = setInterval(() => void this.beat(), this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private async beat(): Promise<void> {
    try {
      await this.opts.pool.query('SELECT pg_logical_emit_message(true, $1, $2)', [
        HEARTBEAT_PREFIX,
        JSON.stringify({ slot: this.opts.slot, at: new Date().toISOString() }),
      ]);
      this.failures = 0;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === '42501') {
        this.opts.log.warn(
          'heartbeat disabled: the source role may not call pg_logical_emit_message',
        );
        this.stop();
        return;
      }
      // Rate-limited: the first failure of a run, then every 30th.
      if (this.failures++ % 30 === 0) this.opts.log.warn({ err }, 'heartbeat failed');
    }
  }
}
