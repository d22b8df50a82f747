/**
 * Global setup of the `integration` project: one PostgreSQL server for the whole
 * run, either a throwaway cluster started here or, when SLOTLINE_TEST_PG_URL is
 * set, that existing server (a superuser URL; its wal_level must be logical).
 * Each test then makes its own databases on it (see context.ts).
 */
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { pgPaths, startCluster } from './cluster.js';

interface ServerFacts {
  walLevel: string;
  superuser: boolean;
  version: string;
  timescale: boolean;
}

async function inspect(url: string): Promise<ServerFacts> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rows } = await client.query<{
      wal_level: string;
      superuser: boolean;
      version: string;
      timescale: boolean;
    }>(
      `select current_setting('wal_level') as wal_level,
              current_setting('is_superuser') = 'on' as superuser,
              current_setting('server_version') as version,
              -- The extension needs both its files and its preloaded library.
              exists (select 1 from pg_available_extensions where name = 'timescaledb')
                and current_setting('shared_preload_libraries') ~ 'timescaledb' as timescale`,
    );
    const row = rows[0];
    if (!row) throw new Error('server inspection returned no row');
    return {
      walLevel: row.wal_level,
      superuser: row.superuser,
      version: row.version,
      timescale: row.timescale,
    };
  } finally {
    await client.end();
  }
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}

function binDirOrEmpty(): string {
  try {
    return pgPaths().binDir;
  } catch {
    return '';
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env['SLOTLINE_TEST_PG_URL'];
  let adminUrl: string;
  let dataDir = '';
  let binDir: string;
  let teardown: () => Promise<void> = async () => undefined;
  let where: string;

  if (external) {
    adminUrl = external;
    binDir = binDirOrEmpty();
    where = `external server ${redact(external)} (SLOTLINE_TEST_PG_URL)`;
  } else {
    const started = Date.now();
    const cluster = await startCluster();
    adminUrl = cluster.adminUrl;
    dataDir = cluster.dataDir;
    binDir = cluster.binDir;
    teardown = () => cluster[Symbol.asyncDispose]();
    where = `throwaway cluster on 127.0.0.1:${cluster.port} (${dataDir}, started in ${Date.now() - started} ms)`;
  }

  let facts: ServerFacts;
  try {
    facts = await inspect(adminUrl);
    if (facts.walLevel !== 'logical') {
      throw new Error(
        `the test server has wal_level=${facts.walLevel}; logical replication tests need wal_level=logical`,
      );
    }
    if (!facts.superuser) {
      throw new Error(
        'the test server URL must name a superuser (tests create databases and slots)',
      );
    }
  } catch (err) {
    await teardown();
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`integration test server ${redact(adminUrl)} is not usable: ${message}`, {
      cause: err,
    });
  }

  project.provide('pgAdminUrl', adminUrl);
  project.provide('pgBinDir', binDir);
  project.provide('pgDataDir', dataDir);
  project.provide('timescale', facts.timescale);

  console.log(
    `[slotline tests] PostgreSQL ${facts.version}: ${where}; ` +
      (facts.timescale
        ? 'TimescaleDB available'
        : 'TimescaleDB not installed: Timescale-specific tests will be skipped'),
  );
  return teardown;
}
