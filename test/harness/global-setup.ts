/**
 * Global setup of the `integration` project: one PostgreSQL server for the whole
 * run, either a throwaway cluster started here or, when SLOTLINE_TEST_PG_URL is
 * set, that existing server (a superuser URL; its wal_level must be logical).
 * Each test then makes its own databases on it (see context.ts).
 */
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { pgPaths, startCluster } from './cluster.js';
import { IN_CI } from './tools.js';

interface ServerFacts {
  walLevel: string;
  superuser: boolean;
  version: string;
  /** The extension's files are installed for this server. */
  timescaleFiles: boolean;
  /** Its library is in shared_preload_libraries (it refuses to load otherwise). */
  timescalePreloaded: boolean;
  preload: string;
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
      files: boolean;
      preload: string;
    }>(
      `select current_setting('wal_level') as wal_level,
              current_setting('is_superuser') = 'on' as superuser,
              current_setting('server_version') as version,
              exists (select 1 from pg_available_extensions where name = 'timescaledb') as files,
              current_setting('shared_preload_libraries') as preload`,
    );
    const row = rows[0];
    if (!row) throw new Error('server inspection returned no row');
    return {
      walLevel: row.wal_level,
      superuser: row.superuser,
      version: row.version,
      timescaleFiles: row.files,
      timescalePreloaded: row.preload.includes('timescaledb'),
      preload: row.preload,
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

  const missing = timescaleMissing(facts, Boolean(external));
  if (missing && IN_CI) {
    await teardown();
    throw new Error(
      `CI=true: the TimescaleDB tests must run, but ${missing}. ` +
        'CI installs it with ../shared/vendor/timescaledb/install.sh (.ci/run calls it); ' +
        'unset CI to let those tests skip',
    );
  }

  project.provide('pgAdminUrl', adminUrl);
  project.provide('pgBinDir', binDir);
  project.provide('pgDataDir', dataDir);
  project.provide('timescale', missing === null);

  console.log(
    `[slotline tests] PostgreSQL ${facts.version}: ${where}; ` +
      (missing === null
        ? 'TimescaleDB available'
        : `TimescaleDB-specific tests SKIPPED: ${missing} (CI=true makes this fail)`),
  );
  return teardown;
}

/** Why `CREATE EXTENSION timescaledb` cannot work on the test server, or null when it can. */
function timescaleMissing(facts: ServerFacts, external: boolean): string | null {
  if (!facts.timescaleFiles) {
    return (
      `the timescaledb extension is not installed for PostgreSQL ${facts.version}` +
      (external
        ? ''
        : ` (looked for its library in ${pgPaths().pkgLibDir} and its control file in ${pgPaths().shareDir}/extension)`)
    );
  }
  if (!facts.timescalePreloaded) {
    return (
      'the server does not preload timescaledb ' +
      `(shared_preload_libraries = '${facts.preload}')` +
      (external ? '' : ': the throwaway cluster preloads it when its library file is found')
    );
  }
  return null;
}
