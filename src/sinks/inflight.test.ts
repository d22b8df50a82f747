import { describe, expect, it } from 'vitest';
import { Batch, type Change } from './batch.js';
import { InflightQueue, type InflightOptions } from './inflight.js';

const NEVER = new AbortController().signal;

function del(id: number, lsn = 1n): Change {
  return { kind: 'trade_delete', lsn, tradeId: String(id) };
}

function queue(opts: Partial<InflightOptions> = {}, sinks = ['timescale']): InflightQueue {
  return new InflightQueue({ batchMaxRows: 3, maxRows: 100, maxBytes: 1 << 20, ...opts }, sinks);
}

/** Whether a promise has settled after pending microtasks ran. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
}

describe('InflightQueue', () => {
  it('seals a batch at batchMaxRows', () => {
    const q = queue({ batchMaxRows: 3 });
    for (let i = 0; i < 4; i++) q.push(del(i), 10);
    const b = q.peek('timescale');
    expect(b?.changes.map((c) => (c.kind === 'trade_delete' ? c.tradeId : ''))).toEqual([
      '0',
      '1',
      '2',
    ]);
    expect(b?.checkpoint).toBeNull();
    expect(b?.bytes).toBe(30);
    expect(q.rows).toBe(4);
    expect(q.bytes).toBe(40);
  });

  it('does not hand out an open batch mid-transaction, only once it holds a commit', () => {
    const q = queue({ batchMaxRows: 10 });
    q.push(del(1), 1);
    q.push(del(2), 1);
    expect(q.peek('timescale')).toBeNull();
    q.commit(500n, 7n, true);
    const b = q.peek('timescale');
    expect(b?.rows).toBe(2);
    expect(b?.checkpoint).toBe(500n);
    expect(b?.commitTime).toBe(7n);
    expect(b?.commits).toBe(1);
    // The same batch again until released; nothing after it.
    expect(q.peek('timescale')).toBe(b);
    q.release('timescale', b!);
    expect(q.peek('timescale')).toBeNull();
    expect(q.idle).toBe(true);
  });

  it('next() waits for a commit, then resolves with the batch', async () => {
    const q = queue({ batchMaxRows: 10 });
    q.push(del(1), 1);
    const p = q.next('timescale', NEVER);
    expect(await settled(p)).toBe(false);
    q.push(del(2), 1);
    expect(await settled(p)).toBe(false);
    q.commit(9n, null, true);
    const b = await p;
    expect(b?.rows).toBe(2);
    expect(b?.checkpoint).toBe(9n);
  });

  it('a transaction of 3×batchMaxRows spans several batches; only the last carries the checkpoint', () => {
    const q = queue({ batchMaxRows: 4 });
    for (let i = 0; i < 12; i++) q.push(del(i, 100n), 1);
    q.commit(200n, 5n, true);
    const batches: Batch[] = [];
    for (;;) {
      const b = q.peek('timescale');
      if (!b) break;
      batches.push(b);
      q.release('timescale', b);
    }
    expect(batches.length).toBeGreaterThanOrEqual(3);
    expect(batches.reduce((n, b) => n + b.rows, 0)).toBe(12);
    expect(batches.every((b) => b.rows <= 4)).toBe(true);
    expect(batches.map((b) => b.checkpoint)).toEqual([
      ...batches.slice(0, -1).map(() => null),
      200n,
    ]);
    expect(batches.map((b) => b.seq)).toEqual(batches.map((_, i) => batches[0]!.seq + i));
    expect(q.idle).toBe(true);
    expect(q.rows).toBe(0);
  });

  it('two sinks each see every batch in order; a batch is dropped after both released it', () => {
    const q = queue({ batchMaxRows: 2 }, ['timescale', 'kafka']);
    for (let i = 0; i < 4; i++) q.push(del(i), 10);
    q.commit(50n, null, true);
    q.push(del(4), 10);
    q.commit(60n, null, true);
    expect(q.rows).toBe(5);

    const drain = (sink: string) => {
      const out: Batch[] = [];
      for (let b = q.peek(sink); b; b = q.peek(sink)) {
        out.push(b);
        q.release(sink, b);
      }
      return out;
    };
    const t = drain('timescale');
    // kafka has written nothing yet: nothing may be dropped
    expect(q.rows).toBe(5);
    expect(q.bytes).toBe(50);
    expect(q.idle).toBe(false);

    const k1 = q.peek('kafka')!;
    expect(k1).toBe(t[0]);
    q.release('kafka', k1);
    expect(q.rows).toBe(3);
    expect(q.bytes).toBe(30);
    const k = [k1, ...drain('kafka')];
    expect(k).toEqual(t);
    expect(k.map((b) => b.seq)).toEqual([...k.map((b) => b.seq)].sort((a, b) => a - b));
    const ids = k.flatMap((b) =>
      b.changes.map((c) => (c.kind === 'trade_delete' ? c.tradeId : '')),
    );
    expect(ids).toEqual(['0', '1', '2', '3', '4']);
    expect(k.at(-1)?.checkpoint).toBe(60n);
    expect(q.rows).toBe(0);
    expect(q.bytes).toBe(0);
    expect(q.idle).toBe(true);
  });

  it('a sink behind takes the sealed batches waiting after its next one, up to batchMaxRows in all, and merges them', () => {
    const q = queue({ batchMaxRows: 5 }, ['timescale', 'kafka']);
    // Three transactions, each sealed as its own batch by a sink that keeps up.
    for (const [ids, lsn] of [
      [[0, 1], 10n],
      [[2, 3], 20n],
      [[4, 5], 30n],
    ] as const) {
      for (const id of ids) q.push(del(id, lsn - 1n), 1);
      q.commit(lsn, lsn * 100n, true);
      const b = q.peek('timescale')!;
      q.release('timescale', b);
    }
    const first = q.peek('kafka')!;
    const more = q.following('kafka', first);
    // 2 + 2 rows fit in 5; the third batch would make 6.
    expect(more.map((b) => b.seq)).toEqual([first.seq + 1]);
    expect(q.following('timescale', first)).toEqual([]);

    const merged = Batch.merged([first, ...more]);
    expect(merged.changes.map((c) => (c.kind === 'trade_delete' ? c.tradeId : ''))).toEqual([
      '0',
      '1',
      '2',
      '3',
    ]);
    expect([merged.checkpoint, merged.commitTime, merged.commits, merged.bytes]).toEqual([
      20n,
      2000n,
      2,
      4,
    ]);
    expect(Batch.merged([first])).toBe(first);
    for (const b of [first, ...more]) q.release('kafka', b);
    expect(q.rows).toBe(2);
    const last = q.peek('kafka')!;
    expect(last.checkpoint).toBe(30n);
    expect(q.following('kafka', last)).toEqual([]);
  });

  it('a merged run keeps the last checkpoint when it ends inside a transaction', () => {
    // Batches seal at 2 rows (half of maxRows); a run may hold 3.
    const q = queue({ batchMaxRows: 3, maxRows: 4 }, ['timescale', 'kafka']);
    q.push(del(0, 9n), 1);
    q.commit(10n, 1n, true);
    // A transaction of 4 rows spans two sealed batches; its commit is still to come.
    for (let i = 1; i <= 4; i++) q.push(del(i, 19n), 1);
    const batches: Batch[] = [];
    for (let b = q.peek('timescale'); b; b = q.peek('timescale')) {
      batches.push(b);
      q.release('timescale', b);
    }
    expect(batches.map((b) => [b.rows, b.checkpoint])).toEqual([
      [1, 10n],
      [2, null],
      [2, null],
    ]);
    const first = q.peek('kafka')!;
    const merged = Batch.merged([first, ...q.following('kafka', first)]);
    expect(merged.rows).toBe(3);
    // The checkpoint moves only at commits: the half transaction adds rows, not a checkpoint.
    expect(merged.checkpoint).toBe(10n);
  });

  it('full at maxRows; drained() resolves once back under half', async () => {
    const q = queue({ batchMaxRows: 2, maxRows: 8, maxBytes: 1 << 20 });
    for (let i = 0; i < 7; i++) q.push(del(i), 1);
    expect(q.full).toBe(false);
    expect(await settled(q.drained())).toBe(true);
    q.push(del(7), 1);
    expect(q.full).toBe(true);
    q.commit(10n, null, true);
    const drained = q.drained();
    q.release('timescale', q.peek('timescale')!); // 6 held
    expect(await settled(drained)).toBe(false);
    q.release('timescale', q.peek('timescale')!); // 4 held: half
    expect(await settled(drained)).toBe(true);
    expect(q.full).toBe(false);
  });

  it('full at maxBytes; drained() waits until bytes are under half', async () => {
    const q = queue({ batchMaxRows: 1, maxRows: 1000, maxBytes: 100 });
    q.push(del(1), 60);
    q.push(del(2), 40);
    expect(q.full).toBe(true);
    const drained = q.drained();
    q.release('timescale', q.peek('timescale')!); // 40 bytes left
    expect(await settled(drained)).toBe(true);
  });

  it('flushAll() seals a mid-transaction batch and resolves after every sink released everything', async () => {
    const q = queue({ batchMaxRows: 10 }, ['timescale', 'kafka']);
    q.push(del(1), 1);
    q.push(del(2), 1);
    const flushed = q.flushAll();
    expect(await settled(flushed)).toBe(false);
    const t = q.peek('timescale')!;
    expect(t.rows).toBe(2);
    q.release('timescale', t);
    expect(await settled(flushed)).toBe(false);
    q.release('kafka', q.peek('kafka')!);
    expect(await settled(flushed)).toBe(true);
    expect(q.idle).toBe(true);
  });

  it('flushAll() on an idle queue resolves at once', async () => {
    expect(await settled(queue().flushAll())).toBe(true);
  });

  it('next() returns null when the signal aborts', async () => {
    const q = queue();
    const ac = new AbortController();
    const p = q.next('timescale', ac.signal);
    expect(await settled(p)).toBe(false);
    ac.abort();
    expect(await p).toBeNull();
    expect(await q.next('timescale', ac.signal)).toBeNull();
  });

  it('releasing out of order throws and changes nothing', () => {
    const q = queue({ batchMaxRows: 1 });
    q.push(del(1), 1);
    q.push(del(2), 1);
    const first = q.peek('timescale')!;
    q.release('timescale', first);
    const second = q.peek('timescale')!;
    expect(() => q.release('timescale', first)).toThrow(/out of order/);
    expect(q.rows).toBe(1);
    expect(q.peek('timescale')).toBe(second);
  });

  it('unknown sink throws', () => {
    expect(() => queue().peek('nope')).toThrow(/unknown sink/);
  });

  it('an idle checkpoint without rows yields an empty batch carrying it', async () => {
    const q = queue();
    q.commit(0x1234n, null, false);
    const b = await q.next('timescale', NEVER);
    expect(b?.rows).toBe(0);
    expect(b?.checkpoint).toBe(0x1234n);
    expect(b?.commits).toBe(0);
    expect(b?.commitTime).toBeNull();
    q.release('timescale', b!);
    expect(q.idle).toBe(true);
  });

  it('a later commit in the same open batch raises its checkpoint, never lowers it', () => {
    const q = queue({ batchMaxRows: 10 });
    q.push(del(1), 1);
    q.commit(300n, 1n, true);
    q.push(del(2), 1);
    q.commit(400n, 2n, true);
    q.commit(350n, null, false);
    const b = q.peek('timescale')!;
    expect(b.rows).toBe(2);
    expect(b.checkpoint).toBe(400n);
    expect(b.commits).toBe(2);
  });

  it('seals a full batch at its last commit, carrying the transaction still arriving', () => {
    const q = queue({ batchMaxRows: 4 });
    q.push(del(1), 10);
    q.push(del(2), 10);
    q.commit(100n, 1n, true);
    q.push(del(3), 10);
    q.push(del(4), 10);
    const b = q.peek('timescale');
    expect(b?.changes.map((c) => (c.kind === 'trade_delete' ? c.tradeId : ''))).toEqual(['1', '2']);
    expect(b?.checkpoint).toBe(100n);
    expect(b?.bytes).toBe(20);
    q.release('timescale', b!);
    // The open batch holds the rest of the transaction, and is not handed out before its commit.
    expect(q.peek('timescale')).toBeNull();
    expect(q.rows).toBe(2);
    expect(q.bytes).toBe(20);
    q.commit(200n, 2n, true);
    expect(q.peek('timescale')?.rows).toBe(2);
  });

  it('a transaction larger than a batch still spans batches', () => {
    const q = queue({ batchMaxRows: 2 });
    for (let i = 0; i < 5; i++) q.push(del(i), 1);
    const b = q.peek('timescale');
    expect(b?.rows).toBe(2);
    expect(b?.checkpoint).toBeNull();
  });

  it('flushCommitted writes what committed and drops the uncommitted tail', async () => {
    const q = queue({ batchMaxRows: 10, maxRows: 100 });
    q.push(del(1), 5);
    q.commit(100n, 1n, true);
    q.push(del(2), 5);
    q.push(del(3), 5);
    q.push(del(4), 5);
    const flushed = q.flushCommitted();
    expect(q.rows).toBe(1);
    expect(q.bytes).toBe(5);
    const b = q.peek('timescale');
    expect(b?.rows).toBe(1);
    expect(b?.checkpoint).toBe(100n);
    expect(await settled(flushed)).toBe(false);
    q.release('timescale', b!);
    expect(await settled(flushed)).toBe(true);
    expect(q.idle).toBe(true);
  });

  it('a full queue keeps the transaction still arriving open only while it is under half the bounds', () => {
    const q = queue({ batchMaxRows: 100, maxRows: 10 });
    q.push(del(1), 1);
    q.commit(100n, 1n, true);
    for (let i = 2; i <= 5; i++) q.push(del(i), 1);
    // sealRows is half of maxRows: the batch sealed at its commit; the tail stays open.
    expect(q.peek('timescale')?.rows).toBe(1);
    expect(q.rows).toBe(5);
  });

  it('flushCommitted with no commit at all drops the open transaction', async () => {
    const q = queue({ batchMaxRows: 10 });
    q.push(del(1), 5);
    expect(q.discardUncommitted()).toBe(1);
    expect(q.idle).toBe(true);
    expect(await settled(q.flushCommitted())).toBe(true);
  });

  it('an idle sink takes the open batch up to its last commit, never a transaction still arriving', () => {
    const q = queue({ batchMaxRows: 10 });
    q.push(del(1), 1);
    q.commit(100n, 1n, true);
    q.push(del(2), 1);
    const b = q.peek('timescale');
    expect(b?.changes.map((c) => (c.kind === 'trade_delete' ? c.tradeId : ''))).toEqual(['1']);
    expect(b?.checkpoint).toBe(100n);
    q.release('timescale', b!);
    expect(q.peek('timescale')).toBeNull();
    expect(q.rows).toBe(1);
  });
});

/**
 * The stream as main.ts drives it: push while the queue is not full, otherwise
 * wait for drained(); one sink writes whatever batch it can get. Returns the
 * rows written, or throws if neither side can move (the wedge of issue 11.7).
 */
