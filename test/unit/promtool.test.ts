/**
 * promtool on the alert rules and the dashboard (Debian's `prometheus` package): the rules
 * file is valid, every promtool unit test passes, and the dashboard's queries are valid PromQL.
 * In `npm run test:heavy`; skipped with a line saying what to install when promtool is
 * missing, except under CI=true. (alerts.test.ts checks the rest without any tool.)
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import {
  RULES_FILE,
  RULES_TEST_FILE,
  dashboardQueries,
  loadAlerts,
} from '../harness/observability.js';
import { prometheusSkip, requirePrometheusTool, runTool } from '../harness/tools.js';

const promtoolSkip = prometheusSkip('promtool checks of the rules and the dashboard', 'promtool');

describe.skipIf(promtoolSkip !== null)('promtool', () => {
  const dir = mkdtempSync(join(tmpdir(), 'slotline-promtool-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('check rules: the rules file is valid', async () => {
    const promtool = requirePrometheusTool('promtool');
    const r = await runTool(promtool, ['check', 'rules', fileURLToPath(RULES_FILE)]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`SUCCESS: ${loadAlerts().length} rules found`);
  });

  it('test rules: every unit test passes', async () => {
    const promtool = requirePrometheusTool('promtool');
    const r = await runTool(promtool, ['test', 'rules', fileURLToPath(RULES_TEST_FILE)]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('SUCCESS');
  });

  it("check rules: the dashboard's queries are valid PromQL (as recording rules)", async () => {
    const promtool = requirePrometheusTool('promtool');
    const queries = dashboardQueries();
    const file = join(dir, 'dashboard-queries.yaml');
    writeFileSync(
      file,
      stringify({
        groups: [
          {
            name: 'slotline-dashboard',
            rules: queries.map((q, i) => ({
              record: `slotline_dashboard:query_${i}`,
              expr: q.expr,
            })),
          },
        ],
      }),
    );
    const r = await runTool(promtool, ['check', 'rules', file]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(`SUCCESS: ${queries.length} rules found`);
  });
});
