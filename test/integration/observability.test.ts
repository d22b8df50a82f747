/**
 * The alerts and the dashboard against a running connector: every `slotline_*` metric and
 * label they use is on its live /metrics, and a real Prometheus server scrapes it, loads
 * the rules (every one evaluates without error), answers a query for the slot lag, and runs
 * every dashboard query.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConnector, type ConnectorProcess } from '../harness/connector.js';
import { createTestContext, type TestContext } from '../harness/context.js';
import { expectSinkEqualsSource } from '../harness/compare.js';
import { call, freePort, waitReady } from '../harness/http.js';
import {
  RULES_FILE,
  allExpressions,
  checkAgainstExposition,
  dashboardQueries,
  loadAlerts,
  parseExposition,
} from '../harness/observability.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
} from '../harness/ponder.js';
import { startPrometheus } from '../harness/prometheus.js';
import { FAST } from '../harness/settings.js';
import { prometheusSkip, requirePrometheusTool } from '../harness/tools.js';
import { waitFor } from '../harness/wait.js';

let ctx: TestContext;
let connector: ConnectorProcess;
let port: number;

const metricsText = async () => (await call(port, 'GET', '/metrics')).text;

beforeAll(async () => {
  ctx = await createTestContext('observability');
  await createPonderTables(ctx.source);
  const pool = makePool(0);
  await insertPools(ctx.source, 'public', [pool]);
  await insertTrades(
    ctx.source,
    'public',
    Array.from({ length: 40 }, (_, i) => makeTrade(i, pool)),
  );
  port = await freePort();
  connector = startConnector(ctx.env({ ...FAST, SLOTLINE_HTTP_PORT: String(port) }));
  // Streaming, not merely leading (the leader also snapshots) nor a ready standby.
  await waitReady(port);
  // Live changes, so the decode counters have samples, and a dead letter, so the labelled
  // counter has one too (and their labels show).
  await insertTrades(ctx.source, 'public', [
    ...Array.from({ length: 10 }, (_, i) => makeTrade(100 + i, pool)),
    { ...makeTrade(200, pool), price: null },
  ]);
  await expectSinkEqualsSource(ctx, { where: 'price IS NOT NULL' });
  // An error, likewise: end the walsender; the connector counts it and reconnects.
  await ctx.source.query(
    'SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1',
    [ctx.slot],
  );
  await waitFor(
    async () => {
      const text = await metricsText();
      return (
        /^slotline_errors_total\{/m.test(text) &&
        /^slotline_dead_letters_total\{/m.test(text) &&
        /^slotline_dead_letter_entries\{/m.test(text) &&
        /^slotline_leader 1$/m.test(text) &&
        /^slotline_slot_active 1$/m.test(text)
      );
    },
    {
      timeoutMs: 30_000,
      intervalMs: 250,
      what: 'errors and dead letters counted, streaming again',
    },
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\n${connector.output().slice(-3000)}`);
  });
}, 120_000);

afterAll(async () => {
  await connector?.[Symbol.asyncDispose]();
  await ctx?.[Symbol.asyncDispose]();
});

describe('metric names used by the alerts and the dashboard', () => {
  it('are all on the running connector’s /metrics, with the labels they use', async () => {
    const exposed = parseExposition(await metricsText());
    // Sanity: the parser saw the connector's metrics, histograms expanded.
    expect(exposed.get('slotline_sink_write_duration_seconds_bucket')).toEqual(
      new Set(['le', 'sink']),
    );
    expect(exposed.get('slotline_errors_total')).toEqual(new Set(['kind', 'where']));
    expect(exposed.get('slotline_dead_letters_total')).toEqual(new Set(['reason']));
    const exprs = allExpressions();
    expect(exprs.length).toBeGreaterThan(30);
    expect(checkAgainstExposition(exprs, exposed)).toEqual([]);
  });
});

const serverSkip = prometheusSkip('a real Prometheus server scraping the connector', 'prometheus');

describe.skipIf(serverSkip !== null)('a real Prometheus server', () => {
  it('scrapes the connector, evaluates every rule, and answers the slot lag and every dashboard query', async () => {
    const started = Date.now();
    await using prom = await startPrometheus({
      binary: requirePrometheusTool('prometheus'),
      targets: [`127.0.0.1:${port}`],
      ruleFiles: [fileURLToPath(RULES_FILE)],
    });
    const lag = await waitFor(
      async () => {
        const a = await prom.query('slotline_slot_lag_bytes');
        const v = a.data?.result[0]?.value?.[1];
        return a.status === 'success' && v !== undefined ? Number(v) : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 250, what: 'Prometheus to answer slotline_slot_lag_bytes' },
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${prom.output().slice(-3000)}`);
    });
    expect(Number.isFinite(lag)).toBe(true);
    expect(lag).toBeGreaterThanOrEqual(0);
    const up = await prom.query('up{job="slotline"}');
    expect(up.data?.result[0]?.value?.[1]).toBe('1');

    // Every rule loaded from the plain rules file and evaluated cleanly.
    interface Rules {
      data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] };
    }
    const rules = await waitFor(
      async () => {
        const r = await prom.api<Rules>('/api/v1/rules');
        const all = r.data.groups.flatMap((g) => g.rules);
        return all.length > 0 && all.every((x) => x.health !== 'unknown') ? all : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 250, what: 'every rule evaluated once' },
    );
    expect(rules).toHaveLength(loadAlerts().length);
    expect(rules.filter((r) => r.health !== 'ok')).toEqual([]);

    // Rates need two scrapes inside their window.
    await waitFor(
      async () => {
        const a = await prom.query('sum by (sink) (rate(slotline_sink_rows_written_total[1m]))');
        return (a.data?.result.length ?? 0) > 0 || undefined;
      },
      { timeoutMs: 10_000, intervalMs: 250, what: 'a rate over two scrapes' },
    );
    for (const q of dashboardQueries()) {
      const a = await prom.query(q.expr);
      expect(a.status, `${q.panel}: ${q.expr} ${a.error ?? ''}`).toBe('success');
    }
    expect(Date.now() - started).toBeLessThan(40_000);
  }, 45_000);
});
