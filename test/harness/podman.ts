/**
 * A private podman for the container test: scripts/container-base.sh writes its configuration
 * and store into a directory of its own and imports the stand-in for the Dockerfile's base image
 * (the registries cannot be reached here); disposing removes the store, mounts and all.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runTool, type ToolResult } from './tools.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BASE_SCRIPT = join(REPO_ROOT, 'scripts', 'container-base.sh');

export interface Podman extends AsyncDisposable {
  /** The state directory: configuration, store, temporary files. */
  readonly state: string;
  /** Runs podman with the private configuration; never throws on a non-zero exit. */
  run(args: string[], timeoutMs?: number): Promise<ToolResult>;
  /** Runs podman and returns its stdout; throws with its stderr on a non-zero exit. */
  ok(args: string[], timeoutMs?: number): Promise<string>;
}

/** The `export NAME=value` lines container-base.sh prints, as an environment. */
function parseExports(stdout: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^export ([A-Z_]+)=(\S+)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  if (!env['CONTAINERS_CONF'] || !env['CONTAINERS_STORAGE_CONF']) {
    throw new Error(`container-base.sh printed no podman configuration:\n${stdout}`);
  }
  return env;
}

function runWith(
  env: Record<string, string>,
  cmd: string,
  args: string[],
  timeoutMs: number,
): Promise<ToolResult> {
  return runTool(cmd, args, { cwd: REPO_ROOT, timeoutMs, env: { ...process.env, ...env } });
}

/**
 * A private podman with the stand-in base imported (made by debootstrap and the npm registry the
 * first time on a machine, a few minutes; then from its cache). `stderr` of the script says which.
 */
export async function preparePodman(): Promise<Podman & { baseLog: string }> {
  const state = await mkdtemp(join(tmpdir(), 'slotline-podman-'));
  const remove = async () => {
    const r = await runTool('bash', [BASE_SCRIPT, '--remove', state], { timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`container-base.sh --remove ${state}: ${r.stderr}`);
  };
  const made = await runTool('bash', [BASE_SCRIPT, state], {
    cwd: REPO_ROOT,
    timeoutMs: 900_000,
  });
  if (made.code !== 0) {
    await remove().catch(() => undefined);
    throw new Error(`scripts/container-base.sh failed (exit ${made.code}):\n${made.stderr}`);
  }
  const env = parseExports(made.stdout);
  const run = (args: string[], timeoutMs = 120_000) => runWith(env, 'podman', args, timeoutMs);
  return {
    state,
    baseLog: made.stderr.trim(),
    run,
    async ok(args, timeoutMs) {
      const r = await run(args, timeoutMs);
      if (r.code !== 0) {
        throw new Error(`podman ${args[0] ?? ''} failed (exit ${r.code}):\n${r.stderr}`);
      }
      return r.stdout;
    },
    [Symbol.asyncDispose]: remove,
  };
}
