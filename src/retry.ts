import type { SlotlineError } from './errors.js';

export interface BackoffOptions {
  /** First delay (SLOTLINE_RETRY_INITIAL_MS, default 500 ms). */
  initialMs: number;
  /** Cap (SLOTLINE_RETRY_MAX_MS, default 30 s). */
  maxMs: number;
  /** Random source in [0, 1), injectable for tests. */
  random?: () => number;
}

/**
 * Capped exponential backoff with full jitter ("Exponential Backoff And
 * Jitter", AWS Architecture Blog): attempt n waits a random time in
 * [cap/2, cap] where cap = min(maxMs, initialMs * 2^n). Half the window is kept
 * so that a crowd of retries still spreads without retrying at once.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions): number {
  const cap = Math.min(opts.maxMs, opts.initialMs * 2 ** Math.min(attempt, 30));
  const r = (opts.random ?? Math.random)();
  return Math.round(cap / 2 + r * (cap / 2));
}

/** Sleeps `ms`, waking early (without throwing) when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

export interface RetryHooks {
  /** Called before each wait with the classified error, attempt number and delay. */
  onRetry?: (err: SlotlineError, attempt: number, delayMs: number) => void;
}

/**
 * Runs `fn` until it succeeds, retrying errors that `classify` marks
 * retriable. This is the one place that decides to retry. Returns undefined if
 * the signal aborted while waiting.
 */
export async function retry<T>(
  fn: (attempt: number) => Promise<T>,
  classify: (err: unknown) => SlotlineError,
  opts: BackoffOptions & RetryHooks & { signal: AbortSignal },
): Promise<T | undefined> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      const e = classify(err);
      if (!e.retriable || opts.signal.aborted) throw e;
      const delay = backoffDelay(attempt, opts);
      opts.onRetry?.(e, attempt, delay);
      await sleep(delay, opts.signal);
      if (opts.signal.aborted) return undefined;
    }
  }
}
