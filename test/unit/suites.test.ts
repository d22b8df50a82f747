/**
 * The split between `npm test` and `npm run test:heavy` is explicit and complete: every test
 * file on disk is in exactly one vitest project, every project in exactly one of the two
 * commands, and the lists in test/suites.ts name files that exist.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { COMMAND_PROJECTS, DEPLOY_TESTS, HEAVY_INTEGRATION_TESTS } from '../suites.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function testFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : testFiles(path);
    return e.name.endsWith('.test.ts') ? [path] : [];
  });
}

/** `vitest list --filesOnly`: which project each file belongs to, as vitest itself sees it. */
function vitestList(): Promise<{ file: string; projectName: string }[]> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [join(ROOT, 'node_modules/vitest/vitest.mjs'), 'list', '--filesOnly', '--json'],
      { cwd: ROOT, maxBuffer: 16 * 1024 * 1024, timeout: 120_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`vitest list: ${err.message}\n${stderr}`));
        else resolve(JSON.parse(stdout) as { file: string; projectName: string }[]);
      },
    );
  });
}

describe('test suites', () => {
  it('name only test files that exist', () => {
    for (const f of [...DEPLOY_TESTS, ...HEAVY_INTEGRATION_TESTS])
      expect(existsSync(join(ROOT, f)), f).toBe(true);
  });

  it('put every test file in exactly one project, and every project in one command', async () => {
    const listed = await vitestList();
    const projectsOf = new Map<string, string[]>();
    for (const { file, projectName } of listed) {
      const rel = relative(ROOT, file);
      projectsOf.set(rel, [...(projectsOf.get(rel) ?? []), projectName]);
    }
    const onDisk = [...testFiles('src'), ...testFiles('test')].sort();
    const where = onDisk.map((f) => [f, projectsOf.get(f) ?? []] as const);
    expect(where.filter(([, p]) => p.length !== 1)).toEqual([]);
    expect([...projectsOf.keys()].sort()).toEqual(onDisk);

    const projects = new Set(listed.map((l) => l.projectName));
    const inCommands = Object.values(COMMAND_PROJECTS).flat();
    expect([...projects].sort()).toEqual([...inCommands].sort());
    expect(new Set(inCommands).size).toBe(inCommands.length);
    for (const f of DEPLOY_TESTS) expect(projectsOf.get(f)).toEqual(['deploy']);
    for (const f of HEAVY_INTEGRATION_TESTS) expect(projectsOf.get(f)).toEqual(['heavy']);
  });

  it('are what the npm scripts run', () => {
    const scripts = (
      JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
        scripts: Record<string, string>;
      }
    ).scripts;
    const projects = (script: string) =>
      [...script.matchAll(/--project (\S+)/g)].map((m) => m[1] as string);
    for (const [command, want] of Object.entries(COMMAND_PROJECTS)) {
      expect(projects(scripts[command] ?? ''), command).toEqual(want);
    }
    expect(scripts['test:all']).toMatch(/^npm test && /);
    expect(projects(scripts['test:all'] ?? '')).toEqual(COMMAND_PROJECTS['test:heavy']);
    // CI runs both.
    const ci = readFileSync(join(ROOT, '.ci/run'), 'utf8');
    expect(ci).toMatch(/^time npm test$/m);
    expect(ci).toMatch(/^time npm run test:heavy$/m);
  });
});
