/**
 * What the alert rules and the Grafana dashboard ask of the connector's metrics, and what a
 * /metrics page offers: metric names and label names on both sides, so tests can check that
 * every `slotline_*` name an expression uses is one the connector exports.
 */
import { readFileSync } from 'node:fs';
import { parser } from '@prometheus-io/lezer-promql';
import { parse as parseYaml } from 'yaml';

export const RULES_FILE = new URL('../../deploy/prometheus/slotline-rules.yaml', import.meta.url);
export const RULES_TEST_FILE = new URL(
  '../../deploy/prometheus/slotline-rules.test.yaml',
  import.meta.url,
);
export const DASHBOARD_FILE = new URL('../../deploy/grafana/slotline.json', import.meta.url);

export interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface RuleGroup {
  name: string;
  rules: Rule[];
}

export function loadRuleGroups(): RuleGroup[] {
  const doc = parseYaml(readFileSync(RULES_FILE, 'utf8')) as { groups: RuleGroup[] };
  return doc.groups;
}

export function loadAlerts(): (Rule & { alert: string })[] {
  return loadRuleGroups()
    .flatMap((g) => g.rules)
    .filter((r): r is Rule & { alert: string } => typeof r.alert === 'string');
}

export interface DashboardQuery {
  panel: string;
  /** As written in the dashboard, with Grafana's variables. */
  raw: string;
  /** Variables replaced so that Prometheus can run it. */
  expr: string;
}

interface Panel {
  title?: string;
  type?: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}

export interface Dashboard {
  title: string;
  uid: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: unknown; definition?: string }[] };
}

export function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as Dashboard;
}

/**
 * Grafana's variables as Prometheus would see them: `$__rate_interval` a range, the
 * namespace and job selectors their "All" value.
 */
export function substituteGrafanaVariables(expr: string): string {
  return expr
    .replace(/\$__rate_interval|\$__interval|\$__range/g, '1m')
    .replace(/\$\{?(namespace|job)\}?/g, '.*');
}

/** Every query of every panel (rows included). */
export function dashboardQueries(d: Dashboard = loadDashboard()): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  const walk = (panels: Panel[]) => {
    for (const p of panels) {
      for (const t of p.targets ?? []) {
        if (typeof t.expr === 'string' && t.expr.trim() !== '') {
          out.push({
            panel: p.title ?? '(untitled)',
            raw: t.expr,
            expr: substituteGrafanaVariables(t.expr),
          });
        }
      }
      if (p.panels) walk(p.panels);
    }
  };
  walk(d.panels);
  return out;
}

/** The metric names in the dashboard's template variables (`label_values(metric, label)`). */
export function templateVariableMetrics(d: Dashboard = loadDashboard()): string[] {
  return d.templating.list.flatMap((v) => {
    const m = /label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(v.definition ?? '');
    return m?.[1] ? [m[1]] : [];
  });
}

export interface PromqlUse {
  /** Each vector selector: its metric name (null for `{__name__=…}`) and matcher label names. */
  selectors: { metric: string | null; labels: string[] }[];
  /** Label names of by/without/on/ignoring/group_left clauses. */
  grouping: string[];
  /** Where the grammar found something it could not parse. */
  syntaxErrors: string[];
}

/** Reads a PromQL expression with Prometheus' own Lezer grammar (the one its web UI uses). */
export function analysePromql(expr: string): PromqlUse {
  const use: PromqlUse = { selectors: [], grouping: [], syntaxErrors: [] };
  let current: { metric: string | null; labels: string[] } | null = null;
  parser.parse(expr).iterate({
    enter(ref) {
      if (ref.type.isError) {
        use.syntaxErrors.push(
          `at ${ref.from}: ${JSON.stringify(expr.slice(ref.from, ref.from + 24))}`,
        );
        return;
      }
      const parent = ref.node.parent?.name;
      if (ref.name === 'VectorSelector') {
        current = { metric: null, labels: [] };
        use.selectors.push(current);
      } else if (ref.name === 'Identifier' && parent === 'VectorSelector' && current) {
        current.metric = expr.slice(ref.from, ref.to);
      } else if (ref.name === 'LabelName') {
        const name = expr.slice(ref.from, ref.to);
        if (parent === 'GroupingLabels') use.grouping.push(name);
        else if (current) current.labels.push(name);
      }
    },
    leave(ref) {
      if (ref.name === 'VectorSelector') current = null;
    },
  });
  return use;
}

