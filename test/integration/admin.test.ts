import { describe, expect, it } from 'vitest';
import { parseLsn } from '../../src/checkpoint/lsn.js';
import { ADMIN_TOKEN, startConnector, startWithHttp } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import {
  expectSinkEqualsSource,
  expectSlotAtCheckpoint,
  positions,
  sinkTrades,
} from '../harness/compare.js';
import { call, waitReady } from '../harness/http.js';
import { FAST } from '../harness/settings.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
} from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';

const TOKEN = ADMIN_TOKEN;

async function running(name: string, extra: Record<string, string> = {}) {
  const ctx = await createTestContext(name);
  await createPonderTables(ctx.source);
  const pools = [makePool(0), makePool(1)];
  await insertPools(ctx.source, 'public', pools);
  await insertTrades(
    ctx.source,
    'public',
    Array.from({ length: 100 }, (_, i) => makeTrade(i, pools[i % 2]!)),
  );
  const { c, port } = await startWithHttp(ctx, extra);
  await expectSinkEqualsSource(ctx);
  await expectSlotAtCheckpoint(ctx);
  return {
    ctx,
    c,
    port,
    pools,
    async [Symbol.asyncDispose]() {
      await c[Symbol.asyncDispose]();
      await ctx[Symbol.asyncDispose]();
    },
  };
}

