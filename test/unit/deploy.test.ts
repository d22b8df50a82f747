/**
 * The container image recipe and the Kubernetes manifests, checked without a cluster:
 * kustomize builds the base and the Kafka overlay; every object validates against the
 * Kubernetes and prometheus-operator schemas that the kubernetes-models packages compile
 * (offline); and the settings the pods get pass the connector's own configuration parser.
 * The Dockerfile is read here; test/integration/container.test.ts builds and runs it (podman).
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { loadConfig, SETTINGS } from '../../src/config.js';
import { loadDashboard, loadRuleGroups } from '../harness/observability.js';
import { kustomizeSkip, requireKustomize, runTool } from '../harness/tools.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: unknown;
};
// Loosely typed on purpose: the objects come from YAML, and validate() is what judges them.
type Model = new (data: Record<string, unknown>) => { validate(): void };
const MODELS: Record<string, Model> = {
  'v1/ServiceAccount': ServiceAccount as unknown as Model,
  'v1/ConfigMap': ConfigMap as unknown as Model,
  'v1/Secret': Secret as unknown as Model,
  'v1/Service': Service as unknown as Model,
  'apps/v1/Deployment': Deployment as unknown as Model,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget as unknown as Model,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy as unknown as Model,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule as unknown as Model,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor as unknown as Model,
};

/** Schema errors of one object ([] when valid); an unknown kind is an error too. */
function schemaErrors(o: Obj): string[] {
  const model = MODELS[`${o.apiVersion}/${o.kind}`];
  if (!model) return [`${o.apiVersion} ${o.kind}: no schema known to this test`];
  try {
    new model(o as unknown as Record<string, unknown>).validate();
    return [];
  } catch (err) {
    return [`${o.kind} ${o.metadata?.name}: ${(err as Error).message}`];
  }
}

function parseManifests(text: string): Obj[] {
  return parseAllDocuments(text)
    .map((d) => {
      if (d.errors.length > 0) throw new Error(d.errors.map((e) => e.message).join('; '));
      return d.toJS() as Obj | null;
    })
    .filter((o): o is Obj => o !== null);
}

async function build(dir: string): Promise<Obj[]> {
  const [cmd, ...args] = requireKustomize();
  const r = await runTool(cmd as string, [...args, dir], { cwd: ROOT });
  if (r.code !== 0) throw new Error(`kustomize build ${dir} failed: ${r.stderr}`);
  return parseManifests(r.stdout);
}

function one(objs: Obj[], kind: string, name?: string): Obj {
  const found = objs.filter(
    (o) => o.kind === kind && (name === undefined || o.metadata.name.startsWith(name)),
  );
  expect(found.length, `${kind} ${name ?? ''}`).toBe(1);
  return found[0] as Obj;
}

// Typed views of the parts the checks read.
interface Container {
  name: string;
  image: string;
  args?: string[];
  ports: { name: string; containerPort: number }[];
  env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  envFrom: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  resources: {
    requests: Record<string, string>;
    limits: Record<string, string>;
  };
  livenessProbe: { httpGet: { path: string; port: string | number } };
  readinessProbe: { httpGet: { path: string; port: string | number } };
  securityContext: {
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    runAsNonRoot?: boolean;
    runAsUser?: number;
    capabilities?: { drop?: string[] };
  };
}
interface DeploymentSpec {
  replicas: number;
  selector: { matchLabels: Record<string, string> };
  strategy: { type: string; rollingUpdate?: { maxSurge: number; maxUnavailable: number } };
  template: {
    metadata: { labels: Record<string, string> };
    spec: {
      serviceAccountName: string;
      automountServiceAccountToken: boolean;
      terminationGracePeriodSeconds: number;
      securityContext: {
        runAsNonRoot: boolean;
        runAsUser: number;
        seccompProfile: { type: string };
      };
      containers: Container[];
    };
  };
}

const mebibytes = (q: string) => {
  const m = /^(\d+)(Mi|Gi)$/.exec(q);
  if (!m) throw new Error(`unexpected memory quantity ${q}`);
  return Number(m[1]) * (m[2] === 'Gi' ? 1024 : 1);
};
const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

