import { classifyError, SlotlineError, type Side } from '../errors.js';

/**
 * One preflight check's outcome. `setup` refuses to change anything while one
 * has failed; `slotline check` prints them all. A warning is a risk that does
 * not stop setup (an unbounded max_slot_wal_keep_size, say).
 */
export type CheckResult =
  | { side: Side; name: string; status: 'ok'; detail: string }
  | { side: Side; name: string; status: 'warn' | 'fail'; detail: string; error: SlotlineError };

export const ok = (side: Side, name: string, detail: string): CheckResult => ({
  side,
  name,
  status: 'ok',
  detail,
});

/** A failed check; its error carries the code, the variable and the fix. */
export const failed = (
  name: string,
  error: SlotlineError,
  side: Side = error.remedy?.side ?? 'source',
): CheckResult => ({
  side,
  name,
  status: 'fail',
  detail: error.problem,
  error,
});

export const warning = (name: string, error: SlotlineError): CheckResult => ({
  side: error.remedy?.side ?? 'source',
  name,
  status: 'warn',
  detail: error.problem,
  error,
});

/**
 * The failures of a preflight as one error: the failure itself when there is
 * one (its code and fix unchanged), else `preflight_failed` listing them.
 * Retriable only when every failure is (a database still starting, say).
 */
export class ChecksFailed extends SlotlineError {
  constructor(readonly failures: readonly SlotlineError[]) {
    super(
      'preflight_failed',
      `${failures.length} checks failed:\n${failures.map((f) => `  [${f.code}] ${f.message}`).join('\n')}`,
      { retriable: failures.every((f) => f.retriable) },
    );
  }
}

/** Throws when a check failed; nothing may be changed then. */
export function assertPassed(results: readonly CheckResult[]): void {
  const failures = results.flatMap((r) => (r.status === 'fail' ? [r.error] : []));
  if (failures.length === 1) throw failures[0] as SlotlineError;
  if (failures.length > 1) throw new ChecksFailed(failures);
}

/** A check whose query itself failed (a privilege, a lost connection) fails with that error. */
export async function attempt(
  name: string,
  check: () => Promise<CheckResult>,
  side: 'source' | 'sink' = 'source',
): Promise<CheckResult> {
  try {
    return await check();
  } catch (err) {
    return failed(name, classifyError(err, side), side);
  }
}
