import type pg from 'pg';
import { SlotlineError, SourceSetupError } from '../errors.js';
import type { Logger } from '../log.js';
import { quoteIdent } from '../sql.js';
import { POOLS_TABLE, SOURCE_TABLES, TRADES_TABLE } from './checks.js';

type Queryable = Pick<pg.ClientBase, 'query'>;

/**
 * Where Ponder's views point. Every `ponder start` of a changed app indexes
 * into a new schema; once its backfill is done it sets `is_ready` to 1 in that
 * schema's `_ponder_meta` row (key 'app') and, with `--views-schema`, re-points
 * the views in one transaction: `CREATE VIEW "<views>"."<t>" AS SELECT * FROM
 * "<schema>"."<t>"`. A view's rewrite rule depends on the table it selects
 * from (pg_depend), which names the live deployment's schema without parsing SQL.
 */
export type ViewsTarget =
  | { kind: 'deployment'; schema: string; ready: boolean }
  /** No decision can be made: what is wrong, for /status and the log. */
  | { kind: 'unresolved'; reason: string };

export async function resolveViews(db: Queryable, viewsSchema: string): Promise<ViewsTarget> {
  const { rows } = await db.query<{ view: string; schema: string; tbl: string }>(
    `SELECT DISTINCT v.relname AS view, tn.nspname AS schema, t.relname AS tbl
       FROM pg_class v
       JOIN pg_namespace vn ON vn.oid = v.relnamespace
       JOIN pg_rewrite r ON r.ev_class = v.oid
       JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                       AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> v.oid
       JOIN pg_class t ON t.oid = d.refobjid AND t.relkind IN ('r', 'p')
       JOIN pg_namespace tn ON tn.oid = t.relnamespace
      WHERE vn.nspname = $1 AND v.relname = ANY($2::text[]) AND v.relkind = 'v'`,
    [viewsSchema, SOURCE_TABLES],
  );
  const targets = new Map<string, Set<string>>();
  for (const r of rows) {
    const set = targets.get(r.view) ?? new Set<string>();
    set.add(r.tbl === r.view ? r.schema : `${r.schema}.${r.tbl}`);
    targets.set(r.view, set);
  }
  const trades = [...(targets.get(TRADES_TABLE) ?? [])];
  const pools = [...(targets.get(POOLS_TABLE) ?? [])];
  if (trades.length === 0 || pools.length === 0)
    return {
      kind: 'unresolved',
      reason: `the views schema ${viewsSchema} has no ${trades.length === 0 ? TRADES_TABLE : POOLS_TABLE} view over a table (Ponder creates it once a deployment is ready)`,
    };
  const [schema] = trades;
  if (trades.length > 1 || pools.length > 1 || pools[0] !== schema || schema?.includes('.'))
    return {
      kind: 'unresolved',
      reason: `the views of ${viewsSchema} do not select from one deployment's ${TRADES_TABLE} and ${POOLS_TABLE} (${trades.join(', ')}; ${pools.join(', ')})`,
    };
  return {
    kind: 'deployment',
    schema: schema as string,
    ready: await deploymentReady(db, schema as string),
  };
}

/** `_ponder_meta`'s 'app' row says the deployment's backfill is complete. */
export async function deploymentReady(db: Queryable, schema: string): Promise<boolean> {
  try {
    const { rows } = await db.query<{ ready: string | null }>(
      `SELECT value ->> 'is_ready' AS ready FROM ${quoteIdent(schema)}._ponder_meta WHERE key = 'app'`,
    );
    return rows[0]?.ready === '1';
  } catch (err) {
    const code = (err as { code?: string }).code;
    // No _ponder_meta: not a Ponder deployment (a hand-made schema): the views decide.
    if (code === '42P01') return true;
    if (code === '42501') throw noReadGrant(schema, err);
    throw err;
  }
}

