import type pg from 'pg';
import { attempt, failed, ok, warning, type CheckResult } from '../check/result.js';
import { PublicationMissingError, SlotlineError, SourceSetupError } from '../errors.js';
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

export interface SourcePreflightOptions extends Omit<SourceCheckOptions, 'schema'> {
  /**
   * null: not known yet (follow mode, before Ponder made a deployment ready):
   * the tables and the publication are not checked.
   */
  schema: string | null;
  /** SLOTLINE_SLOT: whether it exists decides if a free slot is needed. */
  slot: string;
  /** Setup will create a missing publication (the role must be able to); false: it must exist. */
  create: boolean;
}

type KnownSchema = SourcePreflightOptions & { schema: string };

/**
 * Every check of the source, in the order an operator would fix them. Reads
 * the catalog only: `slotline check` and `setup` (before it changes anything)
 * run these same checks.
 */
export async function checkSource(
  db: Queryable,
  opts: SourcePreflightOptions,
): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const walLevel = await attempt('wal_level', () => checkWalLevel(db));
  out.push(walLevel);
  out.push(await attempt('replication_privilege', () => checkReplicationRole(db)));
  out.push(await attempt('encoding', () => checkEncoding(db)));
  if (walLevel.status === 'ok') out.push(...(await checkCapacity(db, opts.slot)));
  const { schema } = opts;
  if (schema === null) return out;
  out.push(...(await checkTables(db, schema)));
  out.push(await attempt('publication', () => checkPublicationReady(db, { ...opts, schema })));
  return out;
}

/**
 * The two tables of `schema`: present, readable, with a replica identity (every
 * partition's too). Also what a Ponder deployment switch checks of the new
 * deployment before it moves the publication.
 */
export async function checkTables(db: Queryable, schema: string): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const table of SOURCE_TABLES)
    out.push(await attempt(`table ${table}`, () => checkTable(db, schema, table)));
  return out;
}

async function checkWalLevel(db: Queryable): Promise<CheckResult> {
  const wal = await db.query<{ wal_level: string }>('SHOW wal_level');
  const level = wal.rows[0]?.wal_level;
  if (level === 'logical') return ok('source', 'wal_level', 'logical');
  return failed(
    'wal_level',
    new SourceSetupError(
      'wal_level',
      `source: wal_level is '${level}', logical decoding needs 'logical'`,
      {
        fix: 'ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL',
      },
    ),
  );
}

async function checkReplicationRole(db: Queryable): Promise<CheckResult> {
  const role = await db.query<{ rolname: string; rolreplication: boolean; rolsuper: boolean }>(
    'SELECT rolname, rolreplication, rolsuper FROM pg_roles WHERE rolname = current_user',
  );
  const r = role.rows[0];
  if (r && (r.rolreplication || r.rolsuper))
    return ok(
      'source',
      'replication_privilege',
      `role ${r.rolname} has ${r.rolsuper ? 'SUPERUSER' : 'REPLICATION'}`,
    );
  const name = r?.rolname ?? '<role>';
  return failed(
    'replication_privilege',
    new SourceSetupError(
      'replication_privilege',
      `source: role ${r?.rolname ?? '(unknown)'} lacks the REPLICATION attribute`,
      {
        variable: 'SLOTLINE_SOURCE_URL',
        fix: `ALTER ROLE ${name} WITH REPLICATION (sql/roles/source_role.sql)`,
      },
    ),
  );
}

/**
 * pgoutput sends text as the server holds it, converted to the connection's
 * UTF8 — except from SQL_ASCII, which stores bytes unchecked: one row that is
 * not valid UTF-8 would then stop the stream at the same change on every restart.
 */
