import { setTimeout as sleep } from 'node:timers/promises';

export interface WaitForOptions {
  timeoutMs: number;
  /** Pause between attempts. Default 100 ms. */
  intervalMs?: number;
  /** What is awaited, for the timeout message ("3 trades in the sink"). */
  what: string;
}

/**
 * Polls `fn` until it returns something other than `undefined`, `null` or
 * `false`, and returns that. An attempt that throws counts as "not yet" (the
 * table may not exist yet); the last error is reported if time runs out.
 */
export async function waitFor<T>(
  fn: () => Promise<T | undefined | null | false>,
  opts: WaitForOptions,
): Promise<T> {
  const interval = opts.intervalMs ?? 100;
  const deadline = Date.now() + opts.timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value !== undefined && value !== null && value !== false) return value;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      const reason =
        lastError === undefined
          ? ''
          : `; last attempt failed: ${lastError instanceof Error ? lastError.message : String(lastError)}`;
      throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${opts.what}${reason}`, {
        cause: lastError,
      });
    }
    await sleep(Math.min(interval, remaining));
  }
}
