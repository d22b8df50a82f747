import { describe, expect, it } from 'vitest';
import { runCommand, startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { expectSlotAtCheckpoint } from '../harness/compare.js';
import { call, freePort, waitReady } from '../harness/http.js';
import { FAST } from '../harness/settings.js';
import { createPonderTables, insertPools, makePool } from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';

const TOKEN = 'test-admin-token-0123456789';

describe('admin commands', () => {
  it('status, reset-lsn and backfill reach the running connector; status falls back to the databases', async () => {
    await using ctx = await createTestContext('cli');
    await createPonderTables(ctx.source);
    await insertPools(ctx.source, 'public', [makePool(0)]);
    const port = await freePort();
    const env = ctx.env({ ...FAST, SLOTLINE_HTTP_PORT: String(port), SLOTLINE_ADMIN_TOKEN: TOKEN });
    const c = startConnector(env);
    await waitReady(port);
    await expectSlotAtCheckpoint(ctx);

    const status = await runCommand(env, ['status']);
    expect(status.code, status.output).toBe(0);
    expect(JSON.parse(status.output)).toMatchObject({ slot: ctx.slot, phase: 'streaming' });

    const behind = await runCommand(env, ['reset-lsn', '0/1']);
    expect(behind.code).toBe(2);
    expect(behind.output).toMatch(/confirmed_flush_lsn/);
    const garbage = await runCommand(env, ['reset-lsn', 'yesterday']);
    expect(garbage.code).toBe(2);
    expect(garbage.output).toMatch(/invalid LSN/);

    const bad = await runCommand(env, ['backfill', '--to', '5']);
    expect(bad.code).toBe(2);
    const usage = await runCommand(env, ['backfill', '--from']);
    expect(usage.code).toBe(2);
    expect(usage.output).toMatch(/--from needs a value/);
    const ok = await runCommand(env, ['backfill', '--from', '2023-11-14T00:00:00Z']);
    expect(ok.code, ok.output).toBe(0);
    await waitFor(
      async () =>
        ((await call(port, 'GET', '/status')).body.backfill as { state?: string } | null)?.state ===
          'done' || undefined,
      {
        timeoutMs: 20_000,
        what: 'backfill done',
      },
    );

    expect((await c.stop()).code).toBe(0);
    const offline = await runCommand(env, ['status']);
    expect(offline.code, offline.output).toBe(0);
    const report = JSON.parse(offline.output) as {
      note: string;
      slot: { name: string };
      sinks: { sink: string }[];
    };
    expect(report.note).toMatch(/not reachable/);
    expect(report.slot.name).toBe(ctx.slot);
    expect(report.sinks.map((s) => s.sink)).toContain('timescale');
  });
});
