import { describe, expect, it } from 'vitest';
import type { ConnectorView } from './port.js';
import { livenessOf, readinessOf } from './probes.js';

function view(over: Partial<ConnectorView> = {}): ConnectorView {
  return {
    phase: 'streaming',
    leading: true,
    lastError: null,
    lastErrorCode: null,
    errorCount: 0,
    startedAt: 0,
    pauseReasons: [],
    readingSince: 0,
    lastServerContactAt: 0,
    inflight: { rows: 0, bytes: 0, transactions: 0 },
    acknowledged: null,
    commitLagSeconds: 0,
    lastDurableCommitMs: null,
    throughputPerSecond: 0,
    transactions: 0,
    changes: 0,
    deadLetters: 0,
    slot: null,
    publicationProblem: null,
    backfill: null,
    verify: null,
    ponder: null,
    ...over,
  };
}

describe('livenessOf', () => {
  it('fails only a loop that reads the socket and hears nothing', () => {
    expect(livenessOf(view({ lastServerContactAt: 1_000 }), 400_000, 300_000).ok).toBe(false);
    expect(livenessOf(view({ lastServerContactAt: 200_000 }), 400_000, 300_000).ok).toBe(true);
  });

  it('a sink down under load (backpressure) is waiting, not wedged', () => {
    const v = view({ pauseReasons: ['backpressure'], lastServerContactAt: 0 });
    expect(livenessOf(v, 10_000_000, 300_000).ok).toBe(true);
  });

  it('counts from the moment reading resumed, not from the last message before a pause', () => {
    const v = view({ lastServerContactAt: 0, readingSince: 900_000 });
    expect(livenessOf(v, 1_000_000, 300_000).ok).toBe(true);
  });

  it('never fails outside streaming', () => {
    expect(livenessOf(view({ phase: 'retrying' }), 10_000_000, 1).ok).toBe(true);
  });
});

describe('readinessOf', () => {
  it('is ready streaming and as a healthy standby', () => {
    expect(readinessOf(view())).toEqual({ ok: true, reason: 'streaming' });
    expect(readinessOf(view({ pauseReasons: ['operator'] })).reason).toMatch(/operator/);
    expect(readinessOf(view({ phase: 'standby' })).ok).toBe(true);
    expect(readinessOf(view({ publicationProblem: 'the publication was dropped' })).ok).toBe(false);
    expect(readinessOf(view({ phase: 'standby', lastErrorCode: 'connection' })).ok).toBe(false);
  });

  it('shows an error by its code and fix, never its message (no hosts or ports to anyone)', () => {
    const down = view({
      phase: 'retrying',
      lastError: 'source: connect ECONNREFUSED 10.0.3.7:5432',
      lastErrorCode: 'connection',
    });
    expect(readinessOf(down).reason).toBe(
      'retrying: connection: a database connection failed; retrying',
    );
    const lost = view({
      phase: 'retrying',
      lastError: 'source: replication slot "s" does not exist at 10.0.3.7',
      lastErrorCode: 'slot_missing',
    });
    expect(readinessOf(lost).reason).toMatch(
      /^retrying: slot_missing: .*slotline setup --resnapshot/,
    );
    expect(readinessOf(lost).reason).not.toContain('10.0.3.7');
    const odd = view({ phase: 'starting', lastError: 'pg says x', lastErrorCode: 'pg_XX123' });
    expect(readinessOf(odd).reason).toBe(
      'starting: pg_XX123: details in the log, or in /status with the admin token',
    );
  });
});
