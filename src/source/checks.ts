import type pg from 'pg';
import { PublicationMissingError, SourceSetupError } from '../errors.js';
import type { Logger } from '../log.js';
import { quoteIdent } from '../sql.js';

export const TRADES_TABLE = 'order_book_trades';
export const POOLS_TABLE = 'pools';
export const SOURCE_TABLES = [TRADES_TABLE, POOLS_TABLE] as const;

type Queryable = Pick<pg.ClientBase, 'query'>;

export interface SourceCheckOptions {
  schema: string;
  publication: string;
  /**
   * Follow mode: an existing publication's tables are the deployment switch's
   * business (it may still cover the previous deployment), so they are
   * neither added to nor required; a new publication covers `schema`.
   */
  follow?: boolean;
}

/**
 * Checks that the source can feed a logical slot, and says how to fix what
 * cannot. Each failure is a SourceSetupError whose message names the fix.
 */
export async function checkSource(db: Queryable, opts: SourceCheckOptions): Promise<void> {
  const wal = await db.query<{ wal_level: string }>('SHOW wal_level');
  const level = wal.rows[0]?.wal_level;
  if (level !== 'logical') {
    throw new SourceSetupError(
      'wal_level',
      `source: wal_level is '${level}', logical decoding needs 'logical'. Fix: ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL`,
    );
  }
  const slots = await db.query<{ setting: string }>(
    `SELECT setting FROM pg_settings WHERE name = 'max_replication_slots'`,
  );
  if (Number(slots.rows[0]?.setting ?? '0') < 1) {
    throw new SourceSetupError(
      'max_replication_slots',
      'source: max_replication_slots is 0. Fix: ALTER SYSTEM SET max_replication_slots = 10; then restart PostgreSQL',
    );
  }
  const role = await db.query<{ rolname: string; rolreplication: boolean; rolsuper: boolean }>(
    'SELECT rolname, rolreplication, rolsuper FROM pg_roles WHERE rolname = current_user',
  );
  const r = role.rows[0];
  if (!r || !(r.rolreplication || r.rolsuper)) {
    throw new SourceSetupError(
      'replication_privilege',
      `source: role ${r?.rolname ?? '(unknown)'} lacks the REPLICATION attribute. Fix: ALTER ROLE ${r?.rolname ?? '<role>'} WITH REPLICATION`,
    );
  }
  for (const table of SOURCE_TABLES) await checkTable(db, opts.schema, table);
}

