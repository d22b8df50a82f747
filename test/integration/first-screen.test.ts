/**
 * The README's first screen works as shown: every command in its shell blocks runs against
 * the test cluster (`slotline X` as `node dist/cli.js X`, which is what the package's bin and
 * `npx slotline` run) with the environment it exports, and `slotline status` answers the
 * shape of the sample it prints. Each test isolates itself with its own slot, publication and
 * port; SLOTLINE_HTTP_HOST moves the HTTP server to 127.0.0.2, and the commands follow it.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { expectSinkEqualsSource } from '../harness/compare.js';
import { runCommand, startConnector, type ConnectorProcess } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { freePort } from '../harness/http.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
} from '../harness/ponder.js';
import { FAST } from '../harness/settings.js';
import { findTool } from '../harness/tools.js';
import { waitFor } from '../harness/wait.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const FIRST_SCREEN = README.slice(0, README.indexOf('\n## '));
const HOST = '127.0.0.2';

/** The fenced blocks of a language in the first screen, each as its lines. */
function blocks(lang: string): string[][] {
  return [...FIRST_SCREEN.matchAll(new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``, 'g'))].map(
    (m) => (m[1] as string).split('\n').filter((l) => l.trim() !== ''),
  );
}

/** A shell line without its comment; `background` when it ends with `&`. */
function parse(line: string): { words: string[]; background: boolean } {
  const code = line.replace(/\s+#.*$/, '').trim();
  const background = code.endsWith('&') && !code.endsWith('&&');
  return { words: code.replace(/&$/, '').trim().split(/\s+/), background };
}

/**
 * The shape of `sample` (keys, nesting, value types), checked against `actual`; a scalar may
 * be null (a figure not measured yet).
 */
function shapeDiff(sample: unknown, actual: unknown, path = '$'): string[] {
  if (sample === null || typeof sample !== 'object')
    return actual === null || typeof sample === typeof actual
      ? []
      : [`${path}: ${typeof actual}, not ${typeof sample}`];
  if (Array.isArray(sample)) {
    if (!Array.isArray(actual) || actual.length === 0) return [`${path}: not a non-empty array`];
    return shapeDiff(sample[0], actual[0], `${path}[0]`);
  }
  if (actual === null || typeof actual !== 'object') return [`${path}: not an object`];
  return Object.entries(sample).flatMap(([k, v]) =>
    k in actual
      ? shapeDiff(v, (actual as Record<string, unknown>)[k], `${path}.${k}`)
      : [`${path}.${k}: missing`],
  );
}

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: ROOT, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? Number((err as { code?: unknown }).code ?? 1) : 0;
      resolve({ code, out: stdout + stderr });
    });
  });
}

describe("the README's first screen", () => {
  it('install: the command answers as shown', async () => {
    const [install] = blocks('sh');
    expect(install, 'the install block').toBeDefined();
    for (const line of install ?? []) {
      const { words } = parse(line);
      const shown = words.join(' ');
      if (shown === 'npm ci && npm run build') continue; // what `npm test` has just done
      if (words[0] === 'npx') {
        // --no-install: resolve the clone's own bin, never a registry's package.
        const r = await run('npx', ['--no-install', ...words.slice(1)]);
        expect(r.code, `${shown}\n${r.out}`).toBe(0);
        expect(r.out).toMatch(/^usage: slotline <command>/);
      } else if (words[0] === 'docker') {
        if (!findTool('docker'))
          console.warn(`[slotline tests] not run (no docker here): ${shown}`);
        // The image's ENTRYPOINT is node dist/cli.js (test/unit/deploy.test.ts).
        expect(words.slice(-2)).toEqual(['slotline', '--help']);
        const r = await run(process.execPath, ['dist/cli.js', '--help']);
        expect(r.code, r.out).toBe(0);
      } else {
        throw new Error(`the test does not know how to run ${JSON.stringify(shown)}`);
      }
    }
  });

  it('set up, run, look: every command works as shown, and status answers like the sample', async () => {
    const [, session] = blocks('sh');
    expect(session, 'the setup/run/status block').toBeDefined();
    const [sample] = blocks('json');
    expect(sample, 'the sample status').toBeDefined();

    await using ctx = await createTestContext('first_screen');
    await createPonderTables(ctx.source);
    const pool = makePool(0);
    await insertPools(ctx.source, 'public', [pool]);
    await insertTrades(ctx.source, 'public', [makeTrade(1, pool), makeTrade(2, pool)]);
    const port = await freePort();
    const env: Record<string, string> = {
      ...ctx.env({ ...FAST, SLOTLINE_HTTP_PORT: String(port), SLOTLINE_HTTP_HOST: HOST }),
      SLOTLINE_LOG_LEVEL: 'info',
    };
    const background: ConnectorProcess[] = [];
    const outputs = new Map<string, string>();
    try {
      for (const line of session ?? []) {
        const { words, background: bg } = parse(line);
        if (words[0] === 'export') {
          // The test's own databases stand in for the ones shown.
          const name = (words[1] ?? '').split('=')[0] as string;
          expect(env[name], `${name} is one the test provides`).toBeDefined();
          continue;
        }
        expect(words[0], line).toBe('slotline');
        const args = words.slice(1);
        if (bg) {
          const c = startConnector(env, args);
          background.push(c);
          await waitFor(
            async () => {
              // Ready as a standby first (before it holds the leader lock): wait for streaming.
              const r = await fetch(`http://${HOST}:${port}/readyz`).catch(() => null);
              const body = r?.ok ? ((await r.json()) as { reason?: string }) : null;
              return body?.reason?.startsWith('streaming') || undefined;
            },
            { timeoutMs: 60_000, what: `slotline ${args.join(' ')} streaming on ${HOST}:${port}` },
          ).catch((err: unknown) => {
            throw new Error(`${(err as Error).message}\n${c.output()}`, { cause: err });
          });
          continue;
        }
        const r = await runCommand(env, args);
        expect(r.code, `slotline ${args.join(' ')}\n${r.output}`).toBe(0);
        outputs.set(args.join(' '), r.output);
      }

      // config showed the settings with the password hidden.
      const password = decodeURIComponent(new URL(ctx.sourceUrl).password);
      const config = outputs.get('config') ?? '';
      expect(config).toMatch(/^SLOTLINE_SOURCE_URL=/m);
      if (password) expect(config).not.toContain(password);
      // setup made the slot; run streamed the history; status answered like the sample.
      const slots = await ctx.source.query(
        'SELECT 1 FROM pg_replication_slots WHERE slot_name = $1',
        [ctx.slot],
      );
      expect(slots.rowCount).toBe(1);
      await expectSinkEqualsSource(ctx);
      const status = JSON.parse(outputs.get('status') ?? 'null') as Record<string, unknown>;
      const shown = JSON.parse((sample ?? []).join('\n')) as Record<string, unknown>;
      expect(shapeDiff(shown, status)).toEqual([]);
      expect(status).toMatchObject({ slot: ctx.slot, phase: 'streaming' });
      // The server is on SLOTLINE_HTTP_HOST only: the loopback address it did not take refuses.
      expect(
        await fetch(`http://127.0.0.1:${port}/healthz`).then(
          () => 'answered',
          () => 'refused',
        ),
      ).toBe('refused');
    } finally {
      for (const c of background) {
        const exit = await c.stop();
        expect(exit.code, c.output()).toBe(0);
      }
    }
  });
});
