import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { describe, expect, inject, onTestFinished, test } from 'vitest';
import { startCluster } from '../harness/cluster.js';
import { createTestContext } from '../harness/context.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
  UINT256_MAX,
  type PonderTrade,
} from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';

async function queryOne<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<T>(sql);
    if (!rows[0]) throw new Error(`no row from: ${sql}`);
    return rows[0];
  } finally {
    await client.end();
  }
}

describe('test context', () => {
  test('has its own databases on a logical-replication server and cleans them up', async () => {
    const adminUrl = inject('pgAdminUrl');
    let names: { sourceDb: string; sinkDb: string; slot: string };
    let holder: ChildProcess | undefined;
    onTestFinished(() => {
      holder?.kill('SIGKILL');
    });
    {
      await using ctx = await createTestContext('harness context');
      names = { sourceDb: ctx.sourceDb, sinkDb: ctx.sinkDb, slot: ctx.slot };
      expect(ctx.slot).toMatch(/^slot_harness_context_[0-9a-f]{10}$/);
      expect(ctx.env()).toMatchObject({ SLOTLINE_SLOT: ctx.slot, SLOTLINE_HTTP_PORT: '0' });

      const { rows } = await ctx.source.query<{ wal_level: string; db: string }>(
        `select current_setting('wal_level') as wal_level, current_database() as db`,
      );
      expect(rows[0]).toEqual({ wal_level: 'logical', db: ctx.sourceDb });
      const sinkDb = await ctx.sink.query<{ db: string }>('select current_database() as db');
      expect(sinkDb.rows[0]?.db).toBe(ctx.sinkDb);

      await ctx.source.query(`select pg_create_logical_replication_slot($1, 'pgoutput')`, [
        `${ctx.slot}_tmp`,
      ]);
      await ctx.source.query('select pg_drop_replication_slot($1)', [`${ctx.slot}_tmp`]);

      // Left behind on purpose, as a failing test would: a slot held by a streaming
      // client. Dispose must still remove everything.
      await ctx.source.query(`create publication ${ctx.publication} for all tables`);
      await ctx.source.query(`select pg_create_logical_replication_slot($1, 'pgoutput')`, [
        ctx.slot,
      ]);
      const binDir = inject('pgBinDir');
      if (binDir) {
        holder = spawn(
          join(binDir, 'pg_recvlogical'),
          [
            ...['-d', ctx.sourceUrl, '--slot', ctx.slot, '--start', '--no-loop', '-f', '-'],
            ...['-o', 'proto_version=1', '-o', `publication_names=${ctx.publication}`],
          ],
          { stdio: 'ignore' },
        );
        await waitFor(
          async () =>
            (
              await queryOne<{ active: boolean }>(
                adminUrl,
                `select active from pg_replication_slots where slot_name = '${ctx.slot}'`,
              )
            ).active,
          { timeoutMs: 10_000, what: 'pg_recvlogical to hold the slot' },
        );
      }
    }

    const left = await queryOne<{ dbs: string; slots: string }>(
      adminUrl,
      `select (select count(*) from pg_database
                where datname in ('${names.sourceDb}', '${names.sinkDb}')) as dbs,
              (select count(*) from pg_replication_slots
                where slot_name like '${names.slot}%') as slots`,
    );
    expect(left).toEqual({ dbs: '0', slots: '0' });
    if (holder) {
      const streamer = holder;
      await waitFor(async () => streamer.exitCode !== null || streamer.signalCode !== null, {
        timeoutMs: 10_000,
        what: 'pg_recvlogical to exit once its session was terminated',
      });
    }
  });

  test('Ponder tables keep 78-digit prices exactly', async () => {
    await using ctx = await createTestContext('ponder');
    await createPonderTables(ctx.source);
    const pools = [0, 1, 2].map((i) => makePool(i));
    await insertPools(ctx.source, 'public', pools);
    const trades: PonderTrade[] = [];
    for (let i = 0; i < 1000; i++) {
      trades.push(makeTrade(i, pools[i % pools.length]!, { uint256: i % 10 === 0 }));
    }
    await insertTrades(ctx.source, 'public', trades);

    const { rows } = await ctx.source.query<PonderTrade>(
      `select id, chain_id, price::text as price, quantity::text as quantity, "timestamp",
              transaction_id, side, pool_id
         from order_book_trades order by id`,
    );
    const byId = (a: PonderTrade, b: PonderTrade) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    expect(rows).toEqual([...trades].sort(byId));
    expect(rows.find((r) => r.id === trades[0]!.id)?.price).toBe(UINT256_MAX);
    expect(UINT256_MAX).toHaveLength(78);

    const joined = await ctx.source.query<{ n: string }>(
      `select count(*) as n from order_book_trades t join pools p on p.order_book = t.pool_id`,
    );
    expect(joined.rows[0]?.n).toBe('1000');
  });
});

describe('startCluster', () => {
  test('starts with wal_level=replica, survives a crash, and disposes cleanly', async () => {
    let dataDir: string;
    let postmaster: number;
    {
      await using cluster = await startCluster({ walLevel: 'replica' });
      dataDir = cluster.dataDir;
      expect(cluster.adminUrl).toMatch(
        new RegExp(
          `^postgres://slotline_admin:[0-9a-f]+@127\\.0\\.0\\.1:${cluster.port}/postgres$`,
        ),
      );
      const before = await queryOne<{ wal_level: string }>(cluster.adminUrl, 'show wal_level');
      expect(before.wal_level).toBe('replica');

      cluster.kill('SIGKILL');
      await cluster.start();
      expect(await queryOne(cluster.adminUrl, 'select 1 as ok')).toEqual({ ok: 1 });
      await cluster.restart();
      expect(await queryOne(cluster.adminUrl, 'select 1 as ok')).toEqual({ ok: 1 });
      postmaster = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    }
    expect(existsSync(dataDir)).toBe(false);
    // Gone, or at most a zombie until init reaps it.
    await waitFor(async () => !existsSync(`/proc/${postmaster}`), {
      timeoutMs: 5_000,
      what: `postmaster ${postmaster} to exit`,
    });
  });
});
