import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Batch, type Change } from './batch.js';
import {
  alreadySent,
  decodeProgress,
  encodeProgress,
  type KafkaProgress,
  newerProgress,
  progressAfter,
  sameProgress,
} from './kafka-progress.js';

const tx = { xid: 7, commitTime: 0n };

function change(lsn: bigint, seq: number): Change {
  return { kind: 'trade_delete', lsn, tradeId: `${lsn}/${seq}`, tx, seq };
}

function snapshotRow(lsn: bigint): Change {
  return { kind: 'trade_delete', lsn, tradeId: `r${lsn}` };
}

function batch(changes: Change[], checkpoint: bigint | null): Batch {
  const b = new Batch(0);
  b.changes.push(...changes);
  b.checkpoint = checkpoint;
  return b;
}

describe('progress record', () => {
  it('round-trips, with and without a half-sent transaction', () => {
    const note = { holder: 'host:1', at: 0 };
    for (const p of [
      { lsn: 0x16b3748n, partial: null },
      { lsn: 0x1_0000_0010n, partial: { lsn: 0x1_0000_0020n, seq: 4999 } },
    ] satisfies KafkaProgress[]) {
      const text = encodeProgress(p, note);
      expect(JSON.parse(text)).toMatchObject({ holder: 'host:1', at: '1970-01-01T00:00:00.000Z' });
      expect(decodeProgress(text)).toEqual(p);
    }
    expect(encodeProgress({ lsn: 0x16b3748n, partial: null }, note)).toContain('"lsn":"0/16B3748"');
  });

  it('refuses what is not one', () => {
    expect(() => decodeProgress('nope')).toThrow(/not JSON/);
    expect(() => decodeProgress('{}')).toThrow(/no lsn/);
    expect(() => decodeProgress('{"lsn":"0/1","partial":{"lsn":"0/2"}}')).toThrow(/partial/);
    expect(() => decodeProgress('{"lsn":"x"}')).toThrow(/invalid LSN/);
  });
});

describe('alreadySent', () => {
  const p: KafkaProgress = { lsn: 200n, partial: { lsn: 300n, seq: 4 } };
  it('skips transactions that ended by the progress, and the half-sent one up to its position', () => {
    expect(alreadySent(change(100n, 9), p)).toBe(true);
    expect(alreadySent(change(200n, 0), p)).toBe(false); // commits at 200: ends after it
    expect(alreadySent(change(300n, 4), p)).toBe(true);
    expect(alreadySent(change(300n, 5), p)).toBe(false);
    expect(alreadySent(change(400n, 0), p)).toBe(false);
  });
  it('never skips rows of no streamed transaction, nor anything without progress', () => {
    expect(alreadySent(snapshotRow(100n), p)).toBe(false);
    expect(alreadySent(change(100n, 0), null)).toBe(false);
  });
});

describe('progressAfter', () => {
  it('moves to the batch checkpoint; a batch ending mid-transaction records its last change', () => {
    expect(progressAfter(batch([change(100n, 0)], 150n), null)).toEqual({
      lsn: 150n,
      partial: null,
    });
    const half = progressAfter(batch([change(100n, 0), change(200n, 0), change(200n, 1)], 150n), {
      lsn: 50n,
      partial: null,
    });
    expect(half).toEqual({ lsn: 150n, partial: { lsn: 200n, seq: 1 } });
    // The middle of that transaction, then its end.
    const middle = progressAfter(batch([change(200n, 2), snapshotRow(200n)], null), half);
    expect(middle).toEqual({ lsn: 150n, partial: { lsn: 200n, seq: 2 } });
    expect(progressAfter(batch([change(200n, 3)], 250n), middle)).toEqual({
      lsn: 250n,
      partial: null,
    });
  });
  it('never moves back, nor forgets a half-sent transaction a replayed batch does not reach', () => {
    const p: KafkaProgress = { lsn: 250n, partial: { lsn: 300n, seq: 7 } };
    const replay = progressAfter(batch([change(100n, 0), change(300n, 2)], 150n), p);
    expect(replay).toEqual(p);
    expect(sameProgress(replay, p)).toBe(true);
    expect(progressAfter(batch([snapshotRow(1n)], null), null)).toBeNull();
  });
});

/**
 * The model: source transactions streamed in batches cut anywhere (inside
 * transactions too), each batch one Kafka transaction with the progress
 * record, crashes between any two steps (a lost Kafka transaction), each
 * restart streaming again from at most the recorded position: every change
 * lands exactly once, in order.
 */
describe('exactly once under crashes (model)', () => {
  interface Step {
    cut: boolean;
    crash: boolean;
    rewind: number;
  }
  it('holds for any transaction sizes, batch cuts, crashes and replay starts', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 25 }),
        fc.array(fc.record({ cut: fc.boolean(), crash: fc.boolean(), rewind: fc.nat(3) }), {
          minLength: 1,
          maxLength: 400,
        }),
        (sizes, steps) => {
          // Transaction i commits at 100(i+1) and ends at 100(i+1) + 50.
          const commitOf = (i: number) => BigInt(100 * (i + 1));
          const sent: string[] = [];
          let progress: KafkaProgress | null = { lsn: 0n, partial: null };
          let step = 0;
          const next = (): Step => steps[step++ % steps.length] as Step;
          for (let restarts = 0; restarts < 200; restarts++) {
            // Restart at the recorded position, or (another sink behind) a few transactions earlier.
            const at = progress?.lsn ?? 0n;
            let first = sizes.findIndex((_, i) => commitOf(i) >= at);
            if (first < 0) break;
            first = Math.max(0, first - next().rewind);
            let open = new Batch(0);
            let crashed = false;
            const flush = (): boolean => {
              const records = open.changes.filter((c) => !alreadySent(c, progress));
              const after = progressAfter(open, progress);
              open = new Batch(0);
              // The Kafka transaction is lost (a crash, a failed commit); 20 lives at most.
              if (next().crash && restarts < 20) return false;
              for (const c of records) sent.push(c.kind === 'trade_delete' ? c.tradeId : '');
              progress = after;
              return true;
            };
            for (let i = first; i < sizes.length && !crashed; i++) {
              for (let seq = 0; seq < (sizes[i] as number) && !crashed; seq++) {
                open.changes.push(change(commitOf(i), seq));
                if (next().cut) crashed = !flush();
              }
              open.checkpoint = commitOf(i) + 50n;
              if (!crashed && next().cut) crashed = !flush();
            }
            if (!crashed && flush()) break;
          }
          const want = sizes.flatMap((n, i) =>
            Array.from({ length: n }, (_, seq) => `${commitOf(i)}/${seq}`),
          );
          expect(sent).toEqual(want);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('newerProgress', () => {
  it('takes the further position and the furthest half-sent transaction at or after it', () => {
    const a: KafkaProgress = { lsn: 200n, partial: { lsn: 300n, seq: 4 } };
    expect(newerProgress(a, null)).toBe(a);
    expect(newerProgress(null, null)).toBeNull();
    expect(newerProgress(a, { lsn: 100n, partial: null })).toEqual(a);
    expect(newerProgress(a, { lsn: 250n, partial: null })).toEqual({
      lsn: 250n,
      partial: { lsn: 300n, seq: 4 },
    });
    expect(newerProgress(a, { lsn: 400n, partial: null })).toEqual({ lsn: 400n, partial: null });
    expect(newerProgress(a, { lsn: 200n, partial: { lsn: 300n, seq: 9 } })).toEqual({
      lsn: 200n,
      partial: { lsn: 300n, seq: 9 },
    });
  });
});
