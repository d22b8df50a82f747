/**
 * `psql -f file` as an operator runs the files of sql/, and small helpers for
 * connecting as another role.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { inject } from 'vitest';
import { findTool } from './tools.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function psqlBinary(): string {
  const fromHarness = inject('pgBinDir');
  if (fromHarness && existsSync(join(fromHarness, 'psql'))) return join(fromHarness, 'psql');
  const onPath = findTool('psql');
  if (!onPath)
    throw new Error('psql not found (the PostgreSQL client, which operators use to run sql/*.sql)');
  return onPath;
}

/** `psql -f file` with variables, as the files' headers tell operators to run them. */
export function psql(url: string, file: string, vars: Record<string, string>): Promise<string> {
  const args = ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url, '-f', join(ROOT, file)];
  for (const [k, v] of Object.entries(vars)) args.push('-v', `${k}=${v}`);
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PG')));
  return new Promise((resolve, reject) =>
    execFile(psqlBinary(), args, { env, encoding: 'utf8' }, (err, stdout, stderr) =>
      err ? reject(new Error(`psql -f ${file}: ${stderr || err.message}`)) : resolve(stdout),
    ),
  );
}

/** The URL with another user and password. */
export function asRole(url: string, role: string, password: string): string {
  const u = new URL(url);
  u.username = role;
  u.password = password;
  return u.toString();
}

/** One connection for `fn`, closed after it. */
export async function withClient<T>(
  url: string | pg.ClientConfig,
  fn: (c: pg.Client) => Promise<T>,
): Promise<T> {
  const c = new pg.Client(typeof url === 'string' ? { connectionString: url } : url);
  c.on('error', () => undefined);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}
