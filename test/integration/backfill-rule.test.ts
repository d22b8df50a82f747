/**
 * Issue 11, item 9: a backfill can always be cancelled promptly (also while
 * its watermarks cannot come back), leaves the backfiller usable, and writes
 * its rows like a streamed update (a trade whose time moved keeps one row).
 */
import { describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startWithHttp } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { expectSinkEqualsSource, expectSlotAtCheckpoint } from '../harness/compare.js';
import { call } from '../harness/http.js';
import { createPonderTables, insertPools, makePool } from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';

async function seeded(name: string) {
  const ctx = await createTestContext(name);
  await createPonderTables(ctx.source);
  const pool = makePool(0);
  await insertPools(ctx.source, 'public', [pool]);
  await ctx.source.query(
    `INSERT INTO order_book_trades (id, chain_id, price, quantity, timestamp, transaction_id, side, pool_id)
     SELECT 'bf-' || lpad(g::text, 4, '0'), 31337, 1000 + g, 7, 1700000000 + g, 'tx', 'buy', $1
       FROM generate_series(1, 500) g`,
    [pool.order_book],
  );
  const { c, port } = await startWithHttp(ctx);
  await expectSinkEqualsSource(ctx);
  await expectSlotAtCheckpoint(ctx);
  return {
    ctx,
    port,
    admin: (method: string, path: string, json?: unknown) =>
      call(port, method, path, { token: ADMIN_TOKEN, json }),
    async [Symbol.asyncDispose]() {
      await c[Symbol.asyncDispose]();
      await ctx[Symbol.asyncDispose]();
    },
  };
}

async function untilDone(admin: (m: string, p: string) => ReturnType<typeof call>) {
  return waitFor(
    async () => {
      const b = (await admin('GET', '/status')).body.backfill as { state: string } | null;
      return b?.state === 'done' ? b : undefined;
    },
    { timeoutMs: 60_000, what: 'the backfill to finish' },
  );
}

describe('backfill follows the apply rule', () => {
  it('cancel during an admin pause returns promptly, and a new backfill can start', async () => {
    await using r = await seeded('bf_cancel_paused');
    expect((await r.admin('POST', '/admin/pause')).status).toBe(200);
    const started = await r.admin('POST', '/admin/backfill', { from: 1700000000, chunkSize: 100 });
    expect(started.status, started.text).toBe(202);
    // Its watermarks cannot come back while the stream is paused.
    const cancel = await Promise.race([
      r.admin('DELETE', '/admin/backfill'),
      new Promise<null>((resolve) => setTimeout(() => resolve(null), 10_000).unref()),
    ]);
    expect(cancel, 'cancel did not answer within 10 s').not.toBeNull();
    expect(cancel?.status, cancel?.text).toBe(200);
    expect(cancel?.body).toMatchObject({ state: 'cancelled' });

    const again = await r.admin('POST', '/admin/backfill', { from: 1700000000, chunkSize: 100 });
    expect(again.status, again.text).toBe(202);
    expect((await r.admin('POST', '/admin/resume')).status).toBe(200);
    await untilDone(r.admin);
    await expectSinkEqualsSource(r.ctx);
    // /status says done as the loop ends; the row follows in its own write.
    const states = async () =>
      (
        await r.ctx.sink.query<{ state: string }>(
          'SELECT state FROM slotline.backfills ORDER BY id',
        )
      ).rows.map((x) => x.state);
    await waitFor(async () => (await states()).join() === 'cancelled,done', {
      timeoutMs: 30_000,
      what: 'the backfill rows to say cancelled, done',
    }).catch(() => undefined);
    expect(await states()).toEqual(['cancelled', 'done']);
  });

  it('a backfilled trade whose time moved leaves one row', async () => {
    await using r = await seeded('bf_time_moved');
    const { ctx } = r;
    // The sink holds an older version of bf-0042 at another time (restored
    // from an old backup, say); the source has it at 1700000042.
    await ctx.sink.query(
      `INSERT INTO analytics_trades
              (trade_id, time, chain_id, pool_id, symbol, side, price, quantity, volume, transaction_id, source_lsn)
       SELECT trade_id, time - interval '30 seconds', chain_id, pool_id, symbol, side, 1, quantity, quantity,
              transaction_id, '0/1'::pg_lsn
         FROM analytics_trades WHERE trade_id = 'bf-0042'`,
    );
    await ctx.sink.query(
      `DELETE FROM analytics_trades WHERE trade_id = 'bf-0042' AND time = to_timestamp(1700000042)`,
    );
    const started = await r.admin('POST', '/admin/backfill', {
      from: 1700000000,
      to: 1700000100,
      chunkSize: 50,
    });
    expect(started.status, started.text).toBe(202);
    await untilDone(r.admin);
    await expectSinkEqualsSource(ctx);
  });
});
