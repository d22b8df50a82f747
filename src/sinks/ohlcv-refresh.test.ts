import { describe, expect, it } from 'vitest';
import { recordRefreshText, refreshWindows, StaleSpan } from './ohlcv-refresh.js';

const H = 3600;

describe('StaleSpan', () => {
  it('keeps the span of times before the horizon and ignores the rest (the policies refresh those)', () => {
    const s = new StaleSpan(100 * H);
    expect(s.span()).toBeNull();
    s.add(100 * H); // at the horizon: a policy's
    s.add(Number('not a time'));
    expect(s.span()).toBeNull();
    s.add(50 * H + 7);
    s.add(20 * H);
    s.add(60 * H);
    expect(s.span()).toEqual({ from: 20 * H, to: 60 * H });
  });

  it('takes a range up to the horizon (a switch rewrites rows between two times)', () => {
    const s = new StaleSpan(100 * H);
    s.addRange(100 * H, 120 * H); // wholly the policies'
    expect(s.span()).toBeNull();
    s.addRange(10 * H, 20 * H);
    expect(s.span()).toEqual({ from: 10 * H, to: 20 * H });
    s.addRange(50 * H, 150 * H); // its part before the horizon is ours
    expect(s.span()).toEqual({ from: 10 * H, to: 100 * H - 1 });
  });

  it('is open at both ends once rows of unknown times went', () => {
    const s = new StaleSpan(100 * H);
    s.add(20 * H);
    s.addAll();
    expect(s.span()).toEqual({ from: null, to: null });
  });
});

describe('refreshWindows', () => {
  it('widens to whole hours, the end after the last trade', () => {
    expect(refreshWindows([{ from: 10 * H + 5, to: 10 * H + 5 }], H, 100 * H)).toEqual([
      { from: 10 * H, to: 11 * H },
    ]);
    // A trade exactly on an hour still gets its bucket.
    expect(refreshWindows([{ from: 10 * H, to: 12 * H }], H, 100 * H)).toEqual([
      { from: 10 * H, to: 13 * H },
    ]);
  });

  it('merges overlapping and touching windows, keeps gaps', () => {
    const spans = [
      { from: 30 * H + 1, to: 31 * H },
      { from: 10 * H, to: 11 * H - 1 },
      { from: 11 * H, to: 12 * H + 9 },
      { from: 12 * H + 10, to: 12 * H + 20 },
    ];
    expect(refreshWindows(spans, H, 100 * H)).toEqual([
      { from: 10 * H, to: 13 * H },
      { from: 30 * H, to: 32 * H },
    ]);
  });

  it('closes an open end at the ceiling (newer trades are the policies), and it swallows the rest', () => {
    const spans = [
      { from: 10 * H, to: 11 * H },
      { from: null, to: null },
    ];
    expect(refreshWindows(spans, H, 99.5 * H)).toEqual([{ from: null, to: 100 * H }]);
  });
});

describe('recordRefreshText', () => {
  it('spells the span inline, an open end as NULL, the slot quoted', () => {
    expect(recordRefreshText("it's", { from: 1700000000, to: 1700003600.5 })).toMatch(
      /VALUES \(E'it''s', to_timestamp\(1700000000::float8\), to_timestamp\(1700003600\.5::float8\)\)$/,
    );
    expect(recordRefreshText('s', { from: null, to: null })).toMatch(
      /VALUES \(E's', NULL, NULL\)$/,
    );
    expect(() => recordRefreshText('s', { from: NaN, to: 1 })).toThrow(/not finite/);
  });
});
