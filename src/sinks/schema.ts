import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { classifyError, SinkSchemaError, SlotlineError } from '../errors.js';
import type { Logger } from '../log.js';
import { quoteIdent } from '../sql.js';

export interface SinkSchemaOptions {
  url: string;
  /** SLOTLINE_SINK_SCHEMA */
  schema: string;
  /**
   * SLOTLINE_COLUMNSTORE_AFTER_SECONDS: with TimescaleDB, chunks of analytics_trades older than
   * this are compressed by a policy (sql/004_columnstore_timescale.sql); 0: no policy.
   */
  columnstoreAfterSeconds: number;
  log: Logger;
}

export interface SinkSchemaReport {
  timescale: string | null;
}

type Queryable = Pick<pg.ClientBase, 'query'>;

const SQL_DIR = new URL('../../sql/', import.meta.url);

/** Columns the connector writes; a sink table without them is a schema mismatch. */
const REQUIRED_COLUMNS: Record<string, string[]> = {
  analytics_trades: [
    'trade_id',
    'time',
    'chain_id',
    'pool_id',
    'symbol',
    'side',
    'price',
    'quantity',
    'volume',
    'transaction_id',
    'source_lsn',
    'source_generation',
    'source_seq',
  ],
  pools: ['id', 'coin', 'order_book', 'source_lsn', 'source_generation', 'source_seq'],
  analytics_trades_tombstones: ['trade_id', 'source_generation', 'source_lsn', 'source_seq'],
  pools_tombstones: ['id', 'source_generation', 'source_lsn', 'source_seq'],
};

/**
 * Applies sql/ to the sink, idempotently: the connector's schema, the sink
 * tables, and OHLCV aggregates (continuous aggregates with TimescaleDB, plain
 * views without), and with TimescaleDB the columnstore policy. Serialised by an advisory lock so two replicas starting at
 * once do not race.
 */
export async function applySinkSchema(opts: SinkSchemaOptions): Promise<SinkSchemaReport> {
  const client = new pg.Client({ connectionString: opts.url, application_name: 'slotline-setup' });
  // A session the server ends (FATAL) rejects the query in flight; unlistened, pg
  // would also raise an 'error' event that kills the process.
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query(`SELECT pg_advisory_lock(hashtext('slotline.setup'))`);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(opts.schema)}`);
    await client.query(`SET search_path TO ${quoteIdent(opts.schema)}, public`);
    const timescale = await ensureTimescale(client, opts.url, opts.log);
    if (timescale) await findTimescaleFunctions(client, opts.schema);
    // Read by 004 (a custom setting, so the file needs no templating); empty: no policy.
    await client.query(`SELECT set_config('slotline.columnstore_after', $1, false)`, [
      interval(opts.columnstoreAfterSeconds),
    ]);
    const files = timescale
      ? ['003_ohlcv_timescale.sql', '004_columnstore_timescale.sql']
      : ['003_ohlcv_plain.sql'];
    for (const file of ['001_connector.sql', '002_sink_tables.sql', ...files]) {
      const text = await readFile(new URL(file, SQL_DIR), 'utf8');
      for (const stmt of splitSql(text)) {
        try {
          await client.query(stmt);
        } catch (err) {
          // A privilege the sink role lacks has its own code and fix.
          const e = classifyError(err, 'sink');
          if (e.code === 'sink_privilege') throw e;
          throw new SinkSchemaError(
            `sink: applying sql/${file} failed: ${(err as Error).message}`,
            err,
          );
        }
      }
    }
    await verifySinkColumns(client, opts.schema);
    opts.log.info({ timescale: timescale ?? 'absent', schema: opts.schema }, 'sink schema applied');
    return { timescale };
  } finally {
    await client
      .query(`SELECT pg_advisory_unlock(hashtext('slotline.setup'))`)
      .catch(() => undefined);
    await client.end();
  }
}

/** Seconds as an interval in its largest whole unit ('7 days', as the policy shows it); 0: ''. */
export function interval(seconds: number): string {
  if (seconds <= 0) return '';
  for (const [unit, size] of [
    ['days', 86_400],
    ['hours', 3_600],
    ['minutes', 60],
  ] as const) {
    if (seconds % size === 0) return `${seconds / size} ${unit}`;
  }
  return `${seconds} seconds`;
}

async function ensureTimescale(
  client: pg.Client,
  url: string,
  log: Logger,
): Promise<string | null> {
  const ts = await inspectTimescale(client);
  if (ts.installed) {
    // Its hypertables and aggregates exist already; plain views cannot replace them.
    if (ts.preloaded === false) throw timescaleNotPreloaded();
    return ts.installed;
  }
  if (!ts.available) {
    log.info('TimescaleDB is not available on the sink: using plain tables and views');
    return null;
  }
  // Installed but not preloaded (distribution packages, some managed services):
  // CREATE EXTENSION then fails with FATAL and the server drops the connection.
  if (ts.preloaded === false) {
    log.warn(NOT_PRELOADED);
    return null;
  }
  const failure = await createExtensionApart(url);
  if (failure) {
    log.warn(
      { err: failure },
      `TimescaleDB is installed on the sink server but CREATE EXTENSION failed (${failure.message}): using plain tables and views. ${PRELOAD_FIX}, or grant the sink role CREATE on the database`,
    );
    return null;
  }
  return timescaleVersion(client);
}

export interface TimescaleState {
  /** The extension's version in this database; null when not created here. */
  installed: string | null;
  /** The server has it (pg_available_extensions). */
  available: boolean;
  /** shared_preload_libraries names it; null when the role may not read that setting. */
  preloaded: boolean | null;
}

/** What setup will find and do about TimescaleDB; reads only. */
export async function inspectTimescale(client: Queryable): Promise<TimescaleState> {
  const installed = await timescaleVersion(client);
  const available = await client.query(
    `SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'`,
  );
  return {
    installed,
    available: (available.rowCount ?? 0) > 0,
    preloaded: await preloaded(client),
  };
}