/** One source table: present, readable, and with a replica identity that carries its id. */
async function checkTable(db: Queryable, schema: string, table: string): Promise<void> {
  const qualified = `${schema}.${table}`;
  const t = await db.query<{
    oid: number | null;
    relreplident: string | null;
    has_pk: boolean;
    can_select: boolean;
    identity_index: string | null;
    identity_has_id: boolean;
  }>(
    `SELECT c.oid, c.relreplident,
            EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk,
            has_table_privilege(c.oid, 'SELECT') AS can_select,
            (SELECT i.indexrelid::regclass::text FROM pg_index i
              WHERE i.indrelid = c.oid AND i.indisreplident) AS identity_index,
            EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a
                      ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                     WHERE i.indrelid = c.oid AND i.indisreplident AND a.attname = 'id') AS identity_has_id
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
    [schema, table],
  );
  const row = t.rows[0];
  if (!row?.oid) {
    throw new SourceSetupError(
      'source_table_missing',
      `source: table ${qualified} does not exist. Fix: check SLOTLINE_SOURCE_SCHEMA (Ponder writes into the schema chosen at deploy time) and that the indexer has started`,
    );
  }
  if (!row.can_select) {
    throw new SourceSetupError(
      'select_privilege',
      `source: no SELECT privilege on ${qualified}. Fix: GRANT SELECT ON ${qualified} TO <connector role>`,
    );
  }
  if (row.relreplident === 'n' || (row.relreplident === 'd' && !row.has_pk)) {
    throw new SourceSetupError(
      'replica_identity',
      `source: ${qualified} has no replica identity, so its updates and deletes cannot be replicated. Fix: add a primary key, or ALTER TABLE ${qualified} REPLICA IDENTITY FULL`,
    );
  }
  // The old row of an update or delete then carries only the index's columns:
  // without id no delete (and no id change) could be applied.
  if (row.relreplident === 'i' && !row.identity_has_id) {
    throw new SourceSetupError(
      'replica_identity',
      `source: ${qualified} has REPLICA IDENTITY USING INDEX ${row.identity_index ?? '?'}, which lacks the id column, so deletes could not be applied. ` +
        `Fix: ALTER TABLE ${qualified} REPLICA IDENTITY DEFAULT (its primary key on id), or REPLICA IDENTITY FULL`,
    );
  }
  await checkPartitions(db, row.oid, qualified);
}

/**
 * Ponder's `ordering: "experimental_isolated"` makes every table PARTITION BY
 * LIST (chain_id), one partition `<table>_<chainId>` per chain. Changes are
 * logged, and published, with each partition's own replica identity (the
 * root's says nothing about them), so every leaf needs one that carries the key.
 */
async function checkPartitions(db: Queryable, oid: number, qualified: string): Promise<void> {
  const leaves = await db.query<{ leaf: string; relreplident: string; has_pk: boolean }>(
    `SELECT t.relid::regclass::text AS leaf, c.relreplident,
            EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk
       FROM pg_partition_tree($1::regclass) t JOIN pg_class c ON c.oid = t.relid
      WHERE t.isleaf AND t.relid <> $1::regclass`,
    [oid],
  );
  const bad = leaves.rows.filter(
    (l) => l.relreplident === 'n' || (l.relreplident === 'd' && !l.has_pk),
  );
  if (bad.length === 0) return;
  const names = bad.map((l) => l.leaf).join(', ');
  throw new SourceSetupError(
    'replica_identity',
    `source: partition(s) ${names} of ${qualified} have no replica identity, so their updates and deletes cannot be replicated. ` +
      `Fix: give each a primary key (ALTER TABLE … ATTACH PARTITION attaches the root's), or ALTER TABLE <partition> REPLICA IDENTITY FULL`,
  );
}

/** The source tables of `schema` that are partitioned (relkind 'p'). */
export async function partitionedTables(db: Queryable, schema: string): Promise<string[]> {
  const { rows } = await db.query<{ relname: string }>(
    `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND c.relkind = 'p' ORDER BY c.relname`,
    [schema, SOURCE_TABLES],
  );
  return rows.map((r) => r.relname);
}

/**
 * Without publish_via_partition_root a partitioned table's changes are
 * published as its partitions' (`order_book_trades_1`, …), which the router
 * does not map: they would be dropped. The message of that problem, or null.
 */
export async function viaRootProblem(
  db: Queryable,
  opts: SourceCheckOptions,
  pubViaRoot: boolean,
): Promise<string | null> {
  if (pubViaRoot) return null;
  const parted = await partitionedTables(db, opts.schema);
  if (parted.length === 0) return null;
  const names = parted.map((t) => `${opts.schema}.${t}`).join(', ');
  return (
    `source: ${names} is partitioned, and publication ${opts.publication} publishes its changes under each partition's name, which slotline does not map. ` +
    `Fix: ALTER PUBLICATION ${opts.publication} SET (publish_via_partition_root = true) (or \`slotline setup\`)`
  );
}

/** Creates the publication if missing, and adds any table it lacks. Idempotent. */
export async function ensurePublication(
  db: Queryable,
  opts: SourceCheckOptions,
  log: Logger,
): Promise<void> {
  const pub = await db.query<{
    pubinsert: boolean;
    pubupdate: boolean;
    pubdelete: boolean;
    puballtables: boolean;
    pubviaroot: boolean;
  }>(
    `SELECT pubinsert, pubupdate, pubdelete, puballtables, pubviaroot
       FROM pg_publication WHERE pubname = $1`,
    [opts.publication],
  );
  const tables = SOURCE_TABLES.map((t) => `${quoteIdent(opts.schema)}.${quoteIdent(t)}`);
  const p = pub.rows[0];
  if (!p) {
    // Partitioned tables (Ponder's isolated ordering) then publish every
    // partition's changes under the root's name; plain tables are unaffected.
    await db.query(
      `CREATE PUBLICATION ${quoteIdent(opts.publication)} FOR TABLE ${tables.join(', ')}
         WITH (publish_via_partition_root = true)`,
    );
    log.info({ publication: opts.publication }, 'publication created');
    return;
  }
  const viaRoot = await viaRootProblem(db, opts, p.pubviaroot);
  if (viaRoot) {
    await db
      .query(
        `ALTER PUBLICATION ${quoteIdent(opts.publication)} SET (publish_via_partition_root = true)`,
      )
      .catch((err: unknown) => {
        throw new PublicationMissingError(`${viaRoot} (${(err as Error).message})`);
      });
    log.info({ publication: opts.publication }, 'publication now publishes via partition roots');
  }
  if (!p.pubinsert || !p.pubupdate || !p.pubdelete) {
    throw new PublicationMissingError(
      `source: publication ${opts.publication} does not publish inserts, updates and deletes. Fix: ALTER PUBLICATION ${opts.publication} SET (publish = 'insert, update, delete, truncate')`,
    );
  }
  if (p.puballtables || opts.follow) return;
  const missing = await missingTables(db, opts);
  for (const t of missing) {
    await db.query(
      `ALTER PUBLICATION ${quoteIdent(opts.publication)} ADD TABLE ${quoteIdent(opts.schema)}.${quoteIdent(t)}`,
    );
    log.info({ publication: opts.publication, table: t }, 'table added to publication');
  }
}

/** For `run` without auto-setup: the publication must exist and cover both tables. */
export async function verifyPublication(db: Queryable, opts: SourceCheckOptions): Promise<void> {
  const pub = await db.query<{ pubviaroot: boolean }>(
    'SELECT pubviaroot FROM pg_publication WHERE pubname = $1',
    [opts.publication],
  );
  const p = pub.rows[0];
  if (!p) {
    throw new PublicationMissingError(
      `source: publication ${opts.publication} does not exist. Fix: run \`slotline setup\`, or check SLOTLINE_PUBLICATION`,
    );
  }
  const viaRoot = await viaRootProblem(db, opts, p.pubviaroot);
  if (viaRoot) throw new PublicationMissingError(viaRoot);
  if (opts.follow) return;
  const missing = await missingTables(db, opts);
  if (missing.length > 0) {
    throw new PublicationMissingError(
      `source: publication ${opts.publication} lacks ${missing.map((t) => `${opts.schema}.${t}`).join(', ')}. Fix: run \`slotline setup\``,
    );
  }
}

async function missingTables(db: Queryable, opts: SourceCheckOptions): Promise<string[]> {
  const have = await db.query<{ tablename: string }>(
    'SELECT tablename FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2',
    [opts.publication, opts.schema],
  );
  const names = new Set(have.rows.map((r) => r.tablename));
  return SOURCE_TABLES.filter((t) => !names.has(t));
}