async function checkEncoding(db: Queryable): Promise<CheckResult> {
  const r = await db.query<{ encoding: string }>(
    'SELECT pg_encoding_to_char(encoding) AS encoding FROM pg_database WHERE datname = current_database()',
  );
  const encoding = r.rows[0]?.encoding ?? '?';
  if (encoding !== 'SQL_ASCII')
    return ok(
      'source',
      'encoding',
      encoding === 'UTF8' ? 'UTF8' : `${encoding} (converted to UTF8 for the connector)`,
    );
  return failed(
    'encoding',
    new SourceSetupError(
      'source_encoding',
      'source: the database encoding is SQL_ASCII: its text is unchecked bytes, and a value that is not valid UTF-8 cannot be decoded',
      {
        variable: 'SLOTLINE_SOURCE_URL',
        fix: "let the indexer write into a UTF8 database (CREATE DATABASE <name> ENCODING 'UTF8' TEMPLATE template0) and point SLOTLINE_SOURCE_URL at it",
      },
    ),
  );
}

/**
 * Room for the connector's slot and its WAL sender, and the bound on the WAL
 * a slot left behind may hold.
 */
async function checkCapacity(db: Queryable, slot: string): Promise<CheckResult[]> {
  const q = await db.query<{
    max_slots: number;
    slots: number;
    max_senders: number;
    senders: number;
    keep: string;
    have_slot: boolean;
    slot_active: boolean;
  }>(
    `SELECT current_setting('max_replication_slots')::int AS max_slots,
            (SELECT count(*) FROM pg_replication_slots)::int AS slots,
            current_setting('max_wal_senders')::int AS max_senders,
            (SELECT count(*) FROM pg_stat_replication)::int AS senders,
            current_setting('max_slot_wal_keep_size') AS keep,
            EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1) AS have_slot,
            EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active) AS slot_active`,
    [slot],
  );
  const c = q.rows[0];
  if (!c) return [];
  return [slotRoom(c), senderRoom(c), walKeep(c.keep)];
}

function slotRoom(c: { max_slots: number; slots: number; have_slot: boolean }): CheckResult {
  const used = `${c.slots} of ${c.max_slots} in use`;
  if (c.have_slot) return ok('source', 'max_replication_slots', `${used}, one of them this slot`);
  if (c.slots < c.max_slots)
    return ok('source', 'max_replication_slots', `${used}, one free for this slot`);
  return failed(
    'max_replication_slots',
    new SourceSetupError(
      'replication_slots_exhausted',
      `source: all replication slots are in use (${used}); the connector needs one`,
      {
        fix: 'drop a slot nothing consumes (SELECT slot_name, active FROM pg_replication_slots; SELECT pg_drop_replication_slot(...)), or raise max_replication_slots (ALTER SYSTEM SET max_replication_slots = <n>; then restart PostgreSQL)',
      },
    ),
  );
}

function senderRoom(c: {
  max_senders: number;
  senders: number;
  slot_active: boolean;
}): CheckResult {
  const used = `${c.senders} of ${c.max_senders} in use`;
  if (c.slot_active)
    return ok('source', 'max_wal_senders', `${used}, one of them streams this slot`);
  if (c.senders < c.max_senders)
    return ok('source', 'max_wal_senders', `${used}, one free for the connector`);
  return failed(
    'max_wal_senders',
    // Retriable: a sender of a consumer that just went away frees itself.
    new SlotlineError(
      'wal_senders_exhausted',
      `source: every WAL sender is busy (${used}); the connector needs one`,
      {
        retriable: true,
        remedy: {
          side: 'source',
          fix: 'raise max_wal_senders (ALTER SYSTEM SET max_wal_senders = <n>; then restart PostgreSQL), or stop a replication client you do not need (SELECT pid, application_name FROM pg_stat_replication)',
        },
      },
    ),
  );
}

