/**
 * A test context whose source and sink live on two different clusters, so
 * that a test can restart, kill or freeze one server while the other keeps
 * running. Same shape as createTestContext's, so the compare helpers work.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Cluster } from './cluster.js';
import type { TestContext } from './context.js';

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

function quietPool(url: string): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: 4, idleTimeoutMillis: 5_000 });
  // The servers are restarted under these pools: errors surface on queries, never as crashes.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

async function admin(url: string, sql: string, params: unknown[] = []): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => undefined);
  await c.connect();
  try {
    await c.query(sql, params);
  } finally {
    await c.end().catch(() => undefined);
  }
}

export async function createSplitContext(
  name: string,
  sourceCluster: Cluster,
  sinkCluster: Cluster,
): Promise<TestContext> {
  const unique = `${name}_${randomBytes(4).toString('hex')}`;
  const sourceDb = `src_${unique}`;
  const sinkDb = `sink_${unique}`;
  await admin(sourceCluster.adminUrl, `create database ${sourceDb}`);
  await admin(sinkCluster.adminUrl, `create database ${sinkDb}`);
  const sourceUrl = withDatabase(sourceCluster.adminUrl, sourceDb);
  const sinkUrl = withDatabase(sinkCluster.adminUrl, sinkDb);
  const source = quietPool(sourceUrl);
  const sink = quietPool(sinkUrl);
  const slot = `slot_${unique}`;
  const publication = `pub_${unique}`;
  return {
    adminUrl: sourceCluster.adminUrl,
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
      await Promise.race([Promise.allSettled([source.end(), sink.end()]), sleep(2_000)]);
      // The slot first (a database with a slot cannot be dropped); a dead server is left to its dispose.
      await admin(
        sourceCluster.adminUrl,
        `select pg_terminate_backend(pid) from pg_stat_activity where datname = $1`,
        [sourceDb],
      ).catch(() => undefined);
      await sleep(100);
      await admin(
        sourceCluster.adminUrl,
        `select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1 and not active`,
        [slot],
      ).catch(() => undefined);
      await admin(sourceCluster.adminUrl, `drop database if exists ${sourceDb} with (force)`).catch(
        () => undefined,
      );
      await admin(sinkCluster.adminUrl, `drop database if exists ${sinkDb} with (force)`).catch(
        () => undefined,
      );
    },
  };
}
