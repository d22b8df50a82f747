import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConnectionError, SlotlineError, classifyError } from './errors.js';
import { backoffDelay, retry, sleep } from './retry.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('backoffDelay', () => {
  const opts = { initialMs: 100, maxMs: 5000 };
  it.each([0, 1, 2, 3, 5, 6, 10, 40, 1000])('attempt %i stays within [cap/2, cap]', (attempt) => {
    const cap = Math.min(5000, 100 * 2 ** attempt);
    const lo = backoffDelay(attempt, { ...opts, random: () => 0 });
    const hi = backoffDelay(attempt, { ...opts, random: () => 0.999 });
    expect(lo).toBe(Math.round(cap / 2));
    expect(hi).toBeGreaterThan(lo);
    expect(hi).toBeLessThanOrEqual(cap);
    expect(hi).toBeGreaterThanOrEqual(Math.floor(cap * 0.99));
    expect(hi).toBeLessThanOrEqual(5000);
  });

  it('grows exponentially until the cap', () => {
    const d = (n: number) => backoffDelay(n, { ...opts, random: () => 0 });
    expect([0, 1, 2, 3, 6, 7].map(d)).toEqual([50, 100, 200, 400, 2500, 2500]);
  });
});

describe('sleep', () => {
  it('wakes early without throwing when the signal aborts', async () => {
    vi.useFakeTimers();
    const ac = new AbortController();
    let done = false;
    const p = sleep(60_000, ac.signal).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(10);
    expect(done).toBe(false);
    ac.abort();
    await p;
    expect(done).toBe(true);
  });
});

describe('retry', () => {
  const classify = (e: unknown) => classifyError(e, 'test');
  const base = { initialMs: 1, maxMs: 2, random: () => 0 };

  it('retries retriable errors, then returns the result', async () => {
    const seen: number[] = [];
    const delays: number[] = [];
    const result = await retry(
      async (attempt) => {
        seen.push(attempt);
        if (attempt < 2) throw Object.assign(new Error('refused'), { code: 'ECONNREFUSED' });
        return 'ok';
      },
      classify,
      {
        ...base,
        signal: new AbortController().signal,
        onRetry: (err, _attempt, delay) => {
          expect(err).toBeInstanceOf(ConnectionError);
          delays.push(delay);
        },
      },
    );
    expect(result).toBe('ok');
    expect(seen).toEqual([0, 1, 2]);
    expect(delays).toHaveLength(2);
  });

  it('rethrows a non-retriable error at once, classified', async () => {
    let calls = 0;
    const p = retry(
      async () => {
        calls++;
        throw Object.assign(new Error('password authentication failed'), { code: '28P01' });
      },
      classify,
      { ...base, signal: new AbortController().signal },
    );
    await expect(p).rejects.toMatchObject({ code: 'auth_failed', retriable: false });
    expect(calls).toBe(1);
  });

  it('returns undefined when the signal aborts during the wait', async () => {
    vi.useFakeTimers();
    const ac = new AbortController();
    let calls = 0;
    const p = retry(
      async () => {
        calls++;
        throw new ConnectionError('down');
      },
      (e) => e as SlotlineError,
      { initialMs: 10_000, maxMs: 60_000, random: () => 0, signal: ac.signal },
    );
    await vi.advanceTimersByTimeAsync(100);
    expect(calls).toBe(1);
    ac.abort();
    await expect(p).resolves.toBeUndefined();
    expect(calls).toBe(1);
  });

  it('does not retry once the signal has aborted', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(
      retry(
        async () => {
          throw new ConnectionError('down');
        },
        (e) => e as SlotlineError,
        { ...base, signal: ac.signal },
      ),
    ).rejects.toBeInstanceOf(ConnectionError);
  });
});