function walKeep(keep: string): CheckResult {
  if (keep !== '-1')
    return ok(
      'source',
      'max_slot_wal_keep_size',
      `${keep}: a slot further behind is invalidated (then \`slotline setup --resnapshot\`)`,
    );
  return warning(
    'max_slot_wal_keep_size',
    new SourceSetupError(
      'wal_keep_unbounded',
      'source: max_slot_wal_keep_size is -1 (unbounded): while the connector is down its slot keeps every WAL segment, until the disk fills and the server stops',
      {
        fix: "ALTER SYSTEM SET max_slot_wal_keep_size = '<size>' (well under the free WAL disk); SELECT pg_reload_conf(); a slot further behind is then invalidated instead, and `slotline setup --resnapshot` recovers",
      },
    ),
  );
}

/** One source table: present, readable, and with a replica identity that carries its id. */
async function checkTable(db: Queryable, schema: string, table: string): Promise<CheckResult> {
  const name = `table ${table}`;
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
  const fail = (code: string, problem: string, fix: string, variable?: string) =>
    failed(name, new SourceSetupError(code, problem, variable ? { fix, variable } : { fix }));
  if (!row?.oid) {
    return fail(
      'source_table_missing',
      `source: table ${qualified} does not exist`,
      'check SLOTLINE_SOURCE_SCHEMA (Ponder writes into the schema chosen at deploy time) and that the indexer has started',
      'SLOTLINE_SOURCE_SCHEMA',
    );
  }
  if (!row.can_select) {
    return fail(
      'select_privilege',
      `source: no SELECT privilege on ${qualified}`,
      `GRANT SELECT ON ${qualified} TO <connector role> (sql/roles/source_role.sql)`,
    );
  }
  if (row.relreplident === 'n' || (row.relreplident === 'd' && !row.has_pk)) {
    return fail(
      'replica_identity',
      `source: ${qualified} has no replica identity, so its updates and deletes cannot be replicated`,
      `add a primary key, or ALTER TABLE ${qualified} REPLICA IDENTITY FULL`,
    );
  }
  // The old row of an update or delete then carries only the index's columns:
  // without id no delete (and no id change) could be applied.
  if (row.relreplident === 'i' && !row.identity_has_id) {
    return fail(
      'replica_identity',
      `source: ${qualified} has REPLICA IDENTITY USING INDEX ${row.identity_index ?? '?'}, which lacks the id column, so deletes could not be applied`,
      `ALTER TABLE ${qualified} REPLICA IDENTITY DEFAULT (its primary key on id), or REPLICA IDENTITY FULL`,
    );
  }
  const leaves = await unidentifiedPartitions(db, row.oid);
  if (leaves.length > 0) {
    return fail(
      'replica_identity',
      `source: partition(s) ${leaves.join(', ')} of ${qualified} have no replica identity, so their updates and deletes cannot be replicated`,
      "give each a primary key (ALTER TABLE … ATTACH PARTITION attaches the root's), or ALTER TABLE <partition> REPLICA IDENTITY FULL",
    );
  }
  const identity = { d: 'primary key', f: 'full', i: `index ${row.identity_index ?? '?'}` }[
    row.relreplident ?? 'd'
  ];
  return ok('source', name, `${qualified}: readable, replica identity ${identity ?? '?'}`);
}

/**
 * Ponder's `ordering: "experimental_isolated"` makes every table PARTITION BY
 * LIST (chain_id), one partition `<table>_<chainId>` per chain. Changes are
 * logged, and published, with each partition's own replica identity (the
 * root's says nothing about them), so every leaf needs one that carries the
 * key. The leaves that lack one.
 */