const kustomizeSkipped =
  kustomizeSkip('kustomize builds of deploy/base and deploy/overlays/kafka') !== null;

describe.skipIf(kustomizeSkipped)('kustomize base (deploy/base)', () => {
  let objs: Obj[];
  beforeAll(async () => {
    objs = await build('deploy/base');
  });

  it('builds, and every object validates against the Kubernetes and prometheus-operator schemas', () => {
    expect(objs.map((o) => o.kind).sort()).toEqual(
      [
        'ConfigMap',
        'ConfigMap',
        'Deployment',
        'NetworkPolicy',
        'PodDisruptionBudget',
        'PrometheusRule',
        'Service',
        'Service',
        'ServiceAccount',
        'ServiceMonitor',
      ].sort(),
    );
    expect(objs.flatMap(schemaErrors)).toEqual([]);
    // No Secret in the build: the example is only an example.
    expect(objs.some((o) => o.kind === 'Secret')).toBe(false);
  });

  it('runs two hardened replicas with probes, limits and a long enough grace period', () => {
    const d = one(objs, 'Deployment', 'slotline').spec as DeploymentSpec;
    expect(d.replicas).toBe(2);
    expect(d.strategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxSurge: 0, maxUnavailable: 1 },
    });
    const pod = d.template.spec;
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 10001,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.containers).toHaveLength(1);
    const c = pod.containers[0] as Container;
    expect(c.image).toBe('slotline:0.1.0');
    expect(c.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      runAsUser: 10001,
      capabilities: { drop: ['ALL'] },
    });
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
    expect(c.ports).toEqual([
      { name: 'http', containerPort: 8080, protocol: 'TCP' },
      { name: 'admin', containerPort: 8081, protocol: 'TCP' },
    ]);
    expect(Object.keys(c.resources.requests).sort()).toEqual(['cpu', 'memory']);
    expect(Object.keys(c.resources.limits).sort()).toEqual(['cpu', 'memory']);
    const limitMi = mebibytes(c.resources.limits.memory as string);
    expect(limitMi).toBe(256);
    // V8's heap cap leaves room below the limit for buffers, code and stacks.
    const heap = /--max-old-space-size=(\d+)/.exec(
      c.env?.find((e) => e.name === 'NODE_OPTIONS')?.value ?? '',
    );
    expect(Number(heap?.[1])).toBeGreaterThan(0);
    expect(Number(heap?.[1])).toBeLessThanOrEqual(limitMi - 64);

    const cm = one(objs, 'ConfigMap', 'slotline-config').data as Record<string, string>;
    const shutdownMs = Number(
      cm['SLOTLINE_SHUTDOWN_TIMEOUT_MS'] ?? SETTINGS.SLOTLINE_SHUTDOWN_TIMEOUT_MS.default,
    );
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThanOrEqual(shutdownMs + 10_000);
    expect(Number(cm['SLOTLINE_HTTP_PORT'])).toBe(8080);
    expect(Number(cm['SLOTLINE_ADMIN_PORT'])).toBe(8081);
  });

  it('wires the generated ConfigMap, the Secret, the ServiceAccount, Services, PDB and ServiceMonitor together', () => {
    const d = one(objs, 'Deployment', 'slotline').spec as DeploymentSpec;
    const podLabels = d.template.metadata.labels;
    expect(matches(d.selector.matchLabels, podLabels)).toBe(true);
    const c = d.template.spec.containers[0] as Container;
    const cmName = one(objs, 'ConfigMap', 'slotline-config').metadata.name;
    expect(c.envFrom).toEqual([
      { configMapRef: { name: cmName } },
      { secretRef: { name: 'slotline' } },
    ]);
    const sa = one(objs, 'ServiceAccount', 'slotline');
    expect(d.template.spec.serviceAccountName).toBe(sa.metadata.name);
    expect(sa['automountServiceAccountToken']).toBe(false);

    const services = objs.filter((o) => o.kind === 'Service');
    const portsOf = (s: Obj) =>
      (s['spec'] as { ports: { name: string; port: number; targetPort: string }[] }).ports;
    for (const s of services) {
      const spec = s['spec'] as { selector: Record<string, string> };
      expect(matches(spec.selector, podLabels), s.metadata.name).toBe(true);
    }
    // Clients reach either pod on both ports; Prometheus's Service has no admin port.
    const named = (name: string) => services.find((s) => s.metadata.name === name) as Obj;
    expect(portsOf(named('slotline'))).toEqual([
      { name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' },
      { name: 'admin', port: 8081, targetPort: 'admin', protocol: 'TCP' },
    ]);
    expect(portsOf(named('slotline-metrics'))).toEqual([
      { name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' },
    ]);
    const metrics = one(objs, 'Service', 'slotline-metrics');
    expect(metrics['spec']).toMatchObject({ clusterIP: 'None', publishNotReadyAddresses: true });

    const pdb = one(objs, 'PodDisruptionBudget').spec as {
      maxUnavailable: number;
      selector: { matchLabels: Record<string, string> };
    };
    expect(pdb.maxUnavailable).toBe(1);
    expect(matches(pdb.selector.matchLabels, podLabels)).toBe(true);

    const sm = one(objs, 'ServiceMonitor').spec as {
      selector: { matchLabels: Record<string, string> };
      endpoints: { port: string; path: string }[];
    };
    const scraped = services.filter((s) =>
      matches(sm.selector.matchLabels, s.metadata.labels ?? {}),
    );
    expect(scraped.map((s) => s.metadata.name)).toEqual(['slotline-metrics']);
    expect(sm.endpoints).toMatchObject([{ port: 'http', path: '/metrics' }]);
  });

  it('keeps admin off the scraped port: a NetworkPolicy lets monitoring scrape, and only labelled clients and the replicas reach admin', () => {
    const d = one(objs, 'Deployment', 'slotline').spec as DeploymentSpec;
    const podLabels = d.template.metadata.labels;
    const np = one(objs, 'NetworkPolicy', 'slotline').spec as {
      podSelector: { matchLabels: Record<string, string> };
      policyTypes: string[];
      ingress: {
        from: {
          namespaceSelector?: { matchLabels: Record<string, string> };
          podSelector?: { matchLabels: Record<string, string> };
        }[];
        ports: { port: string; protocol: string }[];
      }[];
    };
    expect(matches(np.podSelector.matchLabels, podLabels)).toBe(true);
    expect(np.policyTypes).toEqual(['Ingress']);
    // Every rule names its ports and its peers: nothing is open to all.
    for (const rule of np.ingress) {
      expect(rule.ports.length).toBeGreaterThan(0);
      expect(rule.from.length).toBeGreaterThan(0);
    }
    const reaching = (port: string) =>
      np.ingress.filter((r) => r.ports.some((p) => p.port === port));
    // Prometheus (the monitoring namespace) reaches the port the ServiceMonitor scrapes…
    const sm = one(objs, 'ServiceMonitor').spec as { endpoints: { port: string }[] };
    const scrapedPort = sm.endpoints[0]!.port;
    expect(scrapedPort).toBe('http');
    const monitoring = reaching(scrapedPort).flatMap((r) => r.from);
    expect(monitoring).toContainEqual({
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } },
    });
    // …and admin only pods of this namespace: labelled clients and the replicas (forwarding).
    const admin = reaching('admin').flatMap((r) => r.from);
    expect(admin.every((p) => p.namespaceSelector === undefined && p.podSelector)).toBe(true);
    expect(admin.map((p) => p.podSelector?.matchLabels)).toEqual([
      { 'slotline-admin-client': 'true' },
      { 'app.kubernetes.io/name': 'slotline', 'app.kubernetes.io/component': 'connector' },
    ]);
    expect(matches(admin[1]!.podSelector!.matchLabels, podLabels)).toBe(true);
    expect(
      reaching(scrapedPort)
        .flatMap((r) => r.ports)
        .some((p) => p.port === 'admin'),
    ).toBe(false);
  });

  it('advertises each pod’s own admin address, on the admin port, for a standby to forward to', () => {
    const d = one(objs, 'Deployment', 'slotline').spec as DeploymentSpec;
    const c = d.template.spec.containers[0] as Container;
    const env = c.env ?? [];
    const podIp = env.findIndex((e) => e.name === 'POD_IP');
    const advertise = env.findIndex((e) => e.name === 'SLOTLINE_ADVERTISE_URL');
    expect(env[podIp]?.valueFrom?.fieldRef?.fieldPath).toBe('status.podIP');
    // $(POD_IP) is expanded only from variables defined before it.
    expect(podIp).toBeGreaterThanOrEqual(0);
    expect(advertise).toBeGreaterThan(podIp);
    const cm = one(objs, 'ConfigMap', 'slotline-config').data as Record<string, string>;
    const secret = parseYaml(read('deploy/base/secret.example.yaml')) as Obj & {
      stringData: Record<string, string>;
    };
    const url = (env[advertise]?.value ?? '').replace('$(POD_IP)', '10.1.2.3');
    const cfg = loadConfig({ ...cm, ...secret.stringData, SLOTLINE_ADVERTISE_URL: url });
    expect(cfg.advertiseUrl).toBe('http://10.1.2.3:8081');
    const adminPort = c.ports.find((p) => p.name === 'admin')?.containerPort;
    expect(cfg.adminPort).toBe(adminPort);
    expect(new URL(url).port).toBe(String(adminPort));
    expect(c.ports.find((p) => p.name === 'http')?.containerPort).toBe(cfg.httpPort);
    // Probes stay on the main port: admin is not needed to be live or ready.
    expect(c.livenessProbe.httpGet.port).toBe('http');
  });

  it('gives the pods only non-secret, valid SLOTLINE_* settings, which with the Secret example parse', () => {
    const cm = one(objs, 'ConfigMap', 'slotline-config').data as Record<string, string>;
    for (const key of Object.keys(cm)) {
      expect(Object.keys(SETTINGS), key).toContain(key);
      expect(key, 'a secret in the ConfigMap').not.toMatch(/_URL$|TOKEN|PASSWORD/);
    }
    const secret = parseYaml(read('deploy/base/secret.example.yaml')) as Obj & {
      stringData: Record<string, string>;
    };
    expect(schemaErrors(secret)).toEqual([]);
    expect(secret.metadata.name).toBe('slotline');
    const cfg = loadConfig({ ...cm, ...secret.stringData });
    expect(cfg.httpPort).toBe(8080);
    expect(cfg.kafkaBrokers).toBeNull();
    expect(cfg.adminToken).not.toBeNull();
  });

  it('deploys the rules file as the PrometheusRule and the dashboard for Grafana', () => {
    const rule = one(objs, 'PrometheusRule').spec as { groups: unknown };
    expect(rule.groups).toEqual(loadRuleGroups());
    const dash = one(objs, 'ConfigMap', 'slotline-dashboard');
    expect(dash.metadata.labels?.['grafana_dashboard']).toBe('1');
    const data = dash['data'] as Record<string, string>;
    expect(JSON.parse(data['slotline.json'] as string)).toEqual(loadDashboard());
  });
});

