/** The benchmark's CPU budget (bench/budget.ts): per-trade costs and each target's verdict. */
import { describe, expect, it } from 'vitest';
import { cpuPerTrade, perCores, targetBudget, total } from '../../bench/budget.js';
import type { CpuReport } from '../../bench/proc.js';

const report = (seconds: number, roles: Record<string, number>): CpuReport => ({
  seconds,
  roles,
  runQueue: {},
  machineBusy: 0,
  notOurs: 0,
  cores: 2,
});

describe('the CPU budget', () => {
  it('turns a window into µs of CPU per trade for the roles on the path only', () => {
    // 10 s; the connector half a core, the sink server a whole one; 100,000 trades.
    const c = cpuPerTrade({
      trades: 100_000,
      cpu: report(10, { connector: 50, 'pg-sink': 100, bench: 30 }),
    });
    expect(c).toEqual({ connector: 50, 'pg-sink': 100 });
    expect(total(c)).toBe(150);
    // 150 µs per trade on 2 cores: at most 13,333 trades/s.
    expect(Math.round(perCores(150, 2))).toBe(13_333);
  });

  it('calls a target out of reach when the servers alone need more than it leaves', () => {
    const parts = [
      { what: 'walsender', micros: 7.5 },
      { what: 'receive', micros: 3.6 },
      { what: 'insert', micros: 11.4 },
    ];
    // 80,000/s on 2 cores leaves 25 µs per trade; the servers need 22.5 of it.
    const near = targetBudget({ target: 't', needs: 80_000, cores: 2, floorParts: parts, now: 31 });
    expect(near.budget).toBe(25);
    expect(near.floor).toBeCloseTo(22.5);
    expect(near.verdict).toBe('needs less CPU');
    expect(
      targetBudget({ target: 't', needs: 95_000, cores: 2, floorParts: parts, now: 31 }).verdict,
    ).toBe('out of reach');
    expect(
      targetBudget({ target: 't', needs: 60_000, cores: 2, floorParts: parts, now: 31 }).verdict,
    ).toBe('CPU allows it');
  });
});
