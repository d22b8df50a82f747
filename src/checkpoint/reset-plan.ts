import { type Lsn, formatLsn } from './lsn.js';

/** What an LSN reset will do, decided from the slot and the checkpoints (pure). */
export type ResetPlan =
  | { ok: true; mode: 'replay' | 'skip' | 'noop'; from: Lsn; to: Lsn }
  | { ok: false; message: string };

/**
 * A logical slot cannot replay WAL before its confirmed_flush_lsn, so a reset
 * may only go back as far as that; forward it skips changes, which needs
 * `force`; past the server's WAL end there is nothing to start from.
 */
export function planLsnReset(p: {
  target: Lsn;
  force: boolean;
  confirmedFlush: Lsn;
  checkpoint: Lsn;
  walEnd: Lsn;
}): ResetPlan {
  const t = formatLsn(p.target);
  if (p.target < p.confirmedFlush) {
    return {
      ok: false,
      message:
        `${t} is before the slot's confirmed_flush_lsn ${formatLsn(p.confirmedFlush)}: a logical slot cannot replay WAL it has confirmed. ` +
        'To reprocess older history, use POST /admin/backfill (or `slotline backfill --from`)',
    };
  }
  if (p.target > p.walEnd) {
    return { ok: false, message: `${t} is past the server's WAL end ${formatLsn(p.walEnd)}` };
  }
  if (p.target > p.checkpoint && !p.force) {
    return {
      ok: false,
      message:
        `${t} is ahead of the sinks' checkpoint ${formatLsn(p.checkpoint)}: resetting there skips every change in between. ` +
        'Send "force": true to skip them',
    };
  }
  const mode = p.target === p.checkpoint ? 'noop' : p.target < p.checkpoint ? 'replay' : 'skip';
  return { ok: true, mode, from: p.checkpoint, to: p.target };
}
