import { describe, expect, it } from 'vitest';
import { startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
} from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';

describe('smoke', () => {
  it('streams inserts', async () => {
    await using ctx = await createTestContext('smoke');
    await createPonderTables(ctx.source);
    const pools = [makePool(0), makePool(1)];
    await insertPools(ctx.source, 'public', pools);
    await insertTrades(
      ctx.source,
      'public',
      Array.from({ length: 10 }, (_, i) => makeTrade(i, pools[i % 2]!)),
    );
    await using c = startConnector(
      ctx.env({ SLOTLINE_LOG_LEVEL: 'info', SLOTLINE_STATUS_INTERVAL_MS: '500' }),
    );
    await insertTrades(
      ctx.source,
      'public',
      Array.from({ length: 10 }, (_, i) => makeTrade(100 + i, pools[i % 2]!)),
    );
    try {
      await waitFor(
        async () => {
          const r = await ctx.sink.query<{ n: string }>(
            'select count(*)::text n from analytics_trades',
          );
          return r.rows[0]?.n === '20' ? true : undefined;
        },
        { timeoutMs: 20_000, what: '20 trades in sink' },
      );
    } finally {
      console.log(c.output());
    }
    const exit = await c.stop();
    expect(exit.code).toBe(0);
  });
});
