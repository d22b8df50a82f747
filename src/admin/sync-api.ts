/**
 * The old analytics service's health answer, computed from the slot rather
 * than from a gap query. Thresholds are the old service's: healthy below 5
 * minutes of lag, a sync recommended above 30, required above 60. It is the
 * deployment's answer: a standby passes the call to the leader, and answers
 * itself only when no leader can (then nothing streams).
 */
export interface SyncHealth {
  status: 'healthy' | 'unhealthy';
  isHealthy: boolean;
  lagMinutes: number;
  lastPonderTimestamp: number;
  lastAnalyticsTimestamp: number;
  recommendation: 'HEALTHY' | 'SYNC_RECOMMENDED' | 'IMMEDIATE_SYNC_REQUIRED';
  missedTrades: number;
  /** Why it is unhealthy, when that is not the lag alone (an addition to the old shape). */
  reason?: string;
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
  const byLag =
    lagMinutes > 60 ? 'IMMEDIATE_SYNC_REQUIRED' : lagMinutes > 30 ? 'SYNC_RECOMMENDED' : 'HEALTHY';
  // Not streaming, nothing reaches the sink whatever the lag measured so far
  // says: HEALTHY beside isHealthy false told a cron job two things at once.
  const recommendation = !i.streaming && byLag === 'HEALTHY' ? 'SYNC_RECOMMENDED' : byLag;
  const isHealthy = i.streaming && lagMinutes < 5;
  const analytics = i.lastDurableCommit ?? 0;
  return {
    ...(i.streaming ? {} : { reason: 'no replica streams from the slot' }),
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
