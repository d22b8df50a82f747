/**
 * External programs some tests need (promtool, prometheus, kustomize or kubectl). They are
 * found on PATH or in /usr/bin; `.ci/run` installs Debian's `prometheus` package when
 * promtool is absent. A missing program fails its tests unless the environment says to skip
 * them (SLOTLINE_TEST_SKIP_PROMETHEUS=1, SLOTLINE_TEST_SKIP_KUSTOMIZE=1), so a machine
 * without them cannot pass silently.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

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
  opts: { cwd?: string; timeoutMs?: number } = {},
): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      {
        cwd: opts.cwd,
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
