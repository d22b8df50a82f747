/**
 * A test's own corner of the shared test server: a fresh source and sink
 * database and unique slot and publication names, all removed on dispose
 * (`await using ctx = await createTestContext('name')`), also when the test
 * failed halfway with a connector still streaming.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { inject } from 'vitest';
import { waitFor } from './wait.js';

export interface TestContext extends AsyncDisposable {
  readonly adminUrl: string;
  readonly sourceDb: string;
  readonly sinkDb: string;
  readonly sourceUrl: string;
  readonly sinkUrl: string;
  /** `slot_<unique>`: lowercase, at most 63 characters, not yet created. */
  readonly slot: string;
  /** `pub_<unique>`, not yet created. */
  readonly publication: string;
  readonly source: pg.Pool;
  readonly sink: pg.Pool;
  /** The connector's environment for this context, `extra` winning. */
  env(extra?: Record<string, string>): Record<string, string>;
  /** Ends the pools, drops the slots and both databases. */
  [Symbol.asyncDispose](): Promise<void>;
}

const POOL_MAX = 4;

function uniqueSuffix(name: string | undefined): string {
  const slug = (name ?? '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '')
    .slice(0, 24)
    .replace(/_+$/, '');
  const random = randomBytes(5).toString('hex');
  return slug ? `${slug}_${random}` : random;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

function newPool(url: string): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: POOL_MAX, idleTimeoutMillis: 5_000 });
  // Connections die when a test restarts or kills the server, and on dispose;
  // without listeners pg's 'error' events would crash the test process. A query
  // in flight still rejects with the error.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

async function withAdmin<T>(adminUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function createTestContext(
  name?: string,
  opts: { adminUrl?: string } = {},
): Promise<TestContext> {
  const adminUrl = opts.adminUrl ?? inject('pgAdminUrl');
  const unique = uniqueSuffix(name);
  const sourceDb = `src_${unique}`;
  const sinkDb = `sink_${unique}`;
  const slot = `slot_${unique}`;
  const publication = `pub_${unique}`;

  const cleanup = (): Promise<void> => dropAll(adminUrl, [sourceDb, sinkDb], slot);
  try {
    await withAdmin(adminUrl, async (admin) => {
      await admin.query(`create database ${quoteIdent(sourceDb)}`);
      await admin.query(`create database ${quoteIdent(sinkDb)}`);
    });
  } catch (err) {
    await cleanup().catch(() => undefined);
    throw err;
  }

  const sourceUrl = withDatabase(adminUrl, sourceDb);
  const sinkUrl = withDatabase(adminUrl, sinkDb);
  const source = newPool(sourceUrl);
  const sink = newPool(sinkUrl);
  let disposed = false;

  return {
    adminUrl,
    sourceDb,
    sinkDb,
    sourceUrl,
    sinkUrl,
    slot,
    publication,
    source,
    sink,
    env(extra = {}) {
      return {
        SLOTLINE_SOURCE_URL: sourceUrl,
        SLOTLINE_SINK_URL: sinkUrl,
        SLOTLINE_SLOT: slot,
        SLOTLINE_PUBLICATION: publication,
        SLOTLINE_HTTP_PORT: '0',
        SLOTLINE_LOG_LEVEL: 'warn',
        // Test trades are dated 2023: with the default age every chunk would be due at once, and
        // TimescaleDB's policy job would compress chunks under a test at moments of its own. The
        // columnstore tests set it and compress chunks themselves.
        SLOTLINE_COLUMNSTORE_AFTER_SECONDS: '0',
        ...extra,
      };
    },
    async [Symbol.asyncDispose]() {
      if (disposed) return;
      disposed = true;
      // pool.end() waits for checked-out clients, which a failed test may never release.
      const ended = Promise.allSettled([source.end(), sink.end()]);
      await Promise.race([ended, sleep(2_000)]);
      await cleanup();
    },
  };
}

/**
 * Terminates every session on the databases (a connector left streaming by a
 * failed test included), drops their replication slots, then the databases.
 */
async function dropAll(adminUrl: string, dbs: string[], slot: string): Promise<void> {
  await withAdmin(adminUrl, async (admin) => {
    const terminate = () =>
      admin.query(
        `select pg_terminate_backend(pid) from pg_stat_activity
          where datname = any($1::text[]) and pid <> pg_backend_pid()`,
        [dbs],
      );
    // A slot can only be dropped while inactive, and a database only without slots.
    // A client that reconnects at once can take the slot again, hence the loop.
    await waitFor(
      async () => {
        await terminate();
        const { rows } = await admin.query<{ slot_name: string; active: boolean }>(
          `select slot_name, active from pg_replication_slots
            where database = any($1::text[]) or slot_name = $2`,
          [dbs, slot],
        );
        for (const row of rows) {
          if (row.active) return false;
          await admin.query('select pg_drop_replication_slot($1)', [row.slot_name]);
        }
        return true;
      },
      {
        timeoutMs: 30_000,
        intervalMs: 100,
        what: `replication slots of ${dbs.join(', ')} to be dropped`,
      },
    );
    for (const db of dbs) {
      // WITH (FORCE) (PostgreSQL 13+) also ends sessions that raced in after the terminate.
      await admin.query(`drop database if exists ${quoteIdent(db)} with (force)`);
    }
  });
}
