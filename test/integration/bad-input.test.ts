import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { runCommand, startConnector } from '../harness/connector.js';
import { startCluster } from '../harness/cluster.js';
import { createTestContext } from '../harness/context.js';
import { expectSinkEqualsSource, expectSlotAtCheckpoint } from '../harness/compare.js';
import { FAST } from '../harness/settings.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
} from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';

describe('malformed rows', () => {
  it('go to dead letters with their reason, LSN and raw values; later rows still arrive', async () => {
    await using ctx = await createTestContext('dead_letters');
    await createPonderTables(ctx.source);
    const pool = makePool(0);
    await insertPools(ctx.source, 'public', [pool]);
    await using c = startConnector(ctx.env(FAST));
    await expectSlotAtCheckpoint(ctx);

    const good = makeTrade(1, pool);
    const bad: [string, Partial<Record<string, string | null>>, string][] = [
      ['null-price', { price: null }, 'null_price'],
      ['nan-price', { price: 'NaN' }, 'invalid_price'],
      ['negative-qty', { quantity: '-5' }, 'negative_quantity'],
      ['no-time', { timestamp: null }, 'missing_timestamp'],
      ['zero-time', { timestamp: '0' }, 'timestamp_out_of_range'],
      ['unknown-pool', { pool_id: '0xdeadbeef' }, 'unknown_pool'],
      ['odd-side', { side: 'hold' }, 'invalid_side'],
    ];
    for (const [id, override] of bad) {
      const row = { ...good, id, ...override } as typeof good;
      await insertTrades(ctx.source, 'public', [row]);
    }
    const later = Array.from({ length: 50 }, (_, i) => makeTrade(100 + i, pool));
    await insertTrades(ctx.source, 'public', later);

    await expectSinkEqualsSource(ctx, {
      where: `id NOT IN (${bad.map(([id]) => `'${id}'`).join(', ')})`,
    });
    const letters = await waitFor(
      async () => {
        const r = await ctx.sink.query<{
          row_key: string;
          reason_code: string;
          reason: string;
          lsn: string;
          raw: Record<string, unknown>;
          state: string;
        }>(
          `SELECT row_key, reason_code, reason, lsn::text, raw, state FROM slotline.dead_letters ORDER BY row_key`,
        );
        return r.rows.length === bad.length ? r.rows : undefined;
      },
      { timeoutMs: 20_000, what: `${bad.length} dead letters` },
    );
    for (const [id, override, code] of bad) {
      const l = letters.find((x) => x.row_key === id);
      expect(l, id).toBeDefined();
      expect(l?.reason_code).toBe(code);
      expect(l?.reason.length).toBeGreaterThan(5);
      expect(l?.lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
      expect(l?.state).toBe('pending');
      const [col, value] = Object.entries(override)[0]!;
      expect(l?.raw[col], `${id}.${col}`).toBe(value);
    }
    expect((await c.stop()).code).toBe(0);
  });
});

describe('operator errors get a clear message', () => {
  it('wal_level=replica stops start-up naming the fix', async () => {
    await using cluster = await startCluster({ walLevel: 'replica' });
    const url = cluster.adminUrl;
    const r = await runCommand(
      { SLOTLINE_SOURCE_URL: url, SLOTLINE_SINK_URL: url, SLOTLINE_HTTP_PORT: '0', ...FAST },
      ['run'],
      30_000,
    );
    expect(r.code).toBe(1);
    expect(r.output).toMatch(/wal_level is 'replica'.*logical/);
    expect(r.output).toMatch(/ALTER SYSTEM SET wal_level = logical/);
  });

  it('a missing source table names the table and SLOTLINE_SOURCE_SCHEMA', async () => {
    await using ctx = await createTestContext('missing_table');
    const r = await runCommand(ctx.env(FAST), ['run'], 30_000);
    expect(r.code).toBe(1);
    expect(r.output).toMatch(/table public\.order_book_trades does not exist/);
    expect(r.output).toMatch(/SLOTLINE_SOURCE_SCHEMA/);
  });

  it('a wrong password says authentication failed and never prints the password', async () => {
    await using ctx = await createTestContext('bad_password');
    await createPonderTables(ctx.source);
    const wrong = new URL(ctx.sourceUrl);
    wrong.password = 'not-the-password-42';
    const r = await runCommand(
      ctx.env({ ...FAST, SLOTLINE_SOURCE_URL: wrong.toString() }),
      ['run'],
      30_000,
    );
    expect(r.code).toBe(1);
    expect(r.output).toMatch(/authentication failed/i);
    expect(r.output).not.toContain('not-the-password-42');
    expect(r.output).not.toContain(new URL(ctx.sinkUrl).password);
  });

  it('a bad setting stops start-up naming the variable', async () => {
    const r = await runCommand(
      {
        SLOTLINE_SOURCE_URL: 'postgres://x@127.0.0.1/db',
        SLOTLINE_SINK_URL: 'postgres://x@127.0.0.1/db',
        SLOTLINE_BATCH_MAX_ROWS: 'lots',
      },
      ['run'],
    );
    expect(r.code).toBe(2);
    expect(r.output).toMatch(/SLOTLINE_BATCH_MAX_ROWS "lots": must be a whole number/);
  });

  it('a slot held by another consumer is retried, and taken over once free', async () => {
    await using ctx = await createTestContext('slot_busy');
    await createPonderTables(ctx.source);
    const pool = makePool(0);
    await insertPools(ctx.source, 'public', [pool]);
    const env = ctx.env(FAST);
    const first = startConnector(env);
    await expectSlotAtCheckpoint(ctx);
    expect((await first.stop()).code).toBe(0);
    // Someone else (not a slotline replica) streams from the slot.
    const url = new URL(ctx.sourceUrl);
    const other = spawn(
      join(inject('pgBinDir'), 'pg_recvlogical'),
      [
        '-d',
        ctx.sourceUrl,
        '--slot',
        ctx.slot,
        '--start',
        '-o',
        'proto_version=1',
        '-o',
        `publication_names=${ctx.publication}`,
        '-f',
        '/dev/null',
      ],
      { stdio: 'ignore', env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password) } },
    );
    const otherExit = new Promise((resolve) => other.on('exit', resolve));
    try {
      await waitFor(
        async () =>
          (
            await ctx.source.query(
              'SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active',
              [ctx.slot],
            )
          ).rowCount === 1 || undefined,
        { timeoutMs: 10_000, what: 'pg_recvlogical to hold the slot' },
      );
      await using second = startConnector({ ...env, SLOTLINE_LOG_LEVEL: 'warn' });
      await waitFor(async () => /slot_in_use/.test(second.output()) || undefined, {
        timeoutMs: 20_000,
        what: 'the connector to report the slot in use',
      });
      expect(second.output()).toMatch(/is active for PID \d+/);
      expect(second.proc.exitCode).toBeNull(); // still running: a retry, not a crash
      other.kill('SIGKILL');
      await otherExit;
      await insertTrades(ctx.source, 'public', [makeTrade(1, pool), makeTrade(2, pool)]);
      await expectSinkEqualsSource(ctx, { timeoutMs: 30_000 });
      expect((await second.stop()).code).toBe(0);
    } finally {
      other.kill('SIGKILL');
    }
  });
});
