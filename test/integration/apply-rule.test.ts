/**
 * One apply rule for every write path (issue 11, items 3, 4, 5 and 8): a row
 * version (source generation, commit LSN, position in the transaction) orders
 * every change, deletes leave versioned tombstones, a rebuilt source starts a
 * new generation, and a deposed leader cannot write.
 */
import { describe, expect, it } from 'vitest';
import { startCluster } from '../harness/cluster.js';
import {
  expectSinkEqualsSource,
  expectSlotAtCheckpoint,
  sinkCount,
  sinkTrades,
  sourceTrades,
} from '../harness/compare.js';
import { runCommand, startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
  type PonderPool,
} from '../harness/ponder.js';
import { FAST } from '../harness/settings.js';
import { createSplitContext } from '../harness/split-context.js';
import { waitFor } from '../harness/wait.js';
import type pg from 'pg';

const trade = (pools: PonderPool[], k: number, ts = 1_700_000_000 + k * 7) =>
  makeTrade(k, pools[k % pools.length]!, { timestamp: ts });

async function sinkPools(db: pg.Pool) {
  const r = await db.query<{ id: string; coin: string | null; price: string | null }>(
    'SELECT id, coin, price::text FROM pools ORDER BY id COLLATE "C"',
  );
  return r.rows;
}

async function sourcePools(db: pg.Pool) {
  const r = await db.query<{ id: string; coin: string | null; price: string | null }>(
    'SELECT id, coin, price::text FROM pools ORDER BY id COLLATE "C"',
  );
  return r.rows;
}

async function checkpointLsn(ctx: { sink: pg.Pool; slot: string }): Promise<string | null> {
  const r = await ctx.sink.query<{ lsn: string | null }>(
    `SELECT lsn::text FROM slotline.checkpoints WHERE slot = $1 AND sink = 'timescale'`,
    [ctx.slot],
  );
  return r.rows[0]?.lsn ?? null;
}

