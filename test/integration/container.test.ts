/**
 * The container image as Kubernetes runs it. The real Dockerfile is built with podman, on a local
 * stand-in for its base image (scripts/container-base.sh: no registry can be reached here), and
 * run with what deploy/base gives the pod (config.env, the container's env, its memory limit, a
 * read-only root with a small /tmp, no capabilities, no privilege escalation) against the test
 * cluster over the host's network. It must stream trades into the sink as uid 10001, with node
 * itself as PID 1, and exit 0 on SIGTERM within the Deployment's terminationGracePeriodSeconds.
 *
 * Opt-in (SLOTLINE_TEST_CONTAINER=1, which .ci/run sets): it needs root, podman, runc and
 * debootstrap, and the first run on a machine makes the stand-in base (a few minutes).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { expectSinkEqualsSource, expectSlotAtCheckpoint } from '../harness/compare.js';
import { ADMIN_TOKEN } from '../harness/connector.js';
import { createTestContext, type TestContext } from '../harness/context.js';
import { call, freePort, waitReady } from '../harness/http.js';
import { preparePodman, REPO_ROOT, type Podman } from '../harness/podman.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
} from '../harness/ponder.js';
import { containerSkip } from '../harness/tools.js';

const SKIP = containerSkip('the container image test (test/integration/container.test.ts)');
const IMAGE = 'localhost/slotline:container-test';
const SLOTLINE_UID = 10001;

interface PodFacts {
  graceSeconds: number;
  env: Record<string, string>;
  /** podman run options that stand for the pod's resources and security context. */
  runOptions: string[];
}

/** `256Mi` → `256m`: Kubernetes' binary suffixes in podman's spelling. */
function podmanSize(quantity: string): string {
  const m = /^(\d+)(Ki|Mi|Gi)$/.exec(quantity);
  if (!m) throw new Error(`unexpected Kubernetes quantity ${quantity}`);
  return `${m[1]}${m[2]![0]!.toLowerCase()}`;
}

/** What deploy/base says the pod runs with, read from the manifests themselves. */
function podFacts(): PodFacts {
  const read = (path: string) => readFileSync(join(REPO_ROOT, path), 'utf8');
  type Container = {
    env?: { name: string; value: string }[];
    resources: { limits: { memory: string } };
    securityContext: {
      readOnlyRootFilesystem: boolean;
      allowPrivilegeEscalation: boolean;
      capabilities: { drop: string[] };
    };
    volumeMounts: { name: string; mountPath: string }[];
  };
  const pod = (
    parseYaml(read('deploy/base/deployment.yaml')) as {
      spec: {
        template: {
          spec: {
            terminationGracePeriodSeconds: number;
            containers: Container[];
            volumes: { name: string; emptyDir?: { sizeLimit: string } }[];
          };
        };
      };
    }
  ).spec.template.spec;
  const container = pod.containers[0]!;
  const env: Record<string, string> = {};
  for (const line of read('deploy/base/config.env').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  for (const e of container.env ?? []) env[e.name] = e.value;

  const sec = container.securityContext;
  const runOptions = [`--memory=${podmanSize(container.resources.limits.memory)}`];
  if (sec.readOnlyRootFilesystem) runOptions.push('--read-only');
  if (!sec.allowPrivilegeEscalation) runOptions.push('--security-opt=no-new-privileges');
  if (sec.capabilities.drop.includes('ALL')) runOptions.push('--cap-drop=all');
  for (const mount of container.volumeMounts) {
    const size = pod.volumes.find((v) => v.name === mount.name)?.emptyDir?.sizeLimit;
    if (size) runOptions.push(`--tmpfs=${mount.mountPath}:rw,size=${podmanSize(size)},mode=1777`);
  }
  return { graceSeconds: pod.terminationGracePeriodSeconds, env, runOptions };
}

/** The uid and gid lines of a host process (root's podman maps no user namespace). */
async function processIds(pid: number): Promise<{ uids: number[]; gids: number[] }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const ids = (key: string) =>
    (new RegExp(`^${key}:\\s+(.*)$`, 'm').exec(status)?.[1] ?? '').split(/\s+/).map(Number);
  return { uids: ids('Uid'), gids: ids('Gid') };
}

const seconds = (ms: number) => (ms / 1000).toFixed(1);