function noReadGrant(schema: string, cause: unknown): SourceSetupError {
  const e = new SourceSetupError(
    'select_privilege',
    `source: no privilege to read ${schema}._ponder_meta, so a redeploy cannot be followed`,
    {
      variable: 'SLOTLINE_PONDER_VIEWS_SCHEMA',
      fix:
        "run sql/roles/source_role.sql again with -v follow=on (it grants, by ALTER DEFAULT PRIVILEGES, USAGE on the schemas and SELECT on the tables Ponder's role creates), " +
        `or GRANT USAGE ON SCHEMA ${schema} and SELECT ON ALL TABLES IN SCHEMA ${schema} to the connector's role`,
    },
  );
  e.cause = cause;
  return e;
}

/**
 * Follow mode: the ready deployment the views point at, which setup checks
 * (it is what will be streamed) and a new publication covers. Before Ponder
 * has made one ready, a retriable wait.
 */
export async function liveDeployment(
  db: Queryable,
  cfg: { ponderViewsSchema: string | null },
): Promise<string> {
  const views = cfg.ponderViewsSchema as string;
  const target = await resolveViews(db, views);
  if (target.kind === 'deployment' && target.ready) return target.schema;
  const why =
    target.kind === 'unresolved'
      ? target.reason
      : `the views point at ${target.schema}, whose _ponder_meta does not say is_ready = 1 yet`;
  return Promise.reject(
    new SlotlineError('ponder_not_ready', `source: waiting for Ponder: ${why}`, {
      retriable: true,
      remedy: {
        side: 'source',
        variable: 'SLOTLINE_PONDER_VIEWS_SCHEMA',
        fix: `start Ponder with --views-schema ${views} and let its backfill finish (the connector waits meanwhile), or set SLOTLINE_PONDER_VIEWS_SCHEMA to the schema its --views-schema names`,
      },
    }),
  );
}

/** The function sql/roles/source_role.sql installs for a role that owns neither the publication nor Ponder's tables. */
export const FOLLOW_FUNCTION = 'slotline.follow_deployment';

/**
 * Points the publication at `schema`'s two tables (ALTER PUBLICATION … SET
 * TABLE). PostgreSQL lets only the owner of the publication, who must also
 * own the tables added, do that: the connector's role does it itself when it
 * may (superuser, or a member of Ponder's role), and otherwise calls the
 * SECURITY DEFINER function the role script installs, owned by Ponder's role,
 * which only moves a publication to the two tables of a ready deployment.
 */
export async function movePublication(
  db: Queryable,
  publication: string,
  schema: string,
  log: Logger,
): Promise<'direct' | 'function'> {
  const tables = SOURCE_TABLES.map((t) => `${quoteIdent(schema)}.${quoteIdent(t)}`).join(', ');
  try {
    await db.query(`ALTER PUBLICATION ${quoteIdent(publication)} SET TABLE ${tables}`);
    return 'direct';
  } catch (err) {
    if ((err as { code?: string }).code !== '42501') throw err;
    const fn = await db.query<{ callable: boolean | null }>(
      `SELECT has_function_privilege(to_regprocedure($1), 'EXECUTE') AS callable`,
      [`${FOLLOW_FUNCTION}(name, name)`],
    );
    if (fn.rows[0]?.callable !== true) throw cannotMove(publication, schema, err);
    await db.query(`SELECT ${FOLLOW_FUNCTION}($1, $2)`, [publication, schema]);
    log.info({ publication, schema }, `publication moved through ${FOLLOW_FUNCTION}`);
    return 'function';
  }
}

/** The publication covers exactly `schema`'s two tables (what follow mode streams). */
export async function publicationCovers(
  db: Queryable,
  publication: string,
  schema: string,
): Promise<boolean> {
  const { rows } = await db.query<{ schemaname: string; tablename: string }>(
    'SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1',
    [publication],
  );
  const names = rows.map((r) => `${r.schemaname}.${r.tablename}`).sort();
  return (
    JSON.stringify(names) === JSON.stringify(SOURCE_TABLES.map((t) => `${schema}.${t}`).sort())
  );
}

