/**
 * The in-flight bounds hold whatever the configuration and the values (issue
 * 11, items 7 and 12): the stream never wedges on a valid bound.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { expectSinkEqualsSource, expectSlotAtCheckpoint, sinkCount } from '../harness/compare.js';
import { FAST } from '../harness/settings.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
} from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';

/** Peak resident set size of a process, from the kernel (VmHWM), in MiB. */
function peakRssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmHWM for ${pid}`);
  return Number(m[1]) / 1024;
}

/** The deployment's heap limit (deploy/: --max-old-space-size=160) and its pod's memory limit. */
const DEPLOYMENT_NODE_OPTIONS = '--max-old-space-size=160';
const POD_LIMIT_MIB = 256;

/**
 * `n` Ponder-sized trades of one pool in one statement (so one transaction):
 * ids `<0x + 64 hex tx hash>-<log index>`, 32-byte transaction hashes.
 */
function insertPonderSized(prefix: string, n: number, poolRef: string): [string, unknown[]] {
  return [
    `INSERT INTO order_book_trades (id, chain_id, price, quantity, timestamp, transaction_id, side, pool_id)
     SELECT '0x' || encode(sha256(($1 || (g / 4))::bytea), 'hex') || '-' || (g % 4), 31337,
            2500000000000000000000 + g, 10000000000000000 * (1 + g % 50), 1700000000 + g / 3,
            '0x' || encode(sha256(($1 || (g / 4))::bytea), 'hex'),
            CASE WHEN g % 2 = 0 THEN 'buy' ELSE 'sell' END, $2
       FROM generate_series(1, ${n}) g`,
    [prefix, poolRef],
  ];
}

describe('in-flight bounds', () => {
  it('a 1 MiB byte bound carries a 20,000-row transaction of Ponder-sized rows (11.7)', async () => {
    await using ctx = await createTestContext('bytes_bound');
    await createPonderTables(ctx.source);
    const pool = makePool(0);
    await insertPools(ctx.source, 'public', [pool]);
    await using c = startConnector(
      ctx.env({ ...FAST, SLOTLINE_INFLIGHT_MAX_BYTES: String(1 << 20) }),
    );
    await expectSlotAtCheckpoint(ctx);
    const [sql, params] = insertPonderSized('tx:', 20_000, pool.order_book!);
    await ctx.source.query(sql, params);
    await expectSinkEqualsSource(ctx, { timeoutMs: 60_000 });
    await expectSlotAtCheckpoint(ctx);
    expect((await c.stop()).code, c.output()).toBe(0);
  }, 150_000);
});

describe('what a row becomes counts against the bound (11.12)', () => {
  it('a 60 KiB pools.coin with 5,000 trades of that pool in one transaction streams within the pod limit', async () => {
    await using ctx = await createTestContext('poison_coin');
    await createPonderTables(ctx.source);
    const pool = { ...makePool(0), coin: 'C'.repeat(60 * 1024) };
    await insertPools(ctx.source, 'public', [pool]);
    await using c = startConnector(ctx.env({ ...FAST, NODE_OPTIONS: DEPLOYMENT_NODE_OPTIONS }));
    await expectSlotAtCheckpoint(ctx);
    const [sql, params] = insertPonderSized('poison:', 5_000, pool.order_book!);
    await ctx.source.query(sql, params);
    await waitFor(async () => (await sinkCount(ctx.sink)) === 5_000 || undefined, {
      timeoutMs: 60_000,
      intervalMs: 500,
      what: '5,000 trades of the 60 KiB-coin pool in the sink',
    }).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${c.output().slice(-4000)}`);
    });
    await expectSlotAtCheckpoint(ctx);
    const symbols = await ctx.sink.query<{ n: string }>(
      'SELECT count(*)::text AS n FROM analytics_trades WHERE symbol = $1',
      [pool.coin],
    );
    expect(symbols.rows[0]?.n).toBe('5000');
    const peak = peakRssMiB(c.proc.pid!);
    console.log(`60 KiB coin × 5,000 trades: peak RSS ${peak.toFixed(0)} MiB`);
    expect(peak).toBeLessThan(POD_LIMIT_MIB);
    expect((await c.stop()).code, c.output()).toBe(0);
  }, 150_000);
});

describe('a row too large to carry (11.12)', () => {
  it('becomes a row_too_large dead letter; the stream goes on and the slot is acknowledged', async () => {
    await using ctx = await createTestContext('row_too_large');
    await createPonderTables(ctx.source);
    const pool = makePool(0);
    await insertPools(ctx.source, 'public', [pool]);
    await using c = startConnector(ctx.env({ ...FAST, NODE_OPTIONS: DEPLOYMENT_NODE_OPTIONS }));
    await expectSlotAtCheckpoint(ctx);
    // Over the default SLOTLINE_MAX_ROW_BYTES (512 KiB) by its own transaction id.
    const huge = { ...makeTrade(0, pool), transaction_id: `0x${'ab'.repeat(300 * 1024)}` };
    await insertTrades(ctx.source, 'public', [huge]);
    await insertTrades(ctx.source, 'public', [makeTrade(1, pool), makeTrade(2, pool)]);
    await waitFor(async () => (await sinkCount(ctx.sink)) === 2 || undefined, {
      timeoutMs: 30_000,
      what: 'the two later trades in the sink',
    });
    const letters = await ctx.sink.query<{ row_key: string; reason_code: string }>(
      'SELECT row_key, reason_code FROM slotline.dead_letters WHERE slot = $1',
      [ctx.slot],
    );
    expect(letters.rows).toEqual([{ row_key: huge.id, reason_code: 'row_too_large' }]);
    await expectSlotAtCheckpoint(ctx);
    expect((await c.stop()).code, c.output()).toBe(0);
  });
});