describe('HTTP surface', () => {
  it('serves probes, status, metrics and the old sync endpoints', async () => {
    await using r = await running('http_read');
    const { port, ctx } = r;
    expect((await call(port, 'GET', '/healthz')).status).toBe(200);
    const status = await call(port, 'GET', '/status');
    expect(status.status).toBe(200);
    expect(status.body.slot).toBe(ctx.slot);
    expect(status.body.phase).toBe('streaming');
    const sinks = status.body.sinks as { sink: string; checkpoint: string }[];
    expect(sinks.map((s) => s.sink)).toContain('timescale');

    const health = await call(port, 'GET', '/api/sync/health');
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({
      status: 'healthy',
      isHealthy: true,
      recommendation: 'HEALTHY',
    });
    expect(typeof health.body.lagMinutes).toBe('number');
    const stats = await call(port, 'GET', '/api/sync/stats');
    expect(stats.status).toBe(200);
    expect(stats.body.changes).toBeGreaterThan(0);

    const metrics = await call(port, 'GET', '/metrics');
    expect(metrics.status).toBe(200);
    for (const name of [
      'slotline_slot_lag_bytes',
      'slotline_slot_retained_wal_bytes',
      'slotline_slot_safe_wal_size_bytes',
      'slotline_slot_wal_status',
      'slotline_commit_lag_seconds',
      'slotline_events_decoded_total',
      'slotline_sink_rows_written_total',
      'slotline_sink_write_duration_seconds_bucket',
      'slotline_sink_batch_rows_bucket',
      'slotline_inflight_rows',
      'slotline_leader',
      'slotline_build_info',
      'slotline_process_resident_memory_bytes',
    ]) {
      expect(metrics.text, name).toContain(name);
    }
    expect(metrics.text).toMatch(/slotline_leader 1/);
  });

  it('reports a slot lag that agrees with the server', async () => {
    await using r = await running('lag_metric');
    const { port, ctx } = r;
    // Pause streaming so the lag is real and holds still, then write.
    expect((await call(port, 'POST', '/admin/pause', { token: TOKEN })).status).toBe(200);
    await insertTrades(
      ctx.source,
      'public',
      Array.from({ length: 500 }, (_, i) => makeTrade(1000 + i, r.pools[0]!)),
    );
    // Nothing else writes (heartbeats are off) and nothing is acknowledged while paused, so the
    // server's figure holds still; the monitor reads it every 5 s.
    let server = 0;
    const reported = await waitFor(
      async () => {
        const r = await ctx.source.query<{ lag: string }>(
          `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text AS lag
             FROM pg_replication_slots WHERE slot_name = $1`,
          [ctx.slot],
        );
        server = Number(r.rows[0]!.lag);
        const m = /^slotline_slot_lag_bytes (\d+)/m.exec(
          (await call(port, 'GET', '/metrics')).text,
        );
        const v = m ? Number(m[1]) : NaN;
        return server > 20_000 && v === server ? v : undefined;
      },
      {
        timeoutMs: 20_000,
        intervalMs: 250,
        what: 'the slot lag metric to equal the server figure',
      },
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message} (server says ${server})`);
    });
    expect(reported).toBe(server);
    expect((await call(port, 'POST', '/admin/resume', { token: TOKEN })).status).toBe(200);
    await expectSinkEqualsSource(ctx);
  });

  it('refuses bad admin requests with 4xx and changes nothing', async () => {
    await using r = await running('admin_4xx');
    const { port, ctx } = r;
    const before = await positions(ctx);
    const cases: [string, string, Parameters<typeof call>[3], number][] = [
      ['POST', '/admin/pause', {}, 401],
      ['POST', '/admin/pause', { token: 'wrong-token-wrong-token' }, 401],
      ['POST', '/admin/lsn-reset', { token: TOKEN, json: { lsn: 'not-an-lsn' } }, 400],
      ['POST', '/admin/lsn-reset', { token: TOKEN, json: {} }, 400],
      ['POST', '/admin/lsn-reset', { token: TOKEN, json: { lsn: '0/1', force: 'yes' } }, 400],
      ['POST', '/admin/lsn-reset', { token: TOKEN, body: '{"lsn": ' }, 400],
      ['POST', '/admin/lsn-reset', { token: TOKEN, body: '[1,2]' }, 400],
      [
        'POST',
        '/admin/lsn-reset',
        { token: TOKEN, body: 'lsn=0/1', contentType: 'text/plain' },
        415,
      ],
      [
        'POST',
        '/admin/lsn-reset',
        { token: TOKEN, body: JSON.stringify({ lsn: 'x'.repeat(40_000) }) },
        413,
      ],
      ['POST', '/admin/lsn-reset', { token: TOKEN, json: { lsn: '0/1' } }, 409],
      ['POST', '/api/sync/force', { token: TOKEN, json: { fromTimestamp: 'yesterday' } }, 400],
      ['GET', '/admin/pause', { token: TOKEN }, 405],
      ['GET', '/nope', {}, 404],
    ];
    for (const [method, path, opts, want] of cases) {
      const a = await call(port, method, path, opts);
      expect(a.status, `${method} ${path} ${JSON.stringify(opts).slice(0, 80)} → ${a.text}`).toBe(
        want,
      );
      expect(typeof a.body.error).toBe('string');
    }
    const refused = await call(port, 'POST', '/admin/lsn-reset', {
      token: TOKEN,
      json: { lsn: '0/1' },
    });
    expect(refused.body.error).toMatch(/before the slot's confirmed_flush_lsn.*backfill/);
    // Idle acknowledgements may move both forward meanwhile; nothing moved them back or reset them.
    const after = await positions(ctx);
    expect(parseLsn(after.checkpoint!)).toBeGreaterThanOrEqual(parseLsn(before.checkpoint!));
    expect(parseLsn(after.confirmedFlush!)).toBeGreaterThanOrEqual(
      parseLsn(before.confirmedFlush!),
    );
    const status = await call(port, 'GET', '/status');
    expect(status.body.paused).toBe(false);
    expect(status.body.backfill).toBeNull();
    expect((await call(port, 'GET', '/readyz')).status).toBe(200);
  });

  it('has admin actions disabled, not open, without a token', async () => {
    await using r = await running('admin_off', { SLOTLINE_ADMIN_TOKEN: '' });
    const a = await call(r.port, 'POST', '/admin/pause', { token: 'anything-at-all-really' });
    expect(a.status).toBe(403);
    expect(a.body.error).toMatch(/SLOTLINE_ADMIN_TOKEN/);
  });
});

describe('LSN reset', () => {
  it('re-streams inside the replayable window and leaves the sink content unchanged', async () => {
    // Acks held back: the slot's confirmed flush stays behind the sink checkpoint, which
    // opens a real replay window between them.
    await using r = await running('reset_replay');
    const { port, ctx } = r;
    await r.c.stop();
    const slow = { SLOTLINE_ACK_INTERVAL_MS: '3600000', SLOTLINE_STATUS_INTERVAL_MS: '3600000' };
    await using c = startConnector(
      ctx.env({ ...FAST, ...slow, SLOTLINE_HTTP_PORT: String(port), SLOTLINE_ADMIN_TOKEN: TOKEN }),
    );
    await waitReady(port);
    await insertTrades(
      ctx.source,
      'public',
      Array.from({ length: 300 }, (_, i) => makeTrade(500 + i, r.pools[1]!)),
    );
    await expectSinkEqualsSource(ctx);
    const content = await sinkTrades(ctx.sink);
    const held = await positions(ctx);
    expect(held.confirmedFlush).not.toBe(held.checkpoint);
    // Behind the confirmed flush: refused, nothing changes.
    const refused = await call(port, 'POST', '/admin/lsn-reset', {
      token: TOKEN,
      json: { lsn: '0/1' },
    });
    expect(refused.status).toBe(409);
    // The confirmed flush itself: the 300 trades are streamed and applied again.
    const metric = (text: string, series: string) =>
      Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\d+)$`, 'm').exec(text)?.[1]);
    const first = (await call(port, 'GET', '/metrics')).text;
    const written = metric(first, 'slotline_sink_rows_written_total{sink="timescale"}');
    // The 300 went in by COPY; the replay meets them on the primary key, so its COPY rolls back.
    expect(metric(first, 'slotline_sink_copy_rows_total')).toBeGreaterThanOrEqual(300);
    const conflicts = metric(first, 'slotline_sink_copy_fallbacks_total{reason="conflict"}');
    const tombstones = metric(first, 'slotline_sink_copy_fallbacks_total{reason="tombstone"}');
    expect(tombstones).toBe(0);
    const ok = await call(port, 'POST', '/admin/lsn-reset', {
      token: TOKEN,
      json: { lsn: held.confirmedFlush },
    });
    expect(ok.status, ok.text).toBe(200);
    expect(ok.body.mode).toBe('replay');
    await waitFor(
      async () => {
        const m = /slotline_sink_rows_written_total\{sink="timescale"\} (\d+)/.exec(
          (await call(port, 'GET', '/metrics')).text,
        );
        return Number(m?.[1]) >= written + 300 || undefined;
      },
      { timeoutMs: 20_000, what: 'the replayed rows to be written again' },
    );
    expect(await sinkTrades(ctx.sink)).toEqual(content);
    const after = (await call(port, 'GET', '/metrics')).text;
    expect(metric(after, 'slotline_sink_copy_fallbacks_total{reason="conflict"}')).toBeGreaterThan(
      conflicts,
    );
    expect(metric(after, 'slotline_sink_copy_fallbacks_total{reason="tombstone"}')).toBe(
      tombstones,
    );
    expect((await c.stop()).code, c.output()).toBe(0);
  });

  it('skips forward only with force', async () => {
    await using r = await running('reset_skip');
    const { port, ctx } = r;
    await call(port, 'POST', '/admin/pause', { token: TOKEN });
    await insertTrades(ctx.source, 'public', [makeTrade(7000, r.pools[0]!)]);
    const wal = (
      await ctx.source.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')
    ).rows[0]!.lsn;
    const plain = await call(port, 'POST', '/admin/lsn-reset', {
      token: TOKEN,
      json: { lsn: wal },
    });
    expect(plain.status).toBe(409);
    expect(plain.body.error).toMatch(/force/);
    const forced = await call(port, 'POST', '/admin/lsn-reset', {
      token: TOKEN,
      json: { lsn: wal, force: true },
    });
    expect(forced.status, forced.text).toBe(200);
    expect(forced.body.mode).toBe('skip');
    await call(port, 'POST', '/admin/resume', { token: TOKEN });
    await insertTrades(ctx.source, 'public', [makeTrade(7001, r.pools[0]!)]);
    await waitFor(
      async () =>
        (await sinkTrades(ctx.sink)).some((t) => t.id === makeTrade(7001, r.pools[0]!).id) ||
        undefined,
      {
        timeoutMs: 20_000,
        what: 'the trade after the skip',
      },
    );
    // The skipped trade is not in the sink: that is what force means.
    expect((await sinkTrades(ctx.sink)).some((t) => t.id === makeTrade(7000, r.pools[0]!).id)).toBe(
      false,
    );
  });
});