describe('one apply rule', () => {
  it('(3) insert, update, delete, re-insert of one trade and one pool in one transaction, over many batches, replayed after SIGKILL', async () => {
    await using ctx = await createTestContext('apply_in_tx');
    await createPonderTables(ctx.source);
    const pools = [makePool(0), makePool(1)];
    await insertPools(ctx.source, 'public', pools);
    const env = ctx.env({ ...FAST, SLOTLINE_BATCH_MAX_ROWS: '3' });
    await using first = startConnector(env);
    let c = first;
    await expectSlotAtCheckpoint(ctx);

    // Trades are of pool 0 (pool 1 is deleted for a while: its trades would be dead letters).
    const t = trade(pools.slice(0, 1), 1);
    // Delete (no-op the first time), insert, move in time, delete and re-insert one trade, and
    // update, delete and re-insert one pool, with other trades between them, in one transaction.
    const churn = async (round: number) => {
      const client = await ctx.source.connect();
      try {
        await client.query('BEGIN');
        const filler = (n: number) =>
          insertTrades(
            client,
            'public',
            Array.from({ length: n }, (_, k) =>
              trade(pools.slice(0, 1), 1000 + round * 100 + n * 10 + k),
            ),
          );
        await client.query(`DELETE FROM order_book_trades WHERE id = $1`, [t.id]);
        await insertTrades(client, 'public', [{ ...t, price: `${round}1` }]);
        await filler(4);
        await client.query(
          `UPDATE order_book_trades SET price = $2, timestamp = timestamp + 60 WHERE id = $1`,
          [t.id, `${round}2`],
        );
        await client.query(`UPDATE pools SET price = $2, coin = 'A/B' WHERE id = $1`, [
          pools[1]!.id,
          `${round}7`,
        ]);
        await filler(5);
        await client.query(`DELETE FROM order_book_trades WHERE id = $1`, [t.id]);
        await client.query(`DELETE FROM pools WHERE id = $1`, [pools[1]!.id]);
        await filler(6);
        await insertTrades(client, 'public', [
          { ...t, price: `${round}3`, timestamp: (t.timestamp ?? 0) + round },
        ]);
        await insertPools(client, 'public', [{ ...pools[1]!, price: `${round}8` }]);
        await filler(7);
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    };

    await churn(1);
    await expectSinkEqualsSource(ctx);
    expect(await sinkPools(ctx.sink)).toEqual(await sourcePools(ctx.source));

    // Again, but the sink transaction that would move the checkpoint past it
    // waits on a lock: the batches before it are written, then the connector is
    // killed, and the restart replays the whole transaction over them.
    const lock = await ctx.sink.connect();
    let held: string | null = null;
    try {
      await lock.query('BEGIN');
      await lock.query(`SELECT 1 FROM slotline.checkpoints WHERE slot = $1 FOR UPDATE`, [ctx.slot]);
      await churn(2);
      await waitFor(
        async () => {
          const r = await ctx.sink.query(
            `SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
                AND application_name = 'slotline-sink' AND wait_event_type = 'Lock'`,
          );
          return (r.rowCount ?? 0) > 0;
        },
        { timeoutMs: 30_000, what: 'the checkpoint move to wait on the lock' },
      );
      held = await checkpointLsn(ctx);
      c.kill('SIGKILL');
      await c.exited;
    } finally {
      await lock.query('ROLLBACK').catch(() => undefined);
      lock.release();
    }
    c = startConnector(env);
    await using _c = c;
    // Replayed once the checkpoint has moved past the transaction.
    await waitFor(
      async () => {
        const r = await ctx.sink.query<{ past: boolean }>(
          `SELECT lsn > $2::pg_lsn AS past FROM slotline.checkpoints WHERE slot = $1 AND sink = 'timescale'`,
          [ctx.slot, held],
        );
        return r.rows[0]?.past === true;
      },
      { timeoutMs: 30_000, what: 'the replayed transaction to be checkpointed' },
    );
    await expectSinkEqualsSource(ctx);
    expect(await sinkPools(ctx.sink)).toEqual(await sourcePools(ctx.source));
    await expectSlotAtCheckpoint(ctx);
    const stopped = await c.stop();
    expect(stopped.code, JSON.stringify(stopped) + c.output()).toBe(0);
  });

  it('(4) a rebuilt source (another server, lower LSNs) is refused until setup --resnapshot; then the sink equals it exactly', async () => {
    await using ctx = await createTestContext('rebuilt_a');
    await createPonderTables(ctx.source);
    const pools = [makePool(0), makePool(1)];
    await insertPools(ctx.source, 'public', pools);
    // Source A has written a lot of WAL; its LSNs are well above a new server's.
    for (let i = 0; i < 3; i++) await ctx.source.query('SELECT pg_switch_wal()');
    await using a = startConnector(ctx.env(FAST));
    await insertTrades(
      ctx.source,
      'public',
      Array.from({ length: 60 }, (_, k) => trade(pools, k)),
    );
    await expectSinkEqualsSource(ctx);
    expect((await a.stop()).code, a.output()).toBe(0);

    // Ponder re-indexed into a new server: the same slot name, the same sink.
    await using clusterB = await startCluster();
    await using b = await createSplitContext('rebuilt_b', clusterB, clusterB);
    await createPonderTables(b.source);
    await insertPools(b.source, 'public', [{ ...pools[0]!, coin: 'NEW/COIN' }]);
    const kept = Array.from({ length: 30 }, (_, k) => ({
      ...trade(pools.slice(0, 1), k * 2),
      price: String(5_000_000 + k),
    }));
    await insertTrades(b.source, 'public', kept);
    const env = {
      ...ctx.env(FAST),
      SLOTLINE_SOURCE_URL: b.sourceUrl,
    };
    const bLsn = await b.source.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    const aCk = await checkpointLsn(ctx);
    const lower = await ctx.sink.query<{ lower: boolean }>(
      'SELECT $1::pg_lsn < $2::pg_lsn AS lower',
      [bLsn.rows[0]!.lsn, aCk],
    );
    expect(lower.rows[0]?.lower).toBe(true);
    // A slot of that name exists on B (made by hand, or by a setup pointed there).
    await b.source.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [ctx.slot]);
    await b.source.query(
      `CREATE PUBLICATION ${ctx.publication} FOR TABLE order_book_trades, pools`,
    );

    const refused = startConnector(env);
    await using _refused = refused;
    const exit = await waitFor(async () => refused.proc.exitCode !== null && refused.exited, {
      timeoutMs: 30_000,
      what: 'the connector to refuse the rebuilt source',
    }).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${refused.output()}`);
    });
    expect((await exit).code, refused.output()).toBe(1);
    expect(refused.output()).toMatch(
      /"code":"source_changed".*another server.*slotline setup --resnapshot/,
    );
    // Nothing of B was written over A's rows meanwhile.
    expect((await sinkTrades(ctx.sink)).length).toBe(60);

    const setup = await runCommand(env, ['setup', '--resnapshot']);
    expect(setup.code, setup.output).toBe(0);
    await using c = startConnector(env);
    await waitFor(
      async () => {
        const [got, want] = [await sinkTrades(ctx.sink), await sourceTrades(b.source)];
        return JSON.stringify(got) === JSON.stringify(want) || undefined;
      },
      { timeoutMs: 60_000, what: 'the sink to equal source B' },
    ).catch(async (err: unknown) => {
      const got = await sinkTrades(ctx.sink);
      throw new Error(
        `${(err as Error).message}: sink has ${got.length} rows\n${c.output().slice(-2000)}`,
      );
    });
    expect(await sinkTrades(ctx.sink)).toEqual(await sourceTrades(b.source));
    expect(await sinkPools(ctx.sink)).toEqual(await sourcePools(b.source));
    // And it streams from B.
    await insertTrades(b.source, 'public', [{ ...trade(pools.slice(0, 1), 999), price: '42' }]);
    await waitFor(
      async () =>
        JSON.stringify(await sinkTrades(ctx.sink)) ===
          JSON.stringify(await sourceTrades(b.source)) || undefined,
      { timeoutMs: 30_000, what: 'a new trade of B in the sink' },
    );
    expect((await c.stop()).code, c.output()).toBe(0);
  });

  it('(5) SLOTLINE_SNAPSHOT=never keeps what the sink already held', async () => {
    await using ctx = await createTestContext('never_keeps');
    await createPonderTables(ctx.source);
    const pools = [makePool(0)];
    await insertPools(ctx.source, 'public', pools);
    const env = ctx.env({ ...FAST, SLOTLINE_SNAPSHOT: 'never' });
    const setup = await runCommand(env, ['setup']);
    expect(setup.code, setup.output).toBe(0);
    // A trade between `setup` and the first `run`: the slot setup made holds it.
    await insertTrades(ctx.source, 'public', [trade(pools, 0)]);
    // History migrated from the old polling service.
    await ctx.sink.query(
      `INSERT INTO analytics_trades (trade_id, time, chain_id, pool_id, symbol, side, price, quantity, volume, source_lsn)
       SELECT 'old-' || g, to_timestamp(1600000000 + g), 31337, $1, 'MWETH/MUSDC', 'buy', 10, 2, 20, '0/0'
         FROM generate_series(1, 25) g`,
      [pools[0]!.order_book],
    );
    await using c = startConnector(env);
    await expectSlotAtCheckpoint(ctx);
    await insertTrades(ctx.source, 'public', [trade(pools, 1)]);
    // Both new trades (mapped: the pools were loaded) beside the 25 old ones.
    await waitFor(async () => (await sinkCount(ctx.sink)) === 27 || undefined, {
      timeoutMs: 30_000,
      what: 'the new trades beside the 25 old ones',
    }).catch(async (err: unknown) => {
      throw new Error(
        `${(err as Error).message}: ${await sinkCount(ctx.sink)} rows\n${c.output()}`,
      );
    });
    const old = await ctx.sink.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM analytics_trades WHERE trade_id LIKE 'old-%'`,
    );
    expect(old.rows[0]?.n).toBe('25');
    expect((await c.stop()).code, c.output()).toBe(0);
  });

  it('(8) a deposed leader stops with leadership_lost and writes nothing more', async () => {
    await using ctx = await createTestContext('deposed');
    await createPonderTables(ctx.source);
    const pools = [makePool(0)];
    await insertPools(ctx.source, 'public', pools);
    await using c = startConnector(ctx.env(FAST));
    await insertTrades(ctx.source, 'public', [trade(pools, 1)]);
    await expectSinkEqualsSource(ctx);
    // Another replica takes over: it claims the next epoch in the sink, the way a new leader does.
    await ctx.sink.query(
      `UPDATE slotline.leaders SET epoch = epoch + 1, holder = 'another replica', since = now() WHERE slot = $1`,
      [ctx.slot],
    );
    await insertTrades(ctx.source, 'public', [trade(pools, 2), trade(pools, 3)]);
    const exit = await waitFor(async () => c.proc.exitCode !== null && c.exited, {
      timeoutMs: 30_000,
      what: 'the deposed leader to stop',
    }).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${c.output()}`);
    });
    expect((await exit).code, c.output()).toBe(1);
    expect(c.output()).toMatch(/"code":"leadership_lost"/);
    expect(await sinkCount(ctx.sink)).toBe(1);
  });
});
