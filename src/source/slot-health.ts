import type pg from 'pg';
import type { Metrics } from '../admin/metrics.js';
import { WAL_STATUSES } from '../admin/metrics.js';
import { type Lsn, formatLsn } from '../checkpoint/lsn.js';
import type { Logger } from '../log.js';
import { inspectSlot, type SlotInfo } from './slot.js';

export interface SlotHealth {
  exists: boolean;
  active: boolean;
  activePid: number | null;
  walStatus: string | null;
  /** bytes; null when max_slot_wal_keep_size is unlimited */
  safeWalSize: number | null;
  /** pg_current_wal_lsn() - confirmed_flush_lsn */
  lagBytes: number | null;
  /** pg_current_wal_lsn() - restart_lsn */
  retainedBytes: number | null;
  currentLsn: string | null;
  confirmedFlushLsn: string | null;
  restartLsn: string | null;
  /** unix ms */
  checkedAt: number;
}

const diff = (a: Lsn, b: Lsn | null): number | null => (b === null ? null : Number(a - b));

/** The slot's health as the metrics and /status show it. */
export function slotHealthOf(info: SlotInfo | null, now: number): SlotHealth {
  if (!info) {
    return {
      exists: false,
      active: false,
      activePid: null,
      walStatus: null,
      safeWalSize: null,
      lagBytes: null,
      retainedBytes: null,
      currentLsn: null,
      confirmedFlushLsn: null,
      restartLsn: null,
      checkedAt: now,
    };
  }
  return {
    exists: true,
    active: info.active,
    activePid: info.activePid,
    walStatus: info.walStatus,
    safeWalSize: info.safeWalSize === null ? null : Number(info.safeWalSize),
    lagBytes: diff(info.currentLsn, info.confirmedFlushLsn),
    retainedBytes: diff(info.currentLsn, info.restartLsn),
    currentLsn: formatLsn(info.currentLsn),
    confirmedFlushLsn: info.confirmedFlushLsn === null ? null : formatLsn(info.confirmedFlushLsn),
    restartLsn: info.restartLsn === null ? null : formatLsn(info.restartLsn),
    checkedAt: now,
  };
}

export interface SlotMonitorOptions {
  pool: pg.Pool;
  slot: string;
  /** How often pg_replication_slots is read (default 5 s). */
  intervalMs?: number;
  metrics: Metrics;
  log: Logger;
}

/** Reads pg_replication_slots on a timer and publishes the slot's health. */
export class SlotMonitor {
  latest: SlotHealth | null = null;
  private timer: NodeJS.Timeout | null = null;
  private failures = 0;

  constructor(private readonly opts: SlotMonitorOptions) {}

  start(): void {
    if (this.timer) return;
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.opts.intervalMs ?? 5000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  async refresh(): Promise<SlotHealth | null> {
    try {
      const h = slotHealthOf(await inspectSlot(this.opts.pool, this.opts.slot), Date.now());
      this.latest = h;
      this.failures = 0;
      const m = this.opts.metrics;
      m.slotExists.set(h.exists ? 1 : 0);
      m.slotActive.set(h.active ? 1 : 0);
      if (h.lagBytes !== null) m.slotLagBytes.set(h.lagBytes);
      if (h.retainedBytes !== null) m.slotRetainedWalBytes.set(h.retainedBytes);
      m.slotSafeWalSizeBytes.set(h.safeWalSize ?? Number.NaN);
      for (const s of WAL_STATUSES) m.slotWalStatus.set({ status: s }, h.walStatus === s ? 1 : 0);
      return h;
    } catch (err) {
      // The source may be down: health is then unknown, not an error of ours.
      if (this.failures++ % 12 === 0) this.opts.log.warn({ err }, 'cannot read the slot state');
      return null;
    }
  }
}