/** Labels a scrape adds to every series (Prometheus' own and the Kubernetes service discovery's). */
export const TARGET_LABELS = new Set([
  'job',
  'instance',
  'namespace',
  'pod',
  'service',
  'container',
  'endpoint',
]);

/** Metric name → label names, from the Prometheus text format. */
export type Exposition = Map<string, Set<string>>;

/**
 * Names and label names of a /metrics page. A histogram's TYPE line stands for its
 * `_bucket` (with `le`), `_sum` and `_count` series, so a declared metric without samples
 * yet (a labelled counter before its first increment) still counts as exported.
 */
export function parseExposition(text: string): Exposition {
  const out: Exposition = new Map();
  const add = (name: string, labels: Iterable<string> = []) => {
    let set = out.get(name);
    if (!set) out.set(name, (set = new Set()));
    for (const l of labels) set.add(l);
  };
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      if (!name) continue;
      if (type === 'histogram') {
        add(`${name}_bucket`, ['le']);
        add(`${name}_sum`);
        add(`${name}_count`);
      } else if (type === 'summary') {
        add(name, ['quantile']);
        add(`${name}_sum`);
        add(`${name}_count`);
      } else add(name);
      continue;
    }
    if (line.startsWith('#') || line.trim() === '') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s/.exec(line);
    if (!m?.[1]) continue;
    add(m[1], labelNamesOf(m[2] ?? ''));
  }
  return out;
}

/** The label names of `{a="x",b="y \" z"}`, reading quoted values with their escapes. */
function labelNamesOf(braces: string): string[] {
  const names: string[] = [];
  let i = 1;
  while (i < braces.length - 1) {
    const eq = braces.indexOf('=', i);
    if (eq < 0) break;
    names.push(braces.slice(i, eq).trim().replace(/^,/, '').trim());
    i = eq + 2; // past ="
    while (i < braces.length && braces[i] !== '"') i += braces[i] === '\\' ? 2 : 1;
    i += 2; // past the closing quote and the comma
  }
  return names.filter((n) => n.length > 0);
}

export interface NameProblem {
  where: string;
  problem: string;
}

/**
 * Every `slotline_*` metric an expression selects must be exported, with every label its
 * matchers name; every label it groups by must be a target label or a label of one of the
 * metrics it selects.
 */
export function checkAgainstExposition(
  exprs: { where: string; expr: string }[],
  exposed: Exposition,
  opts: { labels: boolean } = { labels: true },
): NameProblem[] {
  const problems: NameProblem[] = [];
  for (const { where, expr } of exprs) {
    const use = analysePromql(expr);
    for (const e of use.syntaxErrors) problems.push({ where, problem: `syntax error ${e}` });
    const available = new Set(TARGET_LABELS);
    for (const s of use.selectors) {
      if (s.metric === null || !s.metric.startsWith('slotline_')) {
        for (const l of s.labels) available.add(l);
        continue;
      }
      const labels = exposed.get(s.metric);
      if (!labels) {
        problems.push({ where, problem: `${s.metric} is not exported` });
        continue;
      }
      for (const l of labels) available.add(l);
      if (!opts.labels) continue;
      for (const l of s.labels) {
        if (!TARGET_LABELS.has(l) && !labels.has(l))
          problems.push({ where, problem: `${s.metric} has no label ${l}` });
      }
    }
    if (!opts.labels) continue;
    for (const l of use.grouping) {
      if (!available.has(l))
        problems.push({ where, problem: `groups by ${l}, which no selected metric has` });
    }
  }
  return problems;
}

/** The rules' and the dashboard's expressions, each with where it comes from. */
export function allExpressions(): { where: string; expr: string }[] {
  return [
    ...loadRuleGroups().flatMap((g) =>
      g.rules.map((r) => ({ where: `rule ${r.alert ?? r.record}`, expr: r.expr })),
    ),
    ...dashboardQueries().map((q) => ({ where: `panel "${q.panel}"`, expr: q.expr })),
    ...templateVariableMetrics().map((m) => ({ where: 'dashboard variable', expr: m })),
  ];
}
