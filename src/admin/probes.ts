import type { ConnectorView } from './port.js';
import type { Probe } from './api.js';
import { publicError } from './public-error.js';

/**
 * Liveness: the process and its replication loop are not wedged. Only a loop
 * that reads the socket and still hears nothing from the server for
 * `timeoutMs` fails it (the server sends keepalives well within its
 * wal_sender_timeout). A pause for any reason (an operator, a full queue
 * because a sink is down, stopping) is waiting, not wedged: a database being
 * down never fails liveness, since restarting the process cannot fix it.
 */
export function livenessOf(v: ConnectorView, now: number, timeoutMs: number): Probe {
  if (v.phase !== 'streaming' || v.pauseReasons.length > 0 || v.readingSince === null)
    return { ok: true, reason: v.phase };
  const heard = Math.max(v.lastServerContactAt, v.readingSince);
  const silentMs = now - heard;
  if (silentMs > timeoutMs)
    return {
      ok: false,
      reason: `no replication progress for ${Math.round(silentMs / 1000)} s while reading the slot`,
    };
  return { ok: true, reason: v.phase };
}

/**
 * Readiness: streaming, or a healthy hot standby. Unauthenticated, so an error
 * shows as its code and the fix, never its message (see public-error.ts).
 */
export function readinessOf(v: ConnectorView): Probe {
  if (v.phase === 'standby' && v.lastErrorCode === null) return { ok: true, reason: 'standby' };
  if (v.phase === 'streaming' && v.publicationProblem !== null)
    return { ok: false, reason: `streaming, but ${v.publicationProblem}` };
  if (v.phase === 'streaming') {
    const paused = v.pauseReasons.includes('operator');
    return { ok: true, reason: paused ? 'streaming (paused by an operator)' : 'streaming' };
  }
  const error = publicError(v.lastErrorCode);
  return { ok: false, reason: error ? `${v.phase}: ${error}` : v.phase };
}
