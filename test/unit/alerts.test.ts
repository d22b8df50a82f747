/**
 * The alert rules and the dashboard, checked without any tool: every alert is tested firing
 * and not firing and has a runbook in docs/alerts.md, the PrometheusRule is the rules file,
 * the dashboard's queries parse, and every metric the expressions name is declared in
 * src/admin/metrics.ts. (promtool.test.ts runs promtool on them, in `npm run test:heavy`;
 * test/integration/observability.test.ts checks the names against a live /metrics.)
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { createMetrics } from '../../src/admin/metrics.js';
import {
  RULES_TEST_FILE,
  allExpressions,
  analysePromql,
  checkAgainstExposition,
  dashboardQueries,
  loadAlerts,
  loadDashboard,
  parseExposition,
} from '../harness/observability.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Where the alerts' runbook_url points, relative to the repository's root. */
const RUNBOOKS = 'docs/alerts.md';
const runbooks = readFileSync(new URL(`../../${RUNBOOKS}`, import.meta.url), 'utf8');

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  for (const m of markdown.matchAll(/^#{1,6} +(.+)$/gm)) {
    out.add(
      (m[1] as string)
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N} _-]/gu, '')
        .replace(/ /g, '-'),
    );
  }
  return out;
}

describe('alert rules', () => {
  const alerts = loadAlerts();

  it('cover what the issue asks for', () => {
    expect(alerts.map((a) => a.alert).sort()).toEqual(
      [
        'SlotlineCheckpointStalled',
        'SlotlineCommitLagCritical',
        'SlotlineCommitLagHigh',
        'SlotlineDeadLetters',
        'SlotlineDeadLettersPendingGrowing',
        'SlotlineDown',
        'SlotlineErrorRatioCritical',
        'SlotlineErrorRatioHigh',
        'SlotlineNoLeader',
        'SlotlinePonderDeploymentNotFollowed',
        'SlotlinePublicationProblem',
        'SlotlineSafeWalSizeLow',
        'SlotlineSlotInactive',
        'SlotlineSlotLagCritical',
        'SlotlineSlotLagHigh',
        'SlotlineSlotLost',
        'SlotlineSlotWalUnreserved',
        'SlotlineTwoLeaders',
      ].sort(),
    );
  });

  it('each have a severity, a summary, a description and a runbook in docs/alerts.md', () => {
    const headings = anchors(runbooks);
    for (const a of alerts) {
      expect(['warning', 'critical'], a.alert).toContain(a.labels?.severity);
      expect(a.annotations?.summary, a.alert).toBeTruthy();
      expect(a.annotations?.description, a.alert).toBeTruthy();
      const url = a.annotations?.runbook_url ?? '';
      expect(url, a.alert).toBe(`${RUNBOOKS}#${a.alert.toLowerCase()}`);
      expect(headings.has(a.alert.toLowerCase()), `${RUNBOOKS} heading for ${a.alert}`).toBe(true);
    }
  });

  it('each have a promtool unit test where they fire and one where they do not', () => {
    interface AlertTest {
      alertname: string;
      exp_alerts?: unknown[] | null;
    }
    const doc = parseYaml(readFileSync(RULES_TEST_FILE, 'utf8')) as {
      tests: { alert_rule_test?: AlertTest[] }[];
    };
    const cases = doc.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const a of alerts) {
      const mine = cases.filter((c) => c.alertname === a.alert);
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length > 0),
        `${a.alert} firing`,
      ).toBe(true);
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length === 0),
        `${a.alert} not firing`,
      ).toBe(true);
    }
  });

  it('are deployed by the PrometheusRule exactly as written in the rules file', () => {
    const r = spawnSync(process.execPath, ['scripts/prometheusrule.mjs', '--check'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
  });
});

describe('dashboard', () => {
  const d = loadDashboard();
  const queries = dashboardQueries(d);

  it('shows what the issue asks for', () => {
    const all = queries.map((q) => q.raw).join('\n');
    for (const needle of [
      'slotline_slot_lag_bytes',
      'slotline_commit_lag_seconds',
      'slotline_slot_retained_wal_bytes',
      'slotline_slot_safe_wal_size_bytes',
      'rate(slotline_sink_rows_written_total',
      'histogram_quantile(0.5, sum by (le, sink) (rate(slotline_sink_write_duration_seconds_bucket',
      'histogram_quantile(0.95, sum by (le, sink) (rate(slotline_sink_write_duration_seconds_bucket',
      'histogram_quantile(0.99, sum by (le, sink) (rate(slotline_sink_write_duration_seconds_bucket',
      'slotline_sink_batch_rows_bucket',
      'slotline_dead_letters_total',
      'slotline_errors_total',
      'slotline_leader',
    ]) {
      expect(all, needle).toContain(needle);
    }
    expect(d.uid).toBe('slotline');
  });

  it('parses every query with the PromQL grammar', () => {
    for (const q of queries) expect(analysePromql(q.expr).syntaxErrors, q.panel).toEqual([]);
  });
});

describe('metric names', () => {
  it('every slotline_* name in the rules and the dashboard is declared in src/admin/metrics.ts', async () => {
    const m = createMetrics({ version: 'test' });
    const exposed = parseExposition(await m.registry.metrics());
    // Labels are checked against a live /metrics (samples carry them); here, names.
    expect(checkAgainstExposition(allExpressions(), exposed, { labels: false })).toEqual([]);
  });
});
