import {
  backfillCommand,
  deadLettersCommand,
  resetLsnCommand,
  statusCommand,
} from '../admin/client.js';
import { flags, printResult, usageError } from './command.js';
import { withConfig } from './configured.js';

/**
 * `status`, `reset-lsn`, `backfill` and `dead-letters`: the running
 * connector's admin API from the command line (src/admin/client.ts).
 */

export function status(args: string[]): Promise<number> {
  if (args.length > 0)
    return Promise.resolve(usageError('status', `unexpected argument ${JSON.stringify(args[0])}`));
  return withConfig(async (cfg) =>
    printResult(
      await statusCommand(cfg).catch((err: unknown) => ({
        code: 1,
        out: `cannot read the status: ${(err as Error).message}`,
      })),
    ),
  );
}

export function resetLsn(args: string[]): Promise<number> {
  const [lsn, ...more] = args;
  if (lsn === undefined || lsn.startsWith('--'))
    return Promise.resolve(
      usageError('reset-lsn', 'give the LSN, e.g. slotline reset-lsn 0/16B3748'),
    );
  const f = flags(more, [], ['force']);
  if (typeof f === 'string') return Promise.resolve(usageError('reset-lsn', f));
  return withConfig(async (cfg) => printResult(await resetLsnCommand(cfg, lsn, f.force === true)));
}

export function backfill(args: string[]): Promise<number> {
  const f = flags(args, ['from', 'to', 'from-id', 'to-id', 'chunk'], ['cancel']);
  if (typeof f === 'string') return Promise.resolve(usageError('backfill', f));
  if (f.cancel === true)
    return withConfig(async (cfg) => printResult(await backfillCommand(cfg, 'cancel')));
  const body: Record<string, unknown> = {};
  if (typeof f.from === 'string') body.from = f.from;
  if (typeof f.to === 'string') body.to = f.to;
  if (typeof f['from-id'] === 'string') body.fromId = f['from-id'];
  if (typeof f['to-id'] === 'string') body.toId = f['to-id'];
  if (typeof f.chunk === 'string') {
    if (!/^\d+$/.test(f.chunk))
      return Promise.resolve(usageError('backfill', '--chunk must be a whole number'));
    body.chunkSize = Number(f.chunk);
  }
  return withConfig(async (cfg) => printResult(await backfillCommand(cfg, body)));
}

export function deadLetters(args: string[]): Promise<number> {
  const [sub = '', ...more] = args;
  const isId = (a: string, i: number) => /^\d+$/.test(a) && !(more[i - 1] ?? '').startsWith('--');
  const ids = more.filter(isId);
  const f = flags(
    more.filter((a, i) => !isId(a, i)),
    ['reason', 'table', 'state', 'from', 'to', 'limit', 'after', 'note', 'older-than-days'],
    ['all'],
  );
  if (typeof f === 'string') return Promise.resolve(usageError('dead-letters', f));
  return withConfig(async (cfg) => {
    const result = await deadLettersCommand(cfg, sub, f, ids);
    const code = printResult(result);
    // A retry that leaves letters failing is a failure for scripts, like `verify`.
    if (sub === 'retry' && code === 0 && retryFailed(result.out)) return 1;
    return code;
  });
}

function retryFailed(out: string): boolean {
  try {
    return ((JSON.parse(out) as { failed?: unknown }).failed ?? 0) !== 0;
  } catch {
    return true;
  }
}
