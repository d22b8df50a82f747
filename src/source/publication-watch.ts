import type pg from 'pg';
import type { Logger } from '../log.js';
import { quoteIdent } from '../sql.js';
import {
  partitionedTables,
  SOURCE_TABLES,
  type SourceCheckOptions,
  viaRootProblem,
} from './checks.js';

type Queryable = Pick<pg.ClientBase, 'query'>;

/**
 * Why the stream may be losing changes although it runs: the publication was
 * dropped, or a source table left it (renamed, then recreated under the old
 * name: the new table is in no publication, its inserts never reach the slot).
 */
export interface PublicationProblem {
  code: 'publication_missing' | 'publication_incomplete' | 'source_table_missing';
  /** What happened and the fix, for the log, /readyz and /status. */
  message: string;
  /** The source tables concerned (schema-qualified). */
  tables: string[];
  /** The missing tables were added back to the publication just now. */
  repaired: boolean;
}

export interface PublicationCheckOptions extends SourceCheckOptions {
  /**
   * Add a recreated table back to a FOR TABLE publication the role owns
   * (default false). Changes made to it before that were not published.
   */
  repair?: boolean;
}

/**
 * Whether the publication still feeds both tables; null when it does. Cheap
 * (three catalog queries): meant to run every few seconds beside the stream.
 */
export async function checkPublication(
  db: Queryable,
  opts: PublicationCheckOptions,
): Promise<PublicationProblem | null> {
  const { schema, publication } = opts;
  const pub = await db.query<{ puballtables: boolean; pubviaroot: boolean; owned: boolean }>(
    `SELECT puballtables, pubviaroot, pg_has_role(pubowner, 'USAGE') AS owned
       FROM pg_publication WHERE pubname = $1`,
    [publication],
  );
  const p = pub.rows[0];
  if (!p) {
    return {
      code: 'publication_missing',
      message:
        `source: publication ${publication} was dropped; the slot cannot decode changes made after that. ` +
        'Fix: run `slotline setup` (recreates it), then `slotline setup --resnapshot` to start over from a fresh snapshot ' +
        '(PostgreSQL before 18 cannot decode past a dropped publication)',
      tables: SOURCE_TABLES.map((t) => `${schema}.${t}`),
      repaired: false,
    };
  }
  const exists = await db.query<{ relname: string }>(
    `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND c.relkind IN ('r', 'p')`,
    [schema, SOURCE_TABLES],
  );
  const present = new Set(exists.rows.map((r) => r.relname));
  const absent = SOURCE_TABLES.filter((t) => !present.has(t));
  if (absent.length > 0) {
    const names = absent.map((t) => `${schema}.${t}`);
    return {
      code: 'source_table_missing',
      message: `source: ${names.join(', ')} no longer exist(s) (renamed or dropped). Fix: restore the table; if it is recreated, slotline adds it back to the publication, then backfill the period in between`,
      tables: names,
      repaired: false,
    };
  }
  const viaRoot = await viaRootCheck(db, opts, p);
  if (viaRoot) return viaRoot;
  const listed = await db.query<{ tablename: string }>(
    'SELECT tablename FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2',
    [publication, schema],
  );
  const inPub = new Set(listed.rows.map((r) => r.tablename));
  const missing = SOURCE_TABLES.filter((t) => !inPub.has(t));
  if (missing.length === 0) return null;
  const names = missing.map((t) => `${schema}.${t}`);
  const repaired =
    opts.repair === true && !p.puballtables && p.owned && (await addTables(db, opts, missing));
  return {
    code: 'publication_incomplete',
    message: repaired
      ? `source: ${names.join(', ')} had left publication ${publication} (recreated?) and was added back; its changes in between were not streamed. Fix: \`slotline backfill --from <when it was recreated>\``
      : `source: publication ${publication} does not cover ${names.join(', ')} (recreated?), so its changes are not streamed. Fix: ALTER PUBLICATION ${publication} ADD TABLE ${names.join(', ')} (or \`slotline setup\`), then backfill from when it was recreated`,
    tables: names,
    repaired,
  };
}

/** A partitioned table published under its partitions' names (see viaRootProblem). */
async function viaRootCheck(
  db: Queryable,
  opts: PublicationCheckOptions,
  p: { pubviaroot: boolean; owned: boolean },
): Promise<PublicationProblem | null> {
  const problem = await viaRootProblem(db, opts, p.pubviaroot);
  if (!problem) return null;
  const tables = (await partitionedTables(db, opts.schema)).map((t) => `${opts.schema}.${t}`);
  const repaired = opts.repair === true && p.owned && (await publishViaRoot(db, opts));
  return {
    code: 'publication_incomplete',
    message: repaired
      ? `source: publication ${opts.publication} published ${tables.join(', ')} under its partitions' names and now publishes via the partition root; ` +
        'changes in between were not streamed. Fix: `slotline backfill --from <when the table was partitioned>`'
      : problem,
    tables,
    repaired,
  };
}

async function publishViaRoot(db: Queryable, opts: SourceCheckOptions): Promise<boolean> {
  try {
    await db.query(
      `ALTER PUBLICATION ${quoteIdent(opts.publication)} SET (publish_via_partition_root = true)`,
    );
    return true;
  } catch {
    return false;
  }
}

/** ADD TABLE also needs the table's ownership; without it the operator does it. */
async function addTables(
  db: Queryable,
  opts: SourceCheckOptions,
  tables: readonly string[],
): Promise<boolean> {
  try {
    for (const t of tables) {
      await db.query(
        `ALTER PUBLICATION ${quoteIdent(opts.publication)} ADD TABLE ${quoteIdent(opts.schema)}.${quoteIdent(t)}`,
      );
    }
    return true;
  } catch {
    return false;
  }
}

export interface PublicationWatchOptions extends PublicationCheckOptions {
  pool: pg.Pool;
  /** Between checks (suggested: 10 s). */
  intervalMs: number;
  log: Logger;
  /** Called when the problem changes (a new one, another one, or null: resolved). */
  onChange?(problem: PublicationProblem | null): void;
}

/**
 * Runs checkPublication on a timer. `latest` is what readiness reads: a
 * problem that is not repaired means changes are being lost or cannot be
 * decoded. Logs once per change of problem, not once per check.
 */
export class PublicationWatch {
  latest: PublicationProblem | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running = false;

  constructor(private readonly opts: PublicationWatchOptions) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.check(), this.opts.intervalMs);
    this.timer.unref();
    void this.check();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One check now; a source that cannot be reached is someone else's alarm. */
  async check(): Promise<PublicationProblem | null> {
    if (this.running) return this.latest;
    this.running = true;
    try {
      const problem = await checkPublication(this.opts.pool, this.opts);
      const before = this.latest;
      // A repair is reported once; afterwards the publication is whole again.
      this.latest = problem?.repaired ? null : problem;
      if (problem && (problem.repaired || problem.code !== before?.code)) {
        this.opts.log.error({ code: problem.code, tables: problem.tables }, problem.message);
        this.opts.onChange?.(problem);
      } else if (!problem && before) {
        this.opts.log.info('publication covers the source tables again');
        this.opts.onChange?.(null);
      }
    } catch (err) {
      this.opts.log.debug({ err }, 'publication check failed');
    } finally {
      this.running = false;
    }
    return this.latest;
  }
}