describe.skipIf(kustomizeSkipped)('kustomize overlay (deploy/overlays/kafka)', () => {
  it('builds, validates, and turns the Kafka sink on', async () => {
    const objs = await build('deploy/overlays/kafka');
    expect(objs.flatMap(schemaErrors)).toEqual([]);
    expect(objs.every((o) => o.metadata.namespace === 'slotline')).toBe(true);
    const cm = one(objs, 'ConfigMap', 'slotline-config').data as Record<string, string>;
    expect(cm['SLOTLINE_KAFKA_BROKERS']).toBeTruthy();
    for (const key of Object.keys(cm)) expect(Object.keys(SETTINGS), key).toContain(key);
    const secret = parseYaml(read('deploy/overlays/kafka/secret.example.yaml')) as Obj & {
      stringData: Record<string, string>;
    };
    expect(schemaErrors(secret)).toEqual([]);
    const cfg = loadConfig({ ...cm, ...secret.stringData });
    expect(cfg.kafkaBrokers?.length).toBe(3);
    expect(cfg.kafkaSasl?.mechanism).toBe('scram-sha-512');
    const d = one(objs, 'Deployment', 'slotline').spec as DeploymentSpec;
    const c = d.template.spec.containers[0] as Container;
    expect(c.envFrom[0]?.configMapRef?.name).toBe(
      one(objs, 'ConfigMap', 'slotline-config').metadata.name,
    );
  });
});

