import { describe, expect, it } from 'vitest';
import type { Change } from './batch.js';
import { BEFORE_TX_SEQ, compareVersions, versionFields, versionOf } from './version.js';

describe('row versions', () => {
  it('order by generation first: a new source history wins whatever its LSNs', () => {
    expect(compareVersions({ gen: 2, lsn: 1n, seq: 0 }, { gen: 1, lsn: 1n << 40n, seq: 9 })).toBe(
      1,
    );
    expect(compareVersions({ gen: 1, lsn: 1n << 40n, seq: 9 }, { gen: 2, lsn: 1n, seq: 0 })).toBe(
      -1,
    );
  });

  it('then by commit LSN, then by position in the transaction', () => {
    expect(compareVersions({ gen: 1, lsn: 10n, seq: 99 }, { gen: 1, lsn: 11n, seq: 0 })).toBe(-1);
    expect(compareVersions({ gen: 1, lsn: 10n, seq: 3 }, { gen: 1, lsn: 10n, seq: 2 })).toBe(1);
    expect(compareVersions({ gen: 1, lsn: 10n, seq: 3 }, { gen: 1, lsn: 10n, seq: 3 })).toBe(0);
  });

  it('a row of no transaction sorts before every change committed at its LSN', () => {
    const snapshot: Change = { kind: 'trade_delete', lsn: 10n, tradeId: 'a' };
    const first: Change = { ...snapshot, tx: { xid: 1, commitTime: 0n }, seq: 0 };
    expect(versionOf(snapshot, 4)).toEqual({ gen: 4, lsn: 10n, seq: BEFORE_TX_SEQ });
    expect(compareVersions(versionOf(snapshot, 4), versionOf(first, 4))).toBe(-1);
    expect(versionOf({ ...first, gen: 3 }, 4).gen).toBe(3);
  });

  it('LSNs travel as text, never as a JS number', () => {
    expect(versionFields({ gen: 1, lsn: 0xffff_ffff_ffff_fff0n, seq: 2 })).toEqual({
      g: 1,
      l: 'FFFFFFFF/FFFFFFF0',
      s: 2,
    });
  });
});
