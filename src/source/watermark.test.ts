import { describe, expect, it } from 'vitest';
import type pg from 'pg';
import type { Lsn } from '../checkpoint/lsn.js';
import { createLogger } from '../log.js';
import type { ChangeRouter } from '../trades/router.js';
import { WatermarkReader, type ChangedKeys } from './watermark.js';

/** A stand-in stream: the test plays the watermarks back as the router would. */
function setup() {
  const marks: string[] = [];
  let wal = 0;
  const source = {
    query: (text: string, params?: string[]) => {
      if (text.includes('pg_logical_emit_message')) marks.push(params?.[1] ?? '');
      // The WAL moves on: each high watermark commits further along.
      else wal += 0x100;
      return Promise.resolve({ rows: [{ lsn: `0/${wal.toString(16)}` }] });
    },
  } as unknown as pg.Pool;
  const router = {
    watcher: null,
    skipBefore: 0n,
    stats: { lastCommitEnd: null },
  } as unknown as ChangeRouter;
  let flushed: Lsn = 0n;
  const reader = new WatermarkReader({
    slot: 's',
    source,
    router,
    flushLsn: () => flushed,
    log: createLogger({ level: 'silent' }),
    pollMs: 1,
  });
  reader.start();
  const next = async () => {
    for (let i = 0; i < 50 && marks.length === 0; i++) await new Promise((r) => setTimeout(r, 1));
    return marks.shift() as string;
  };
  return { reader, router, marks, next, flush: (l: Lsn) => (flushed = l) };
}

describe('WatermarkReader', () => {
  it('applies at the high watermark without the keys the stream changed, and resolves once durable', async () => {
    const t = setup();
    const applied: { rows: string[]; changed: string[]; lsn: Lsn }[] = [];
    let done = false;
    const read = t.reader
      .read(
        {
          select: () => Promise.resolve(['a', 'b']),
          apply: (rows, changed: ChangedKeys, lsn) =>
            applied.push({ rows, changed: [...changed.trades], lsn }),
        },
        new AbortController().signal,
      )
      .then((r) => {
        done = true;
        return r;
      });
    t.reader.onWatermark(await t.next(), 10n);
    t.reader.onTradeKey('b');
    const high = await t.next();
    t.reader.onWatermark(high, 20n);
    expect(applied).toEqual([{ rows: ['a', 'b'], changed: ['b'], lsn: 20n }]);
    // A replay of the high watermark before it is durable applies again.
    t.reader.onWatermark(high, 20n);
    expect(applied).toHaveLength(2);
    await new Promise((r) => setTimeout(r, 10));
    expect(done).toBe(false);
    t.flush(21n);
    expect((await read).lsn).toBe(20n);
    expect(t.router.watcher).toBe(t.reader);
  });

  it('an abort ends a wait for watermarks that never come (a paused stream)', async () => {
    const t = setup();
    const abort = new AbortController();
    const read = t.reader.read(
      { select: () => Promise.resolve([]), apply: () => undefined },
      abort.signal,
    );
    await t.next();
    abort.abort(new Error('cancelled'));
    await expect(read).rejects.toThrow('cancelled');
  });

  it('reads again when the stream skipped the watermarks (an LSN reset forward)', async () => {
    const t = setup();
    let selects = 0;
    const read = t.reader.read(
      {
        select: () => Promise.resolve(++selects),
        apply: () => undefined,
      },
      new AbortController().signal,
    );
    await t.next();
    await t.next();
    t.router.skipBefore = 0x180n; // past the WAL position the high watermark committed at
    t.reader.onWatermark(await t.next(), 0x300n);
    t.reader.onWatermark(await t.next(), 0x310n);
    t.flush(0x311n);
    expect((await read).result).toBe(2);
  });
});