describe('Dockerfile (read; built and run by test/integration/container.test.ts)', () => {
  interface Instruction {
    op: string;
    args: string;
  }
  // Continuation lines joined, comments dropped, split into stages at FROM.
  const instructions: Instruction[] = read('Dockerfile')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const m = /^(\S+)\s+(.*)$/.exec(l);
      return { op: (m?.[1] ?? l).toUpperCase(), args: (m?.[2] ?? '').trim() };
    });
  const stages: Instruction[][] = [];
  for (const i of instructions) {
    if (i.op === 'FROM') stages.push([]);
    stages[stages.length - 1]?.push(i);
  }
  const build = stages[0] ?? [];
  const final = stages[stages.length - 1] ?? [];
  const args = (stage: Instruction[], op: string) =>
    stage.filter((i) => i.op === op).map((i) => i.args);

  it('has two stages on Node 22: build with every dependency, run with production ones', () => {
    expect(stages).toHaveLength(2);
    expect(args(build, 'FROM')).toEqual(['node:22-bookworm-slim AS build']);
    expect(args(final, 'FROM')).toEqual(['node:22-bookworm-slim']);
    expect(args(build, 'RUN').join('\n')).toMatch(/npm ci\b/);
    expect(args(build, 'RUN').join('\n')).toContain('npm run build');
    const run = args(final, 'RUN').join('\n');
    expect(run).toMatch(/npm ci --omit=dev/);
    expect(run).not.toMatch(/npm run build|npm install\b/);
    expect(args(final, 'COPY')).toContain('--from=build /app/dist ./dist');
  });

  it('ships sql/ where dist/sinks/schema.js looks for it', () => {
    expect(args(final, 'WORKDIR')).toEqual(['/app']);
    expect(args(final, 'COPY')).toContain('sql ./sql');
    // schema.ts reads new URL('../../sql/', import.meta.url) from dist/sinks/.
    expect(read('src/sinks/schema.ts')).toContain("new URL('../../sql/', import.meta.url)");
  });

  it('runs node directly as a numeric non-root user, with no secret baked in', () => {
    expect(args(final, 'USER')).toEqual(['10001:10001']);
    expect(args(final, 'ENTRYPOINT').map((a) => JSON.parse(a) as unknown)).toEqual([
      ['node', 'dist/cli.js'],
    ]);
    expect(args(final, 'CMD').map((a) => JSON.parse(a) as unknown)).toEqual([['run']]);
    for (const i of instructions.filter((i) => i.op === 'ENV' || i.op === 'ARG')) {
      expect(i.args, `${i.op} ${i.args}`).not.toMatch(/URL|TOKEN|PASSWORD|SECRET|SLOTLINE_/i);
    }
    // Nothing copied wholesale into the image, so no stray .env can ride along.
    for (const stage of stages) expect(args(stage, 'COPY')).not.toContain('. .');
    const ignored = read('.dockerignore').split('\n');
    for (const entry of ['node_modules', '.git', 'dist', '.env', '.env.*']) {
      expect(ignored, entry).toContain(entry);
    }
  });

  it('starts the entry point that npm run build produces', () => {
    // `npm test` builds first; the image's ENTRYPOINT names this file.
    expect(
      existsSync(new URL('../../dist/cli.js', import.meta.url)),
      'dist/cli.js is missing: run `npm run build` first (`npm test` does)',
    ).toBe(true);
  });
});
