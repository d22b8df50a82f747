// Wraps deploy/prometheus/slotline-rules.yaml (the alerts' single source of truth, a plain
// Prometheus rules file) into deploy/prometheus/prometheusrule.yaml, the prometheus-operator
// resource that kustomize deploys. `npm run deploy:rules` writes it; with --check, exits 1
// when the committed file does not carry exactly the rules of the source (a test runs this).
import console from 'node:console';
import { readFileSync, writeFileSync } from 'node:fs';
import process from 'node:process';
import { URL } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { format, resolveConfig } from 'prettier';
import { parse, stringify } from 'yaml';

const source = new URL('../deploy/prometheus/slotline-rules.yaml', import.meta.url);
const target = new URL('../deploy/prometheus/prometheusrule.yaml', import.meta.url);

const rules = parse(readFileSync(source, 'utf8'));
const resource = {
  apiVersion: 'monitoring.coreos.com/v1',
  kind: 'PrometheusRule',
  metadata: { name: 'slotline', labels: { 'app.kubernetes.io/name': 'slotline' } },
  spec: { groups: rules.groups },
};

if (process.argv.includes('--check')) {
  let committed;
  try {
    committed = parse(readFileSync(target, 'utf8'));
  } catch (err) {
    console.error(`cannot read ${target.pathname}: ${err.message}`);
    process.exit(1);
  }
  if (!isDeepStrictEqual(committed, resource)) {
    console.error(
      'deploy/prometheus/prometheusrule.yaml is out of date with slotline-rules.yaml: run `npm run deploy:rules`',
    );
    process.exit(1);
  }
  console.log('deploy/prometheus/prometheusrule.yaml matches slotline-rules.yaml');
} else {
  const header =
    '# GENERATED from slotline-rules.yaml by `npm run deploy:rules`: edit that file, not this one.\n';
  const text = header + stringify(resource, { lineWidth: 0 });
  const options = { ...(await resolveConfig(target.pathname)), filepath: target.pathname };
  writeFileSync(target, await format(text, options));
  console.log(`wrote ${target.pathname}`);
}
