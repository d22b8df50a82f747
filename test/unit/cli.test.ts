/**
 * The `slotline` command as a user meets it, with no database: every command answers
 * `--help` without any configuration, and `config` shows the effective settings with every
 * secret hidden. Runs dist/cli.js (`npm test` builds first).
 */
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../../src/cli/commands.js';
import { configMarkdown } from '../../src/config.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with only these variables (no SLOTLINE_* from the test's environment). */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { PATH: process.env['PATH'] ?? '', ...env }, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: unknown }).code as number) : 0;
        resolve({ code: typeof code === 'number' ? code : 1, stdout, stderr });
      },
    );
  });
}

describe('the slotline bin', () => {
  it('is executable, as `npx slotline` and `npm link` run it directly', () => {
    expect(statSync(CLI).mode & 0o111, 'npm run build makes dist/cli.js executable').not.toBe(0);
  });
});

describe('slotline --help', () => {
  it('lists every command, and exits 2 without one', async () => {
    const help = await cli(['--help']);
    expect(help.code, help.stderr).toBe(0);
    for (const c of COMMANDS) expect(help.stdout).toMatch(new RegExp(`^  ${c.name} `, 'm'));
    const none = await cli([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('usage: slotline <command>');
    const unknown = await cli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
  });

  it.each(COMMANDS.map((c) => c.name))(
    '%s --help prints its usage without any configuration',
    async (name) => {
      const runs = await Promise.all([cli([name, '--help']), cli(['help', name])]);
      for (const r of runs) {
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toMatch(new RegExp(`^usage: slotline ${name}\\b`));
        expect(r.stdout).toMatch(/Exit 0|exit 0|Ctrl-C/);
        expect(r.stderr).toBe('');
      }
    },
  );

  it('answers --help anywhere after the command, before any configuration is read', async () => {
    for (const args of [
      ['dead-letters', 'list', '--help'],
      ['status', '-h'],
      ['dead-letters', 'retry', '--all', '--help'],
      ['reset-lsn', '0/1', '--help'],
      ['backfill', '--from', '5', '--help'],
    ]) {
      const r = await cli(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^usage: slotline ${args[0] as string}`));
    }
  });

  it('says where to look on a usage error', async () => {
    const r = await cli(['setup', '--resnapshotx']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'slotline setup: unknown option --resnapshotx (see slotline setup --help)\n',
    );
  });
});

describe('slotline config', () => {
  const secrets = {
    SLOTLINE_SOURCE_URL:
      'postgres://slotline:src%40pass-1@ponder-db:5432/ponder?sslmode=require&password=qs-pass-2',
    SLOTLINE_SINK_URL: 'postgresql://sink:sink-pass-3@timescale/analytics',
    SLOTLINE_ADMIN_TOKEN: 'admin-token-4-0123456789',
    SLOTLINE_KAFKA_BROKERS: 'k1:9092,k2:9092',
    SLOTLINE_KAFKA_SASL_MECHANISM: 'scram-sha-512',
    SLOTLINE_KAFKA_SASL_USERNAME: 'slotline',
    SLOTLINE_KAFKA_SASL_PASSWORD: 'sasl-pass-5',
    SLOTLINE_KAFKA_SSL: 'true',
    SLOTLINE_HTTP_PORT: '9090',
  };

  it('prints the effective settings, defaults marked, every secret hidden', async () => {
    const r = await cli(['config'], secrets);
    expect(r.code, r.stderr).toBe(0);
    for (const s of [
      'src@pass-1',
      'src%40pass-1',
      'qs-pass-2',
      'sink-pass-3',
      'admin-token-4',
      'sasl-pass-5',
    ])
      expect(r.stdout + r.stderr).not.toContain(s);
    const lines = r.stdout.trimEnd().split('\n');
    const line = (name: string) => lines.find((l) => l.startsWith(`${name}=`));
    expect(line('SLOTLINE_SOURCE_URL')).toBe(
      'SLOTLINE_SOURCE_URL="postgres://slotline:***@ponder-db:5432/ponder?sslmode=require&password=***"',
    );
    expect(line('SLOTLINE_SINK_URL')).toBe(
      'SLOTLINE_SINK_URL=postgresql://sink:***@timescale/analytics',
    );
    expect(line('SLOTLINE_ADMIN_TOKEN')).toBe('SLOTLINE_ADMIN_TOKEN=***');
    expect(line('SLOTLINE_KAFKA_SASL_PASSWORD')).toBe('SLOTLINE_KAFKA_SASL_PASSWORD=***');
    expect(line('SLOTLINE_KAFKA_SASL_USERNAME')).toBe('SLOTLINE_KAFKA_SASL_USERNAME=slotline');
    expect(line('SLOTLINE_HTTP_PORT')).toBe('SLOTLINE_HTTP_PORT=9090');
    expect(line('SLOTLINE_HTTP_HOST')).toMatch(/^SLOTLINE_HTTP_HOST=0\.0\.0\.0 +# default$/);
    expect(line('SLOTLINE_ADMIN_URL')).toMatch(/^SLOTLINE_ADMIN_URL= +# not set$/);
    // One line per setting, in the documentation's order.
    expect(lines.map((l) => l.split('=')[0])).toEqual(
      configMarkdown()
        .split('\n')
        .slice(2)
        .map((row) => /^\| `(\w+)`/.exec(row)?.[1]),
    );
  });

  it('names what is wrong, exit 2, still hiding secrets', async () => {
    const r = await cli(['config'], {
      SLOTLINE_SOURCE_URL: secrets.SLOTLINE_SOURCE_URL,
      SLOTLINE_ADMIN_TOKEN: 'short-secret',
      SLOTLINE_HTTP_HOST: 'not a host',
    });
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/^SLOTLINE_SINK_URL= +# required, not set$/m);
    expect(r.stderr).toContain('SLOTLINE_SINK_URL is required');
    expect(r.stderr).toContain('SLOTLINE_ADMIN_TOKEN (value hidden): must be at least 16');
    expect(r.stderr).toContain('SLOTLINE_HTTP_HOST "not a host"');
    expect(r.stdout + r.stderr).not.toContain('short-secret');
    expect(r.stdout + r.stderr).not.toContain('src%40pass-1');
  });

  it('--doc prints the documentation table', async () => {
    const r = await cli(['config', '--doc']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${configMarkdown()}\n`);
  });
});
