/**
 * The in-flight bounds hold whatever the configuration and the values (issue
 * 11, items 7 and 12): the stream never wedges on a valid bound.
 */
import { describe, expect, it } from 'vitest';
import { startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { expectSinkEqualsSource, expectSlotAtCheckpoint } from '../harness/compare.js';
import { FAST } from '../harness/settings.js';
import { createPonderTables, insertPools, makePool } from '../harness/ponder.js';

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
  });
});
