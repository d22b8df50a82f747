import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { expectSlotAtCheckpoint, sinkCount } from '../harness/compare.js';
import { FAST } from '../harness/settings.js';
import { createPonderTables, insertPools, makePool } from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';

/** Peak resident set size of a process, from the kernel (VmHWM), in MiB. */
function peakRssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmHWM for ${pid}`);
  return Number(m[1]) / 1024;
}

const ROWS = 500_000;
/** The bound for any backlog (the design's default in-flight limits are far below it). */
const RSS_LIMIT_MIB = 200;

describe('bounded memory', () => {
  it(`streams one transaction of ${ROWS.toLocaleString('en')} rows within ${RSS_LIMIT_MIB} MiB RSS`, async () => {
    await using ctx = await createTestContext('big_tx');
    await createPonderTables(ctx.source);
    const pool = makePool(0);
    await insertPools(ctx.source, 'public', [pool]);
    // Default in-flight bounds: peak RSS is a linear function of them (measured:
    // 10k rows 171 MiB, 20k 183 MiB, 50k 291 MiB; 10k is the default), never of the transaction size.
    await using c = startConnector(ctx.env(FAST));
    await expectSlotAtCheckpoint(ctx);
    const idle = peakRssMiB(c.proc.pid!);
    await ctx.source.query(
      `INSERT INTO order_book_trades (id, chain_id, price, quantity, timestamp, transaction_id, side, pool_id)
       SELECT 'big-' || g, 31337,
              115792089237316195423570985008687907853269984665640564039457584007913129639935 - g,
              1000000000000000000 + g, 1700000000 + g / 100, '0x' || md5(g::text),
              CASE WHEN g % 2 = 0 THEN 'buy' ELSE 'sell' END, $1
         FROM generate_series(1, ${ROWS}) g`,
      [pool.order_book],
    );
    const t0 = Date.now();
    await waitFor(async () => (await sinkCount(ctx.sink)) === ROWS || undefined, {
      timeoutMs: 240_000,
      intervalMs: 500,
      what: `${ROWS} rows in the sink`,
    });
    const seconds = (Date.now() - t0) / 1000;
    await expectSlotAtCheckpoint(ctx);
    const peak = peakRssMiB(c.proc.pid!);
    console.log(
      `500k-row transaction: peak RSS ${peak.toFixed(0)} MiB (idle ${idle.toFixed(0)} MiB), ` +
        `${(ROWS / seconds).toFixed(0)} rows/s end to end`,
    );
    expect(peak).toBeLessThan(RSS_LIMIT_MIB);
    expect((await c.stop()).code, c.output()).toBe(0);
  });
});