export function timescaleNotPreloaded(): SlotlineError {
  return new SlotlineError(
    'timescale_not_preloaded',
    'sink: the TimescaleDB extension is installed in this database but the server does not preload it',
    { remedy: { side: 'sink', fix: PRELOAD_FIX } },
  );
}

export const PRELOAD_FIX =
  "To use it: add timescaledb to shared_preload_libraries in the sink server's postgresql.conf and restart it";
const NOT_PRELOADED = `TimescaleDB is installed on the sink server but not preloaded (shared_preload_libraries lacks timescaledb): using plain tables and views. ${PRELOAD_FIX}, then run \`slotline setup\` again`;

/**
 * Puts the extension's schema on the search_path after the sink schema: an
 * earlier version installed it into the first deployment's sink schema, where
 * another deployment's DDL could not find create_hypertable.
 */
async function findTimescaleFunctions(client: pg.Client, schema: string): Promise<void> {
  const r = await client.query<{ nspname: string }>(
    `SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
      WHERE e.extname = 'timescaledb'`,
  );
  const ext = r.rows[0]?.nspname;
  if (!ext || ext === schema || ext === 'public') return;
  await client.query(`SET search_path TO ${quoteIdent(schema)}, ${quoteIdent(ext)}, public`);
}

async function timescaleVersion(client: Queryable): Promise<string | null> {
  const v = await client.query<{ extversion: string }>(
    `SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'`,
  );
  return v.rows[0]?.extversion ?? null;
}

/** Whether shared_preload_libraries names timescaledb; null when the role may not read it. */
async function preloaded(client: Queryable): Promise<boolean | null> {
  // Superusers and pg_read_all_settings may read it; others get an error.
  const r = await client
    .query<{ libs: string }>(`SELECT current_setting('shared_preload_libraries') AS libs`)
    .catch(() => null);
  const libs = r?.rows[0]?.libs;
  if (libs === undefined) return null;
  return libs.split(',').some((l) => /^\s*"?(\$libdir\/)?timescaledb"?\s*$/.test(l));
}

/**
 * CREATE EXTENSION on a connection of its own, listened to: when the library
 * cannot load, the server ends the session with FATAL, which an unlistened pg
 * client turns into an unhandled 'error' event. Returns the failure, if any.
 */
async function createExtensionApart(url: string): Promise<Error | null> {
  const c = new pg.Client({ connectionString: url, application_name: 'slotline-setup' });
  c.on('error', () => undefined);
  try {
    await c.connect();
    // Into public explicitly: the session's search_path must not decide, or the
    // first deployment's sink schema would hide create_hypertable from the next.
    await c.query('CREATE EXTENSION IF NOT EXISTS timescaledb SCHEMA public');
    return null;
  } catch (err) {
    return err as Error;
  } finally {
    await c.end().catch(() => undefined);
  }
}

export async function verifySinkColumns(
  client: Pick<pg.ClientBase, 'query'>,
  schema: string,
): Promise<void> {
  const { rows } = await client.query<{ table_name: string; column_name: string }>(
    `SELECT table_name, column_name FROM information_schema.columns
      WHERE table_schema = $1 AND table_name = ANY($2::text[])`,
    [schema, Object.keys(REQUIRED_COLUMNS)],
  );
  const have = new Set(rows.map((r) => `${r.table_name}.${r.column_name}`));
  const missing = Object.entries(REQUIRED_COLUMNS).flatMap(([t, cols]) =>
    cols.filter((c) => !have.has(`${t}.${c}`)).map((c) => `${schema}.${t}.${c}`),
  );
  if (missing.length > 0) {
    throw new SinkSchemaError(
      `sink schema mismatch: missing ${missing.join(', ')}; run \`slotline setup\` or check SLOTLINE_SINK_SCHEMA`,
    );
  }
}

/**
 * Splits a file into statements at top-level semicolons, respecting quotes,
 * dollar quoting and comments. Needed because some DDL (continuous
 * aggregates) may not run inside the implicit transaction of a multi-statement
 * query.
 */
export function splitSql(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    if (ch === '-' && text[i + 1] === '-') {
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? text.length : nl + 1;
    } else if (ch === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? text.length : end + 2;
    } else if (ch === "'" || ch === '"') {
      let j = i + 1;
      while (j < text.length && !(text[j] === ch && text[j + 1] !== ch))
        j += text[j] === ch ? 2 : 1;
      i = j + 1;
    } else if (ch === '$') {
      const m = /^\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(i, i + 64));
      if (m) {
        const end = text.indexOf(m[0], i + m[0].length);
        i = end < 0 ? text.length : end + m[0].length;
      } else i++;
    } else if (ch === ';') {
      push(text.slice(start, i));
      start = i + 1;
      i++;
    } else i++;
  }
  push(text.slice(start));
  return out;

  function push(s: string) {
    const stripped = s
      .replace(/--[^\n]*/g, '')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .trim();
    if (stripped.length > 0) out.push(s.trim());
  }
}
