/**
 * External programs some tests need (promtool, prometheus, kustomize or kubectl, java and
 * mvn). They are found on PATH or in /usr/bin; `.ci/run` installs them. Under CI=true a
 * missing program fails its tests; elsewhere they are skipped with a line that says what to
 * install. SLOTLINE_TEST_SKIP_PROMETHEUS=1, SLOTLINE_TEST_SKIP_KUSTOMIZE=1 and
 * SLOTLINE_TEST_SKIP_KAFKA=1 skip them knowingly. These tests are in `npm run test:heavy`
 * (test/suites.ts); `npm test` needs none of the programs. The container test (podman) is opt-in
 * instead: SLOTLINE_TEST_CONTAINER=1.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { inject } from 'vitest';

/** The absolute path of an executable on PATH (or in /usr/bin), or null. */
export function findTool(name: string): string | null {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/bin', '/usr/local/bin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

export const SKIP_PROMETHEUS = process.env['SLOTLINE_TEST_SKIP_PROMETHEUS'] === '1';
export const SKIP_KUSTOMIZE = process.env['SLOTLINE_TEST_SKIP_KUSTOMIZE'] === '1';
export const SKIP_KAFKA = process.env['SLOTLINE_TEST_SKIP_KAFKA'] === '1';

/**
 * Whether this run is CI's (`CI=true`, as CI services and `.ci/run` set it). There nothing may
 * skip for want of a program or an extension: a missing one fails, so a green CI means every
 * test ran.
 */
export const IN_CI = ['true', '1', 'yes'].includes((process.env['CI'] ?? '').toLowerCase());

/**
 * Why the tests that need these programs should be skipped here, or null when they run. They
 * run under CI (a missing program then fails them); elsewhere they are skipped when a program
 * is absent, and always when the environment variable says so. A skip prints one line that
 * says what to install, so a fresh machine passes `npm test` without silently losing checks.
 */
function skipReason(
  what: string,
  missing: boolean,
  envVar: string,
  install: string,
): string | null {
  let reason: string | null = null;
  if (process.env[envVar] === '1') reason = `${envVar}=1`;
  else if (missing && !IN_CI) reason = `${install} (these tests run, and fail, under CI=true)`;
  if (reason) console.warn(`[slotline tests] SKIPPED ${what}: ${reason}`);
  return reason;
}

/**
 * Skip reason of the tests that need TimescaleDB on the test server, or null when they run. The
 * global setup decides: under CI=true a server without it has already failed the run.
 */
export function timescaleSkip(what: string): string | null {
  if (inject('timescale')) return null;
  const reason = 'the test server has no usable TimescaleDB (the global setup line says why)';
  console.warn(`[slotline tests] SKIPPED ${what}: ${reason}`);
  return reason;
}

/** Skip reason of the promtool and Prometheus server tests (see skipReason). */
export function prometheusSkip(what: string, tool: 'promtool' | 'prometheus'): string | null {
  return skipReason(
    what,
    !findTool(tool),
    'SLOTLINE_TEST_SKIP_PROMETHEUS',
    `${tool} not found: install Debian's \`prometheus\` package ` +
      '(apt-get install prometheus) to run them',
  );
}

/** Skip reason of the kustomize build tests (see skipReason). */
export function kustomizeSkip(what: string): string | null {
  const missing = !findTool('kustomize') && !findTool('kubectl');
  return skipReason(
    what,
    missing,
    'SLOTLINE_TEST_SKIP_KUSTOMIZE',
    'neither kubectl nor kustomize found: install kubectl (or kustomize v4+) to run them',
  );
}

/**
 * Skip reason of the container image test, or null when it runs. It is opt-in, also under CI=true:
 * it builds a base image and the real one with podman (root, several minutes and ~700 MB the
 * first time), so it runs only with SLOTLINE_TEST_CONTAINER=1, which `.ci/run` sets. Once asked
 * for, nothing is skipped: a missing podman or debootstrap fails it.
 */
export function containerSkip(what: string): string | null {
  if (process.env['SLOTLINE_TEST_CONTAINER'] === '1') return null;
  const reason =
    'SLOTLINE_TEST_CONTAINER is not 1 (it builds the image with podman, as root: ' +
    'apt-get install podman runc debootstrap; .ci/run sets it)';
  console.warn(`[slotline tests] SKIPPED ${what}: ${reason}`);
  return reason;
}

/**
 * Skip reason of the Kafka tests (see skipReason): the local broker needs java (JAVA_HOME's,
 * or on PATH) and mvn (to resolve its jars from Maven Central). Never skipped for want of
 * them when SLOTLINE_TEST_KAFKA_BROKERS names a broker to use instead.
 */
export function kafkaSkip(what: string): string | null {
  const home = process.env['JAVA_HOME'];
  const java = home ? existsSync(join(home, 'bin', 'java')) : findTool('java') !== null;
  const external = Boolean(process.env['SLOTLINE_TEST_KAFKA_BROKERS']);
  return skipReason(
    what,
    !external && (!java || !findTool('mvn')),
    'SLOTLINE_TEST_SKIP_KAFKA',
    `${java ? 'mvn' : 'java'} not found: install Java 17 and Maven ` +
      '(apt-get install default-jre-headless maven) to run them, ' +
      'or point SLOTLINE_TEST_KAFKA_BROKERS at a broker',
  );
}

/** promtool's path; throws a message that says how to get it. */
export function requirePrometheusTool(name: 'promtool' | 'prometheus'): string {
  const path = findTool(name);
  if (!path) {
    throw new Error(
      `${name} not found on PATH or in /usr/bin: install Debian's \`prometheus\` package ` +
        '(.ci/run does), or set SLOTLINE_TEST_SKIP_PROMETHEUS=1 to skip these checks knowingly',
    );
  }
  return path;
}

/** The command that runs `kustomize build <dir>`: kustomize itself, or kubectl's built-in. */
export function requireKustomize(): string[] {
  const kustomize = findTool('kustomize');
  if (kustomize) return [kustomize, 'build'];
  const kubectl = findTool('kubectl');
  if (kubectl) return [kubectl, 'kustomize'];
  throw new Error(
    'neither kustomize nor kubectl found on PATH: install one (kustomize v4+), ' +
      'or set SLOTLINE_TEST_SKIP_KUSTOMIZE=1 to skip the manifest build knowingly',
  );
}

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion; never throws on a non-zero exit. */
export function runTool(
  cmd: string,
  args: string[],
  opts: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      {
        cwd: opts.cwd,
        env: opts.env,
        timeout: opts.timeoutMs ?? 60_000,
        maxBuffer: 32 * 1024 * 1024,
        encoding: 'utf8',
      },
      (err, stdout, stderr) => {
        if (err && typeof (err as { code?: unknown }).code !== 'number') {
          reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}`, { cause: err }));
          return;
        }
        resolve({ code: err ? ((err as { code: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}