async function pumpOneTransaction(
  opts: InflightOptions,
  rows: number,
  rowBytes: (i: number) => number,
): Promise<number> {
  const q = new InflightQueue(opts, ['timescale']);
  let written = 0;
  let pushed = 0;
  let committed = false;
  for (let step = 0; ; step++) {
    if (step > 10 * rows + 100) throw new Error('no progress');
    if (pushed < rows && !q.full) {
      q.push(del(pushed, 7n), rowBytes(pushed));
      pushed += 1;
      continue;
    }
    if (pushed === rows && !committed) {
      q.commit(9n, 1n, true);
      committed = true;
    }
    const b = q.peek('timescale');
    if (!b) {
      if (committed && q.idle) return written;
      throw new Error(`wedged: ${pushed}/${rows} pushed, ${q.rows} rows / ${q.bytes} bytes held`);
    }
    const waiting = q.full ? q.drained() : null;
    q.release('timescale', b);
    written += b.rows;
    // Whoever paused the stream must hear back once the sink emptied the queue.
    if (waiting && q.idle) expect(await settled(waiting)).toBe(true);
  }
}

describe('InflightQueue: progress whatever the bounds (issue 11.7)', () => {
  it('a transaction that fills the byte bound mid-way is written in batches that seal on bytes', async () => {
    // 1 MiB, Ponder-sized rows of ~276 bytes: full after ~3,800 rows.
    const opts = { batchMaxRows: 5000, maxRows: 10_000, maxBytes: 1 << 20 };
    expect(await pumpOneTransaction(opts, 20_000, () => 276)).toBe(20_000);
  });

  it('a batch sealed on bytes stays under a quarter of the byte bound', () => {
    const q = queue({ batchMaxRows: 5000, maxRows: 10_000, maxBytes: 1000 });
    for (let i = 0; i < 30; i++) q.push(del(i), 10);
    const b = q.peek('timescale');
    expect(b?.bytes).toBe(250);
    expect(b?.checkpoint).toBeNull();
  });

  it('in-flight rows below batchMaxRows do not wedge either', async () => {
    const opts = { batchMaxRows: 5000, maxRows: 1000, maxBytes: 1 << 30 };
    expect(await pumpOneTransaction(opts, 12_345, () => 10)).toBe(12_345);
  });

  it('one row larger than the whole byte bound is still carried', async () => {
    const opts = { batchMaxRows: 100, maxRows: 1000, maxBytes: 100 };
    expect(await pumpOneTransaction(opts, 50, (i) => (i % 7 === 0 ? 500 : 3))).toBe(50);
  });

  it('any mix of bounds and row sizes makes progress', async () => {
    let seed = 42;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let run = 0; run < 200; run++) {
      const opts = {
        batchMaxRows: 1 + rand(50),
        maxRows: 1 + rand(60),
        maxBytes: 1 + rand(500),
      };
      const rows = 1 + rand(300);
      const sizes = Array.from({ length: rows }, () => (rand(3) === 0 ? rand(1000) : rand(20)));
      expect(await pumpOneTransaction(opts, rows, (i) => sizes[i]!)).toBe(rows);
    }
  });

  it('a full queue never seals a small transaction still arriving (a reconnect would write it twice)', () => {
    const q = queue({ batchMaxRows: 100, maxRows: 10 });
    for (let i = 0; i < 4; i++) q.push(del(i), 1);
    q.commit(100n, 1n, true);
    for (let i = 4; i < 8; i++) q.push(del(i), 1);
    q.commit(200n, 2n, true);
    // Two sealed batches of committed rows fill the queue; a third transaction begins.
    q.push(del(8), 1);
    q.push(del(9), 1);
    q.push(del(10), 1);
    expect(q.full).toBe(true);
    const sealed: number[] = [];
    for (let b = q.peek('timescale'); b; b = q.peek('timescale')) {
      sealed.push(b.rows);
      expect(b.checkpoint).not.toBeNull();
      q.release('timescale', b);
    }
    expect(sealed.reduce((a, n) => a + n, 0)).toBe(8);
    expect(q.discardUncommitted()).toBe(3);
  });
});