function cannotMove(publication: string, schema: string, cause: unknown): SlotlineError {
  return new SourceSetupError(
    'publication_owner',
    `source: cannot move publication ${publication} to ${schema} (${(cause as Error).message}): only the owner of the publication ` +
      'and of the new tables may',
    {
      variable: 'SLOTLINE_PUBLICATION',
      fix:
        "once, run sql/roles/source_role.sql with -v ponder_role=<Ponder's role> " +
        `(it makes that role own the publication and installs ${FOLLOW_FUNCTION}, which the connector may call), ` +
        "or GRANT <Ponder's role> TO <connector role>",
    },
  );
}

/**
 * What a redeploy needs from the connector's role, checked by `setup` in
 * follow mode so that the first redeploy does not find out: to read the
 * tables of schemas Ponder has yet to create, and to move the publication to
 * them. A superuser, or a member of Ponder's role, has both; otherwise the
 * role script's default privileges and its follow function provide them.
 * Says which; throws follow_grants when one is missing.
 */
export async function checkFollowGrants(
  db: Queryable,
  schema: string,
  publication: string,
): Promise<string> {
  const { rows } = await db.query<{
    owner: string | null;
    superuser: boolean;
    member: boolean;
    moves: boolean;
    reads_future: boolean;
  }>(
    `WITH o AS (SELECT c.relowner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2),
          me AS (SELECT oid, rolsuper FROM pg_roles WHERE rolname = current_user),
          acl AS (SELECT d.defaclobjtype AS kind, a.privilege_type, a.grantee
                    FROM pg_default_acl d, aclexplode(d.defaclacl) a
                   WHERE d.defaclrole = (SELECT relowner FROM o) AND d.defaclnamespace = 0)
     SELECT (SELECT relowner::regrole::text FROM o) AS owner,
            (SELECT rolsuper FROM me) AS superuser,
            COALESCE((SELECT pg_has_role(relowner, 'USAGE') FROM o), false) AS member,
            COALESCE(has_function_privilege(to_regprocedure($4), 'EXECUTE'), false)
              OR EXISTS (SELECT 1 FROM pg_publication p
                          WHERE p.pubname = $3 AND pg_has_role(p.pubowner, 'USAGE')
                            AND COALESCE((SELECT pg_has_role(relowner, 'USAGE') FROM o), false)) AS moves,
            EXISTS (SELECT 1 FROM acl WHERE kind = 'n' AND privilege_type = 'USAGE'
                       AND grantee IN (0, (SELECT oid FROM me)))
              AND EXISTS (SELECT 1 FROM acl WHERE kind = 'r' AND privilege_type = 'SELECT'
                            AND grantee IN (0, (SELECT oid FROM me))) AS reads_future`,
    [schema, TRADES_TABLE, publication, `${FOLLOW_FUNCTION}(name, name)`],
  );
  const r = rows[0];
  if (!r || r.superuser || r.member)
    return `role ${r?.superuser ? 'is a superuser' : `is a member of ${r?.owner ?? "Ponder's role"}`}: it may read and move to a new deployment`;
  const missing: string[] = [];
  if (!r.moves)
    missing.push(
      `moving publication ${publication} to a new deployment's tables (own it and be a member of ${r.owner ?? "Ponder's role"}, or EXECUTE on ${FOLLOW_FUNCTION})`,
    );
  if (!r.reads_future)
    missing.push(
      `reading the schemas and tables ${r.owner ?? "Ponder's role"} will create (ALTER DEFAULT PRIVILEGES FOR ROLE ${r.owner ?? '<ponder role>'} GRANT USAGE ON SCHEMAS / GRANT SELECT ON TABLES to this role)`,
    );
  if (missing.length === 0)
    return `role may move ${publication} and read the deployments ${r.owner ?? "Ponder's role"} creates`;
  throw new SourceSetupError(
    'follow_grants',
    `source: SLOTLINE_PONDER_VIEWS_SCHEMA is set, but a Ponder redeploy could not be followed without a superuser: this role lacks ${missing.join('; and ')}`,
    {
      variable: 'SLOTLINE_PONDER_VIEWS_SCHEMA',
      fix: `once, psql -f sql/roles/source_role.sql -v ponder_role=${r.owner ?? '<ponder role>'} -v schema=${schema} -v follow=on (as ${r.owner ?? "Ponder's role"} or a superuser)`,
    },
  );
}
