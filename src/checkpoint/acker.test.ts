import { describe, expect, it } from 'vitest';
import { Acker } from './acker.js';

describe('Acker', () => {
  it('starts at the start LSN for every sink', () => {
    const a = new Acker(['timescale', 'kafka'], 100n);
    expect(a.flushLsn()).toBe(100n);
    expect(a.durableOf('timescale')).toBe(100n);
    expect(a.durableOf('kafka')).toBe(100n);
  });

  it('flushes the minimum over all sinks', () => {
    const a = new Acker(['timescale', 'kafka'], 100n);
    a.setDurable('timescale', 500n);
    expect(a.flushLsn()).toBe(100n);
    a.setDurable('kafka', 300n);
    expect(a.flushLsn()).toBe(300n);
    a.setDurable('kafka', 900n);
    expect(a.flushLsn()).toBe(500n);
  });

  it('ignores a sink reporting a lower LSN', () => {
    const a = new Acker(['timescale'], 100n);
    a.setDurable('timescale', 400n);
    a.setDurable('timescale', 200n);
    expect(a.durableOf('timescale')).toBe(400n);
    expect(a.flushLsn()).toBe(400n);
    a.setDurable('timescale', 50n);
    expect(a.flushLsn()).toBe(400n);
  });

  it('never reports a flush LSN below an earlier report', () => {
    const a = new Acker(['a', 'b'], 0n);
    let last = a.flushLsn();
    for (const [sink, lsn] of [
      ['a', 10n],
      ['b', 20n],
      ['a', 5n],
      ['b', 15n],
      ['a', 30n],
      ['b', 25n],
    ] as const) {
      a.setDurable(sink, lsn);
      const now = a.flushLsn();
      expect(now).toBeGreaterThanOrEqual(last);
      last = now;
    }
    expect(last).toBe(25n);
  });

  it('with no sinks stays at the start', () => {
    const a = new Acker([], 42n);
    expect(a.flushLsn()).toBe(42n);
  });

  it('throws for an unknown sink', () => {
    const a = new Acker(['timescale'], 0n);
    expect(() => a.setDurable('kafka', 10n)).toThrow(/unknown sink kafka/);
    expect(a.durableOf('kafka')).toBeUndefined();
    expect(a.flushLsn()).toBe(0n);
  });
});
