import { describe, expect, it } from 'vitest';
import { planLsnReset } from './reset-plan.js';

const base = { force: false, confirmedFlush: 100n, checkpoint: 200n, walEnd: 300n };

describe('planLsnReset', () => {
  it('replays between the confirmed flush and the checkpoint', () => {
    expect(planLsnReset({ ...base, target: 100n })).toEqual({
      ok: true,
      mode: 'replay',
      from: 200n,
      to: 100n,
    });
  });

  it('refuses what the slot can no longer replay, pointing at backfill', () => {
    const p = planLsnReset({ ...base, target: 99n });
    expect(p.ok).toBe(false);
    expect(!p.ok && p.message).toMatch(/confirmed_flush_lsn .*backfill/);
  });

  it('skips forward only with force, and never past the WAL end', () => {
    expect(planLsnReset({ ...base, target: 250n }).ok).toBe(false);
    expect(planLsnReset({ ...base, target: 250n, force: true })).toMatchObject({
      ok: true,
      mode: 'skip',
    });
    expect(planLsnReset({ ...base, target: 301n, force: true }).ok).toBe(false);
  });

  it('a reset to the checkpoint itself changes nothing', () => {
    expect(planLsnReset({ ...base, target: 200n })).toMatchObject({ ok: true, mode: 'noop' });
  });
});