async function unidentifiedPartitions(db: Queryable, oid: number): Promise<string[]> {
  const leaves = await db.query<{ leaf: string; relreplident: string; has_pk: boolean }>(
    `SELECT t.relid::regclass::text AS leaf, c.relreplident,
            EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk
       FROM pg_partition_tree($1::regclass) t JOIN pg_class c ON c.oid = t.relid
      WHERE t.isleaf AND t.relid <> $1::regclass`,
    [oid],
  );
  return leaves.rows
    .filter((l) => l.relreplident === 'n' || (l.relreplident === 'd' && !l.has_pk))
    .map((l) => l.leaf);
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
 * does not map: they would be dropped. That problem, or null.
 */
export async function viaRootError(
  db: Queryable,
  opts: SourceCheckOptions,
  pubViaRoot: boolean,
): Promise<PublicationMissingError | null> {
  if (pubViaRoot) return null;
  const parted = await partitionedTables(db, opts.schema);
  if (parted.length === 0) return null;
  const names = parted.map((t) => `${opts.schema}.${t}`).join(', ');
  return new PublicationMissingError(
    `source: ${names} is partitioned, and publication ${opts.publication} publishes its changes under each partition's name, which slotline does not map`,
    `ALTER PUBLICATION ${opts.publication} SET (publish_via_partition_root = true) (or \`slotline setup\`)`,
  );
}

/** viaRootError's message (its fix included), or null. */
export async function viaRootProblem(
  db: Queryable,
  opts: SourceCheckOptions,
  pubViaRoot: boolean,
): Promise<string | null> {
  return (await viaRootError(db, opts, pubViaRoot))?.message ?? null;
}

/**
 * The publication covers both tables, or `setup` can make it so: creating it
 * takes CREATE on the database and owning the tables; adding a table takes
 * owning the publication and the table. Checked here because setup would
 * otherwise fail halfway, with "must be owner of ..." after the sink changed.
 */
async function checkPublicationReady(db: Queryable, opts: KnownSchema): Promise<CheckResult> {
  const { publication, schema } = opts;
  const pub = await db.query<{
    publishes_all: boolean | null;
    puballtables: boolean;
    pubviaroot: boolean;
    owned: boolean;
    may_create: boolean;
    db: string;
  }>(
    `SELECT p.pubinsert AND p.pubupdate AND p.pubdelete AS publishes_all, p.puballtables,
            p.pubviaroot, pg_has_role(p.pubowner, 'USAGE') AS owned,
            has_database_privilege(current_database(), 'CREATE') AS may_create,
            current_database() AS db
       FROM (SELECT 1) one LEFT JOIN pg_publication p ON p.pubname = $1`,
    [publication],
  );
  const p = pub.rows[0];
  const owners = await db.query<{ relname: string; owned: boolean }>(
    `SELECT c.relname, pg_has_role(c.relowner, 'USAGE') AS owned
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = ANY($2::text[])
      ORDER BY c.relname`,
    [schema, SOURCE_TABLES],
  );
  const notOwned = owners.rows.filter((r) => !r.owned).map((r) => r.relname);
  const fix = `let the tables' owner create it: psql "$SOURCE_OWNER_URL" -v publication=${publication} -f sql/roles/source_role.sql, or set SLOTLINE_PUBLICATION to a publication that covers ${SOURCE_TABLES.join(' and ')}`;
  const refused = (problem: string) =>
    failed(
      'publication',
      new SlotlineError('publication_privilege', `source: ${problem}`, {
        remedy: { side: 'source', variable: 'SLOTLINE_PUBLICATION', fix },
      }),
    );
  if (!p || p.publishes_all === null) {
    // No such publication (the LEFT JOIN found none).
    if (!opts.create) return failed('publication', publicationAbsent(publication));
    if (!p?.may_create)
      return refused(
        `publication ${publication} does not exist, and setup may not create it: permission denied for database ${p?.db ?? '?'}`,
      );
    if (notOwned.length > 0)
      return refused(
        `publication ${publication} does not exist, and setup may not create it: must be owner of table ${notOwned.join(', ')}`,
      );
    return ok('source', 'publication', `${publication} does not exist yet: setup creates it`);
  }
  if (!p.publishes_all) {
    return failed(
      'publication',
      new PublicationMissingError(
        `source: publication ${publication} does not publish inserts, updates and deletes`,
        `ALTER PUBLICATION ${publication} SET (publish = 'insert, update, delete, truncate')`,
      ),
    );
  }
  return publicationCoverage(db, opts, p, notOwned, refused);
}

/**
 * An existing publication that publishes every kind of change: whether it
 * covers the tables (and their partitions' changes under the root's name), or
 * setup can make it so. In follow mode the tables it covers are the deployment
 * switch's business (it moves the publication to the deployment the views name).
 */
async function publicationCoverage(
  db: Queryable,
  opts: KnownSchema,
  p: { puballtables: boolean; pubviaroot: boolean; owned: boolean },
  notOwned: readonly string[],
  refused: (problem: string) => CheckResult,
): Promise<CheckResult> {
  const { publication, schema } = opts;
  const viaRoot = await viaRootError(db, opts, p.pubviaroot);
  let then = '';
  if (viaRoot) {
    if (!opts.create) return failed('publication', viaRoot);
    if (!p.owned)
      return failed(
        'publication',
        new SlotlineError(
          'publication_privilege',
          `${viaRoot.problem}, and setup may not change it: must be owner of publication ${publication}`,
          {
            remedy: {
              side: 'source',
              variable: 'SLOTLINE_PUBLICATION',
              fix: `as the publication's owner: ${viaRoot.remedy?.fix ?? ''}`,
            },
          },
        ),
      );
    then = '; setup sets publish_via_partition_root';
  }
  if (p.puballtables)
    return ok('source', 'publication', `${publication} publishes all tables${then}`);
  if (opts.follow)
    return ok(
      'source',
      'publication',
      `${publication} exists; follow mode points it at the deployment the views name${then}`,
    );
  const missing = await missingTables(db, opts);
  if (missing.length === 0)
    return ok('source', 'publication', `${publication} covers ${SOURCE_TABLES.join(', ')}${then}`);
  const lacks = `publication ${publication} lacks ${missing.map((t) => `${schema}.${t}`).join(', ')}`;
  if (!opts.create)
    return failed(
      'publication',
      new PublicationMissingError(`source: ${lacks}`, 'run `slotline setup`'),
    );
  if (!p.owned)
    return refused(
      `${lacks}, and setup may not add it: must be owner of publication ${publication}`,
    );
  const notOwnedMissing = missing.filter((t) => notOwned.includes(t));
  if (notOwnedMissing.length > 0)
    return refused(
      `${lacks}, and setup may not add it: must be owner of table ${notOwnedMissing.join(', ')}`,
    );
  return ok('source', 'publication', `${lacks}: setup adds it${then}`);
}

function publicationAbsent(publication: string): SlotlineError {
  return new PublicationMissingError(
    `source: publication ${publication} does not exist`,
    'run `slotline setup`, or check SLOTLINE_PUBLICATION',
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
  const viaRoot = await viaRootError(db, opts, p.pubviaroot);
  if (viaRoot) {
    await db
      .query(
        `ALTER PUBLICATION ${quoteIdent(opts.publication)} SET (publish_via_partition_root = true)`,
      )
      .catch((err: unknown) => {
        throw new PublicationMissingError(
          `${viaRoot.problem} (${(err as Error).message})`,
          viaRoot.remedy?.fix,
        );
      });
    log.info({ publication: opts.publication }, 'publication now publishes via partition roots');
  }
  if (!p.pubinsert || !p.pubupdate || !p.pubdelete) {
    throw new PublicationMissingError(
      `source: publication ${opts.publication} does not publish inserts, updates and deletes`,
      `ALTER PUBLICATION ${opts.publication} SET (publish = 'insert, update, delete, truncate')`,
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

async function missingTables(db: Queryable, opts: SourceCheckOptions): Promise<string[]> {
  const have = await db.query<{ tablename: string }>(
    'SELECT tablename FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2',
    [opts.publication, opts.schema],
  );
  const names = new Set(have.rows.map((r) => r.tablename));
  return SOURCE_TABLES.filter((t) => !names.has(t));
}
