import { describe, expect, it } from 'vitest';
import { LeadershipLostError } from '../errors.js';
import { BEGIN_WRITE, FoldedOpening, StaleOpening } from './timescale-opening.js';

/** What a message headed by the opening returned before its COPY: BEGIN, SET, the lock, SAVEPOINT. */
const before = (lock: (string | null)[][]) => [[], [], lock, []];
const ours = () =>
  new FoldedOpening({ generation: 3, state: 'streaming' }, 'slot_a', 'timescale', '7');

describe('a write opening folded into its first message', () => {
  it('begins as every write does and locks the epoch in the same text, the slot quoted', () => {
    const o = new FoldedOpening({ generation: 1, state: null }, "it's", 'timescale', '1');
    expect(o.text.startsWith(`${BEGIN_WRITE}; SELECT`)).toBe(true);
    expect(o.text).toContain("WHERE l.slot = E'it''s'");
    expect(o.text).toContain('FOR SHARE OF l');
  });

  it('settles when the lock reads our epoch and the assumed generation and state', () => {
    const o = ours();
    expect(o.settled).toBeNull();
    o.settle(before([['7', 'me', '3', 'streaming']]));
    expect(o.settled).toEqual({ generation: 3, state: 'streaming' });
  });

  it("another replica's epoch fails the write with leadership_lost", () => {
    const o = ours();
    expect(() => o.settle(before([['8', 'another replica', '3', 'streaming']]))).toThrow(
      LeadershipLostError,
    );
    expect(() => o.settle(before([]))).toThrow(/epoch none/);
    expect(o.settled).toBeNull();
  });

  it('another generation or state than assumed asks for the write to be run again', () => {
    for (const row of [
      ['7', 'me', '4', 'streaming'],
      ['7', 'me', '3', 'snapshotting'],
      ['7', 'me', null, null],
    ]) {
      const o = ours();
      let thrown: unknown;
      try {
        o.settle(before([row]));
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(StaleOpening);
      expect(o.settled).toBeNull();
    }
    const o = ours();
    expect(() => o.settle(before([['7', 'me', '4', 'streaming']]))).toThrow(
      /generation or state changed \(now 4, streaming\)/,
    );
  });

  it("a message that failed before the lock completed reports the message's error", () => {
    const cause = new Error('connection terminated');
    expect(() => ours().settle([[], []], cause)).toThrow(cause);
    expect(() => ours().settle([])).toThrow(/no result for its lock/);
  });

  it('a message that failed after the lock is still checked: a lost epoch wins over the failure', () => {
    const o = ours();
    expect(() =>
      o.settle(before([['9', 'another replica', '3', 'streaming']]), new Error('unique_violation')),
    ).toThrow(LeadershipLostError);
    const p = ours();
    p.settle(before([['7', 'me', '3', 'streaming']]), new Error('unique_violation'));
    expect(p.settled).not.toBeNull();
  });
});

describe('a write that also ends in its opening message', () => {
  it('ends apart unless closeWith gave its end, which may be asked again', () => {
    const o = ours();
    expect(o.end()).toBeNull();
    let asked = 0;
    o.closeWith(() => [`SELECT ${++asked}`]);
    expect(o.end()).toEqual(['SELECT 1']);
    expect(o.end()).toEqual(['SELECT 2']);
  });

  it('has the server refuse another epoch, generation or state than assumed, the slot quoted', () => {
    const o = new FoldedOpening({ generation: 3, state: null }, "it's", 'timescale', '12');
    expect(o.expectText).toContain("slotline.refuse('SLE01'");
    expect(o.expectText).toContain("l.slot = E'it''s'");
    expect(o.expectText).toContain('l.epoch = 12');
    expect(o.expectText).toContain('coalesce(c.generation, 0) = 3');
    expect(o.expectText).toContain('c.state IS NOT DISTINCT FROM NULL');
    expect(ours().expectText).toContain("c.state IS NOT DISTINCT FROM E'streaming'");
    expect(
      () =>
        new FoldedOpening({ generation: 1, state: null }, 's', 'timescale', '1; DROP').expectText,
    ).toThrow(/not a leader epoch/);
  });

  it('is committed only once its lock was checked', () => {
    const o = ours();
    expect(() => o.noteCommitted()).toThrow(/before its lock was checked/);
    expect(o.committed).toBe(false);
    o.settle(before([['7', 'me', '3', 'streaming']]));
    o.noteCommitted();
    expect(o.committed).toBe(true);
  });
});
