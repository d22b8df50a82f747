/**
 * `slotline verify`: drift made behind the connector's back (rows missing in
 * the sink, a changed value, a row the source no longer has) is found per
 * bucket, repaired from the command line and through the old POST
 * /api/sync/run, and shows in /status and the metrics; a row the stream wrote
 * after the verify's snapshot is never deleted; dead-lettered rows are left out.
 */
import { describe, expect, it } from 'vitest';
import {
  isoSeconds,
  type PrintedVerifyReport,
  type VerifyReport,
} from '../../src/verify/buckets.js';
import { expectSinkEqualsSource } from '../harness/compare.js';
import { runCommand, startConnector } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { call, freePort, waitReady } from '../harness/http.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
} from '../harness/ponder.js';
import { FAST } from '../harness/settings.js';
import { expectVerifyClean, verify } from '../harness/verify.js';
import { waitFor } from '../harness/wait.js';

const TOKEN = 'verify-admin-token-0123456789';
const BASE = 1_700_000_000;
const HOUR = 3600;

/** The pretty-printed report among the command's output lines (logs are one-line JSON). */
function reportOf(output: string): PrintedVerifyReport {
  const lines = output.split('\n');
  const start = lines.indexOf('{');
  const end = lines.lastIndexOf('}');
  if (start < 0 || end < start) throw new Error(`no report in:\n${output}`);
  return JSON.parse(lines.slice(start, end + 1).join('\n')) as PrintedVerifyReport;
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

describe('verify', () => {
  it('finds drifted buckets, repairs them (CLI and POST /api/sync/run), reports in /status and metrics', async () => {
    await using ctx = await createTestContext('verify');
    await createPonderTables(ctx.source);
    const pools = [makePool(0), makePool(1)];
    await insertPools(ctx.source, 'public', pools);
    const trade = (i: number) => makeTrade(i, pools[i % 2]!, { timestamp: BASE + i * 30 });
    const bucketOf = (i: number) => Math.floor((BASE + i * 30) / HOUR) * HOUR;
    await insertTrades(
      ctx.source,
      'public',
      Array.from({ length: 600 }, (_, i) => trade(i)),
    );
    const port = await freePort();
    const env = ctx.env({
      ...FAST,
      SLOTLINE_HTTP_PORT: String(port),
      SLOTLINE_ADMIN_TOKEN: TOKEN,
      SLOTLINE_VERIFY_INTERVAL_MS: '500',
      SLOTLINE_VERIFY_LOOKBACK_SECONDS: '0',
    });
    await using c = startConnector(env);
    await waitReady(port);
    await expectSinkEqualsSource(ctx);
    const clean = await expectVerifyClean(ctx, { minRows: 600 });
    expect(clean.buckets.checked).toBe(
      new Set(Array.from({ length: 600 }, (_, i) => bucketOf(i))).size,
    );

    // A row that cannot be mapped: dead-lettered, left out of both sides, counted.
    await insertTrades(ctx.source, 'public', [{ ...trade(3), id: 'bad-null-price', price: null }]);
    await waitFor(
      async () =>
        (
          await ctx.sink.query(
            `SELECT 1 FROM slotline.dead_letters WHERE row_key = 'bad-null-price'`,
          )
        ).rowCount === 1 || undefined,
      { timeoutMs: 20_000, what: 'the dead letter' },
    );
    expect((await expectVerifyClean(ctx)).rows.deadLettered).toBe(1);

    // The periodic verify has run and found nothing.
    await waitFor(
      async () => {
        const m = (await call(port, 'GET', '/metrics')).text;
        return metric(m, 'slotline_verify_buckets_checked_total') > 0 &&
          metric(m, 'slotline_verify_buckets_mismatched') === 0
          ? true
          : undefined;
      },
      { timeoutMs: 20_000, what: 'a periodic verify' },
    );

    // Drift behind the connector's back, in three buckets.
    await ctx.sink.query(`DELETE FROM analytics_trades WHERE trade_id = ANY($1)`, [
      [trade(10).id, trade(11).id, trade(12).id],
    ]);
    await ctx.sink.query(`UPDATE analytics_trades SET price = price + 1 WHERE trade_id = $1`, [
      trade(200).id,
    ]);
    // A trade the source deleted while the sink did not see it.
    await ctx.sink.query(
      `INSERT INTO analytics_trades (trade_id, time, chain_id, pool_id, symbol, side, price, quantity, volume, source_lsn)
       SELECT 'ghost', time, chain_id, pool_id, symbol, side, price, quantity, volume, '0/1'
         FROM analytics_trades WHERE trade_id = $1`,
      [trade(400).id],
    );
    const drifted = [bucketOf(10), bucketOf(200), bucketOf(400)];

    const found = await runCommand(env, ['verify']);
    expect(found.code, found.output).toBe(1);
    const report = reportOf(found.output);
    // Printed as readable UTC times, not unix seconds.
    expect(report.mismatches.map((m) => m.bucket)).toEqual(drifted.map(isoSeconds));
    expect(report.range.from).toBeNull();
    expect(report.range.to).toMatch(/^\d{4}-\d\d-\d\dT\d\d:00:00Z$/);
    expect(report.mismatches.map((m) => m.sinkRows - m.sourceRows)).toEqual([-3, 0, 1]);
    // The alert's input: the periodic verify sees it too.
    await waitFor(
      async () =>
        metric((await call(port, 'GET', '/metrics')).text, 'slotline_verify_buckets_mismatched') ===
          3 || undefined,
      { timeoutMs: 20_000, what: 'slotline_verify_buckets_mismatched 3' },
    );

    const fixed = await runCommand(env, ['verify', '--repair']);
    expect(fixed.code, fixed.output).toBe(0);
    const repaired = reportOf(fixed.output);
    expect(repaired.buckets).toMatchObject({ mismatched: 3, repaired: 3, remaining: 0 });
    expect(repaired.rows.deleted).toBe(1);
    expect(repaired.rows.recopied).toBeGreaterThanOrEqual(4);
    await expectSinkEqualsSource(ctx, { where: `id <> 'bad-null-price'` });
    await expectVerifyClean(ctx);

    // The old service's endpoint: a verify-and-repair pass with its answer shape.
    expect((await call(port, 'POST', '/api/sync/run', { json: {} })).status).toBe(401);
    await ctx.sink.query(`DELETE FROM analytics_trades WHERE trade_id = $1`, [trade(500).id]);
    const run = await call(port, 'POST', '/api/sync/run', { token: TOKEN, json: {} });
    expect(run.status, run.text).toBe(200);
    expect(Object.keys(run.body)).toEqual(
      expect.arrayContaining(['success', 'message', 'processed', 'errors', 'total', 'duration']),
    );
    expect(run.body).toMatchObject({ success: true, errors: 0 });
    expect(run.body.processed).toBeGreaterThanOrEqual(1);
    expect(run.body.total).toBe(600);
    await expectVerifyClean(ctx);

    // A sink row newer than the verify's source snapshot (as one the stream just re-inserted
    // would be) is never deleted: the bucket is reported instead.
    await ctx.sink.query(
      `INSERT INTO analytics_trades (trade_id, time, chain_id, pool_id, symbol, side, price, quantity, volume, source_lsn)
       SELECT 'just-streamed', time, chain_id, pool_id, symbol, side, price, quantity, volume, 'FFFFFFFF/0'
         FROM analytics_trades WHERE trade_id = $1`,
      [trade(100).id],
    );
    const guarded = await call(port, 'POST', '/api/sync/run', {
      token: TOKEN,
      json: { from: BASE, bucketSeconds: 600 },
    });
    expect(guarded.status, guarded.text).toBe(200);
    expect(guarded.body).toMatchObject({ success: false, errors: 1 });
    expect(
      (await ctx.sink.query(`SELECT 1 FROM analytics_trades WHERE trade_id = 'just-streamed'`))
        .rowCount,
    ).toBe(1);
    await ctx.sink.query(`DELETE FROM analytics_trades WHERE trade_id = 'just-streamed'`);

    const status = await call(port, 'GET', '/status');
    const v = status.body.verify as { running: boolean; last: VerifyReport | null };
    expect(v.last?.range.bucketSeconds).toBeGreaterThan(0);
    expect(
      metric(
        (await call(port, 'GET', '/metrics')).text,
        'slotline_verify_last_run_timestamp_seconds',
      ),
    ).toBeGreaterThan(Date.now() / 1000 - 60);
    expect((await verify(ctx)).ok).toBe(true);
    expect((await c.stop()).code, c.output()).toBe(0);
  });
});
