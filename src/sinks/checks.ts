import type pg from 'pg';
import { attempt, failed, ok, warning, type CheckResult } from '../check/result.js';
import { SlotlineError } from '../errors.js';
import { inspectTimescale, PRELOAD_FIX, timescaleNotPreloaded } from './schema.js';

type Queryable = Pick<pg.ClientBase, 'query'>;

/** What sql/001-003 create in the sink schema; setup alters them, so it must own them. */
const SINK_RELATIONS = [
  'analytics_trades',
  'pools',
  'analytics_trades_tombstones',
  'pools_tombstones',
  'ohlcv_1m',
  'ohlcv_1h',
];

/**
 * Every check of the sink: what `setup` needs to apply sql/ there. Reads the
 * catalog only; `slotline check` and `setup` (before it changes anything) run them.
 */
export async function checkSink(db: Queryable, schema: string): Promise<CheckResult[]> {
  return [
    await attempt('encoding', () => checkSinkEncoding(db), 'sink'),
    await attempt('privileges', () => checkSinkPrivileges(db, schema), 'sink'),
    await attempt('timescaledb', () => checkTimescale(db), 'sink'),
  ];
}

async function checkSinkEncoding(db: Queryable): Promise<CheckResult> {
  const r = await db.query<{ encoding: string }>(
    'SELECT pg_encoding_to_char(encoding) AS encoding FROM pg_database WHERE datname = current_database()',
  );
  const encoding = r.rows[0]?.encoding ?? '?';
  if (encoding === 'UTF8') return ok('sink', 'encoding', 'UTF8');
  return warning(
    'encoding',
    new SlotlineError(
      'sink_encoding',
      `sink: the database encoding is ${encoding}: a symbol or id with a character it lacks cannot be written`,
      {
        remedy: {
          side: 'sink',
          variable: 'SLOTLINE_SINK_URL',
          fix: "use a UTF8 database for the sink (CREATE DATABASE <name> ENCODING 'UTF8' TEMPLATE template0)",
        },
      },
    ),
  );
}

/**
 * setup runs CREATE SCHEMA IF NOT EXISTS (which PostgreSQL checks against
 * CREATE on the database even when the schema exists), creates tables in the
 * sink schema, and alters the ones it made before: it must own those.
 */
async function checkSinkPrivileges(db: Queryable, schema: string): Promise<CheckResult> {
  const r = await db.query<{
    db: string;
    role: string;
    may_create: boolean;
    schema_ok: boolean | null;
    not_owned: string[];
  }>(
    `SELECT current_database() AS db, current_user AS role,
            has_database_privilege(current_database(), 'CREATE') AS may_create,
            (SELECT has_schema_privilege(n.oid, 'USAGE') AND has_schema_privilege(n.oid, 'CREATE')
               FROM pg_namespace n WHERE n.nspname = $1) AS schema_ok,
            ARRAY(SELECT n.nspname || '.' || c.relname
                    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE (n.nspname = 'slotline' OR (n.nspname = $1 AND c.relname = ANY($2::text[])))
                     AND c.relkind IN ('r', 'p', 'v', 'm')
                     AND NOT pg_has_role(c.relowner, 'USAGE')
                   ORDER BY 1) AS not_owned`,
    [schema, SINK_RELATIONS],
  );
  const p = r.rows[0];
  if (!p) return ok('sink', 'privileges', '?');
  const refused = (problem: string, fix: string) =>
    failed(
      'privileges',
      new SlotlineError('sink_privilege', `sink: ${problem}`, {
        remedy: { side: 'sink', variable: 'SLOTLINE_SINK_URL', fix },
      }),
    );
  const script = `psql "$SINK_OWNER_URL" -v role=${p.role} -v schema=${schema} -f sql/roles/sink_role.sql`;
  if (!p.may_create)
    return refused(
      `permission denied for database ${p.db}: setup creates the schemas slotline and ${schema} (CREATE SCHEMA IF NOT EXISTS needs CREATE on the database)`,
      `GRANT CREATE ON DATABASE ${p.db} TO ${p.role}, as the database's owner (${script})`,
    );
  if (p.schema_ok === false)
    return refused(
      `role ${p.role} lacks USAGE and CREATE on schema ${schema} (SLOTLINE_SINK_SCHEMA)`,
      `GRANT USAGE, CREATE ON SCHEMA ${schema} TO ${p.role} (${script})`,
    );
  if (p.not_owned.length > 0)
    return refused(
      `must be owner of ${p.not_owned.join(', ')}: setup alters the tables it made (another role made these)`,
      `run setup as the role that made them, or ALTER TABLE <table> OWNER TO ${p.role} as their owner`,
    );
  return ok('sink', 'privileges', `role ${p.role} may create and alter the sink schema ${schema}`);
}

async function checkTimescale(db: Queryable): Promise<CheckResult> {
  const ts = await inspectTimescale(db);
  if (ts.installed) {
    if (ts.preloaded === false) return failed('timescaledb', timescaleNotPreloaded());
    return ok(
      'sink',
      'timescaledb',
      `TimescaleDB ${ts.installed}: hypertable and continuous aggregates`,
    );
  }
  if (!ts.available)
    return ok('sink', 'timescaledb', 'not on this server: plain tables and views (fine)');
  if (ts.preloaded === false)
    return warning(
      'timescaledb',
      new SlotlineError(
        'timescale_not_preloaded',
        'sink: TimescaleDB is installed on the server but not preloaded: setup uses plain tables and views',
        { remedy: { side: 'sink', fix: PRELOAD_FIX } },
      ),
    );
  return ok('sink', 'timescaledb', 'available: setup creates the extension');
}
