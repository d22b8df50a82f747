import { describe, expect, it } from 'vitest';
import { SlotInUseError, ConnectionError, type SlotlineError } from '../errors.js';
import { createLogger } from '../log.js';
import type { SessionEnd } from './session.js';
import { ResetRequests, Supervisor } from './supervisor.js';

/** A supervisor whose sessions end as `ends` says, then with a shutdown. */
function supervise(ends: SessionEnd[], backoffMs: number) {
  const stop = new AbortController();
  const retries: [string, number][] = [];
  let i = 0;
  const s = new Supervisor({
    backoff: { initialMs: backoffMs, maxMs: backoffMs, random: () => 0 },
    shutdown: stop.signal,
    log: createLogger({ level: 'silent' }),
    resets: new ResetRequests(),
    applyReset: () => Promise.reject(new Error('no reset here')),
    slotBusyPollMs: 1,
    session: () => ({
      run: async () => {
        const end = ends[i++];
        if (end === undefined) stop.abort();
        return end ?? { kind: 'shutdown' };
      },
    }),
    onRetry: (err: SlotlineError, delayMs) => retries.push([err.code, delayMs]),
  });
  return { run: () => s.run(), retries, sessions: () => i };
}

const busy = (): SessionEnd => ({
  kind: 'failed',
  error: new SlotInUseError('slot is active for PID 1'),
});

describe('Supervisor', () => {
  it('polls a busy slot every slotBusyPollMs instead of backing off, and says so once', async () => {
    // A backoff of 10 minutes would hang this test: only the busy-slot poll lets it end.
    const s = supervise([busy(), busy(), busy(), busy()], 600_000);
    await s.run();
    expect(s.sessions()).toBe(5);
    expect(s.retries).toEqual([['slot_in_use', 1]]);
  });

  it('backs off on other failures, and starts a new busy streak after one', async () => {
    const down: SessionEnd = { kind: 'failed', error: new ConnectionError('down') };
    const s = supervise([busy(), down, busy(), busy()], 5);
    await s.run();
    expect(s.retries).toEqual([
      ['slot_in_use', 1],
      ['connection', 3],
      ['slot_in_use', 1],
    ]);
  });
});
