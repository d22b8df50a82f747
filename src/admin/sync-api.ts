/**
 * The old analytics service's health answer, computed from the slot rather
 * than from a gap query. Thresholds are the old service's: healthy below 5
 * minutes of lag, a sync recommended above 30, required above 60.
 */
export interface SyncHealth {
  status: 'healthy' | 'unhealthy';
  isHealthy: boolean;
  lagMinutes: number;
  lastPonderTimestamp: number;
  lastAnalyticsTimestamp: number;
  recommendation: 'HEALTHY' | 'SYNC_RECOMMENDED' | 'IMMEDIATE_SYNC_REQUIRED';
  missedTrades: number;
}

export interface SyncInputs {
  /** unix seconds now */
  now: number;
  /** commit time (unix s) of the last source transaction durable in every sink; null if none yet */
  lastDurableCommit: number | null;
  /** age in seconds of the oldest commit not yet durable (0 when caught up) */
  lagSeconds: number;
  /** trade changes decoded but not yet durable */
  pendingTrades: number;
  /** false when the connector is not streaming at all */
  streaming: boolean;
}

export function syncHealth(i: SyncInputs): SyncHealth {
  const lagMinutes = Math.round((i.lagSeconds / 60) * 100) / 100;
  const recommendation =
    lagMinutes > 60 ? 'IMMEDIATE_SYNC_REQUIRED' : lagMinutes > 30 ? 'SYNC_RECOMMENDED' : 'HEALTHY';
  const isHealthy = i.streaming && lagMinutes < 5;
  const analytics = i.lastDurableCommit ?? 0;
  return {
    status: isHealthy ? 'healthy' : 'unhealthy',
    isHealthy,
    lagMinutes,
    // What the source has committed is at least as new as our lag says.
    lastPonderTimestamp: i.lagSeconds > 0 ? Math.floor(i.now) : analytics,
    lastAnalyticsTimestamp: analytics,
    recommendation,
    missedTrades: i.pendingTrades,
  };
}