describe.skipIf(SKIP !== null)('the container image, built and run', () => {
  let podman: Podman | undefined;
  const measured: string[] = [];

  beforeAll(async () => {
    let started = Date.now();
    const prepared = await preparePodman();
    podman = prepared;
    const cached = prepared.baseLog.includes('cached stand-in');
    measured.push(
      `stand-in base ${cached ? 'from cache' : 'made'} in ${seconds(Date.now() - started)} s`,
    );
    started = Date.now();
    const built = await prepared.run(
      ['build', '--pull=never', '--network=host', '--tag', IMAGE, REPO_ROOT],
      900_000,
    );
    if (built.code !== 0) {
      throw new Error(`podman build failed (exit ${built.code}):\n${built.stderr.slice(-4000)}`);
    }
    measured.push(`image built in ${seconds(Date.now() - started)} s`);
  }, 1_800_000);

  afterAll(async () => {
    console.log(`[slotline tests] container image: ${measured.join(', ')}`);
    await podman?.[Symbol.asyncDispose]();
  }, 300_000);

  it('is the production image: uid 10001, node dist/cli.js as its entrypoint, no secret in its environment', async () => {
    const [config] = JSON.parse(await podman!.ok(['image', 'inspect', IMAGE])) as {
      Size: number;
      Config: { User: string; Entrypoint: string[]; Cmd: string[]; Env: string[] };
    }[];
    measured.push(`image size ${(config!.Size / 1e6).toFixed(0)} MB`);
    expect(config!.Config.User).toBe(`${SLOTLINE_UID}:${SLOTLINE_UID}`);
    expect(config!.Config.Entrypoint).toEqual(['node', 'dist/cli.js']);
    expect(config!.Config.Cmd).toEqual(['run']);
    expect(config!.Config.Env.join('\n')).not.toMatch(/SLOTLINE_|postgres:\/\//);
  });

  it('streams trades into the sink as uid 10001 and exits 0 on SIGTERM within the grace period', async () => {
    await using ctx = await createTestContext('container');
    const pod = podFacts();
    const port = await freePort();
    await createPonderTables(ctx.source);
    const pools = [makePool(0), makePool(1)];
    await insertPools(ctx.source, 'public', pools);
    // History before the first start (the snapshot), then trades while it streams.
    await insertTrades(
      ctx.source,
      'public',
      Array.from({ length: 50 }, (_, i) => makeTrade(i, pools[i % 2]!)),
    );

    const name = `slotline-test-${ctx.slot.slice(-10)}`;
    await using container = await startContainer(podman!, name, pod, ctx, port);
    await waitReady(port, { timeoutMs: 120_000 }).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}\n${await container.logs()}`);
    });
    for (let batch = 1; batch <= 5; batch++) {
      const rows = Array.from({ length: 30 }, (_, i) => makeTrade(batch * 100 + i, pools[i % 2]!));
      await insertTrades(ctx.source, 'public', rows);
    }
    await expectSinkEqualsSource(ctx);
    await expectSlotAtCheckpoint(ctx);
    const status = await call(port, 'GET', '/status');
    expect(status.status).toBe(200);

    // The process itself, seen from the host: uid and gid 10001 (real, effective, saved, fs),
    // and node as the container's PID 1 with no shell or npm between it and the signal.
    const pid = Number((await podman!.ok(['inspect', '--format', '{{.State.Pid}}', name])).trim());
    const ids = await processIds(pid);
    expect(ids.uids).toEqual([SLOTLINE_UID, SLOTLINE_UID, SLOTLINE_UID, SLOTLINE_UID]);
    expect(ids.gids).toEqual([SLOTLINE_UID, SLOTLINE_UID, SLOTLINE_UID, SLOTLINE_UID]);
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean);
    expect(cmdline).toEqual(['node', 'dist/cli.js', 'run']);

    const stopped = await container.sigterm(pod.graceSeconds);
    measured.push(`SIGTERM to exit ${stopped.ms} ms (grace period ${pod.graceSeconds} s)`);
    const logs = await container.logs();
    expect(stopped.code, logs.slice(-3000)).toBe(0);
    expect(stopped.ms).toBeLessThan(pod.graceSeconds * 1000);
    // The final acknowledgement was sent and the slot's connection closed.
    await expectSlotAtCheckpoint(ctx);
    const active = await ctx.source.query<{ active: boolean }>(
      'SELECT active FROM pg_replication_slots WHERE slot_name = $1',
      [ctx.slot],
    );
    expect(active.rows[0]?.active).toBe(false);
    expect(logs).not.toContain(new URL(ctx.sourceUrl).password);
  });
});

interface Container extends AsyncDisposable {
  logs(): Promise<string>;
  /** SIGTERM, then the exit code and the time from the signal to the exit. */
  sigterm(graceSeconds: number): Promise<{ code: number; ms: number }>;
}

/**
 * `podman run -d` of the image with the pod's settings; the connection strings and the token
 * travel in an env file (mode 0600), not on a command line other processes can read.
 */
async function startContainer(
  podman: Podman,
  name: string,
  pod: PodFacts,
  ctx: TestContext,
  port: number,
): Promise<Container> {
  const env = {
    ...pod.env,
    SLOTLINE_SOURCE_URL: ctx.sourceUrl,
    SLOTLINE_SINK_URL: ctx.sinkUrl,
    SLOTLINE_SLOT: ctx.slot,
    SLOTLINE_PUBLICATION: ctx.publication,
    SLOTLINE_HTTP_PORT: String(port),
    SLOTLINE_ADMIN_TOKEN: ADMIN_TOKEN,
  };
  const envFile = join(podman.state, `${name}.env`);
  writeFileSync(
    envFile,
    Object.entries(env)
      .map(([k, v]) => `${k}=${v}\n`)
      .join(''),
    { mode: 0o600 },
  );
  await podman.ok([
    'run',
    '--detach',
    '--name',
    name,
    '--network=host',
    `--env-file=${envFile}`,
    ...pod.runOptions,
    IMAGE,
  ]);
  const logs = async () => {
    const r = await podman.run(['logs', name]);
    return `${r.stdout}${r.stderr}`;
  };
  return {
    logs,
    async sigterm(graceSeconds) {
      const signalled = Date.now();
      await podman.ok(['kill', '--signal=SIGTERM', name]);
      // Past the grace period the kubelet would SIGKILL; podman's own bookkeeping adds a second.
      await podman.ok(['wait', name], (graceSeconds + 30) * 1000);
      // When the process ended, as conmon recorded it (not when `podman wait` noticed).
      const [finished, code] = (
        await podman.ok([
          'inspect',
          '--format',
          '{{.State.FinishedAt.UnixMilli}} {{.State.ExitCode}}',
          name,
        ])
      )
        .trim()
        .split(' ')
        .map(Number);
      return { code: code!, ms: finished! - signalled };
    },
    async [Symbol.asyncDispose]() {
      await podman.run(['rm', '--force', '--time=0', name]);
    },
  };
}
