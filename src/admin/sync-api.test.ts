import { describe, expect, it } from 'vitest';
import { syncHealth } from './sync-api.js';

const base = { now: 1_000_000, lastDurableCommit: 999_990, lagSeconds: 0, pendingTrades: 0 };

describe('syncHealth', () => {
  it('is healthy when streaming with little lag, with the old thresholds above it', () => {
    expect(syncHealth({ ...base, streaming: true })).toMatchObject({
      status: 'healthy',
      isHealthy: true,
      recommendation: 'HEALTHY',
    });
    expect(syncHealth({ ...base, streaming: true, lagSeconds: 31 * 60 }).recommendation).toBe(
      'SYNC_RECOMMENDED',
    );
    expect(syncHealth({ ...base, streaming: true, lagSeconds: 61 * 60 }).recommendation).toBe(
      'IMMEDIATE_SYNC_REQUIRED',
    );
    expect(syncHealth({ ...base, streaming: true }).reason).toBeUndefined();
  });

  it('never says HEALTHY beside isHealthy false when nothing streams', () => {
    const h = syncHealth({ ...base, streaming: false });
    expect(h.isHealthy).toBe(false);
    expect(h.status).toBe('unhealthy');
    expect(h.recommendation).toBe('SYNC_RECOMMENDED');
    expect(h.reason).toMatch(/no replica streams/);
    expect(syncHealth({ ...base, streaming: false, lagSeconds: 90 * 60 }).recommendation).toBe(
      'IMMEDIATE_SYNC_REQUIRED',
    );
  });
});
