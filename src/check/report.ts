import { remedyLines, SlotlineError } from '../errors.js';
import { ChecksFailed, type CheckResult } from './result.js';

/**
 * An error as an operator reads it at the end of a command: the problem, then
 * its code, side, variable and `Fix:` on lines of their own.
 */
export function formatError(err: SlotlineError): string {
  if (err instanceof ChecksFailed) {
    return [
      `${err.failures.length} checks failed:`,
      ...err.failures.map((f) => indent(formatError(f), '  ')),
    ].join('\n');
  }
  const lines = err.remedy ? remedyLines(err.code, err.remedy) : [`code: ${err.code}`];
  return [err.remedy ? err.problem : err.message, ...lines.map((l) => `  ${l}`)].join('\n');
}

const MARK = { ok: 'ok  ', warn: 'warn', fail: 'FAIL' } as const;

/** `slotline check`'s table: one line per check, the fix under each one that is not ok. */
export function formatChecks(results: readonly CheckResult[]): string {
  const width = Math.max(...results.map((r) => r.name.length));
  const lines: string[] = [];
  for (const r of results) {
    const head = `${r.side.padEnd(6)} ${r.name.padEnd(width)}  ${MARK[r.status]}  `;
    if (r.status === 'ok') {
      lines.push(`${head}${r.detail}`);
      continue;
    }
    lines.push(`${head}${r.error.problem.replace(/^(source|sink|kafka|http): /, '')}`);
    const pad = ' '.repeat(head.length);
    const extra = r.error.remedy
      ? remedyLines(r.error.code, r.error.remedy).filter((l) => !l.startsWith('side:'))
      : [`code: ${r.error.code}`];
    for (const l of extra) lines.push(`${pad}${l}`);
  }
  const failures = results.filter((r) => r.status === 'fail').length;
  const warnings = results.filter((r) => r.status === 'warn').length;
  const counts = `${results.length} checks, ${failures} failed, ${warnings} warning${warnings === 1 ? '' : 's'}`;
  lines.push(
    '',
    failures > 0
      ? `${counts}: fix the failures above, then run \`slotline check\` again; setup changes nothing until they pass`
      : `${counts}: ready for \`slotline setup\` and \`slotline run\``,
  );
  return lines.join('\n');
}

function indent(text: string, pad: string): string {
  return text
    .split('\n')
    .map((l) => pad + l)
    .join('\n');
}
