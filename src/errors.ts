/**
 * Which part of the deployment an operator must look at: a database, the
 * brokers, or the connector's own HTTP server.
 */
export type Side = 'source' | 'sink' | 'kafka' | 'http';

/** What an operator should change, and where: shown as the `Fix:` line. */
export interface Remedy {
  side: Side;
  /** The setting involved (SLOTLINE_SOURCE_URL, …), when one is. */
  variable?: string;
  fix: string;
}

export interface ErrorOptions {
  retriable?: boolean;
  cause?: unknown;
  /** Set when an operator can fix it; the message then ends with `Fix: …`. */
  remedy?: Remedy;
}

/**
 * One base error with a stable `code` and a `retriable` flag. The retry loop
 * reads `retriable`; nothing else decides. Classes exist only for the cases an
 * operator must tell apart.
 */
export class SlotlineError extends Error {
  readonly code: string;
  readonly retriable: boolean;
  /** The message without its fix. */
  readonly problem: string;
  readonly remedy: Remedy | null;

  constructor(code: string, problem: string, opts: ErrorOptions = {}) {
    const message = opts.remedy
      ? `${problem.replace(/\.$/, '')}. Fix: ${opts.remedy.fix}`
      : problem;
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.retriable = opts.retriable ?? false;
    this.problem = problem;
    this.remedy = opts.remedy ?? null;
  }
}

/** One bad setting, found when the configuration is parsed. */
export interface ConfigProblem {
  variable: string;
  /** The problem, starting with the variable's name. */
  message: string;
  /** Set for the mistakes an operator makes often: a code of their own and the fix. */
  code?: string;
  remedy?: Remedy;
}

export class ConfigError extends SlotlineError {
  readonly problems: readonly ConfigProblem[];

  constructor(message: string | readonly ConfigProblem[]) {
    const problems = typeof message === 'string' ? [] : message;
    super(
      problems.length === 1 && problems[0]?.code ? problems[0].code : 'config_invalid',
      typeof message === 'string'
        ? message
        : `invalid configuration:\n  ${problems.map(describeProblem).join('\n  ')}`,
    );
    this.problems = problems;
  }
}

function describeProblem(p: ConfigProblem): string {
  if (!p.code || !p.remedy) return p.message;
  return [p.message, ...remedyLines(p.code, p.remedy)].join('\n    ');
}

/** The lines under a problem an operator can fix: its code, side, variable and fix. */
export function remedyLines(code: string, r: Remedy): string[] {
  return [
    `code: ${code}`,
    `side: ${r.side}`,
    ...(r.variable ? [`variable: ${r.variable}`] : []),
    `Fix: ${r.fix}`,
  ];
}

/** The source is not set up for logical replication (wal_level, privileges, tables). */
export class SourceSetupError extends SlotlineError {
  constructor(code: string, problem: string, remedy?: Omit<Remedy, 'side'>) {
    super(code, problem, remedy ? { remedy: { side: 'source', ...remedy } } : {});
  }
}

/** The recovery from a lost slot, the same wherever it is found lost. */
export const RESNAPSHOT: Remedy = {
  side: 'source',
  variable: 'SLOTLINE_SLOT',
  fix: 'run `slotline setup --resnapshot` (new slot, fresh snapshot; sink rows that no longer exist at the source are removed), then `slotline run`',
};

export class SlotMissingError extends SlotlineError {
  constructor(problem: string) {
    super('slot_missing', problem, { remedy: RESNAPSHOT });
  }
}

export class SlotInvalidatedError extends SlotlineError {
  constructor(problem: string) {
    super('slot_invalidated', problem, { remedy: RESNAPSHOT });
  }
}

/** Another process streams from the slot: a hot standby waits and retries. */
export class SlotInUseError extends SlotlineError {
  constructor(message: string, cause?: unknown) {
    super('slot_in_use', message, { retriable: true, cause });
  }
}

export class PublicationMissingError extends SlotlineError {
  constructor(problem: string, fix?: string) {
    super(
      'publication_missing',
      problem,
      fix ? { remedy: { side: 'source', variable: 'SLOTLINE_PUBLICATION', fix } } : {},
    );
  }
}

export class SinkSchemaError extends SlotlineError {
  constructor(message: string, cause?: unknown) {
    super('sink_schema_mismatch', message, { cause });
  }
}

export class AuthError extends SlotlineError {
  constructor(message: string, cause?: unknown, remedy?: Remedy) {
    super('auth_failed', message, remedy ? { cause, remedy } : { cause });
  }
}

/**
 * Another replica leads now (it claimed a newer epoch in the sink): this one must
 * stop writing at once, never retry.
 */
export class LeadershipLostError extends SlotlineError {
  constructor(message: string, cause?: unknown) {
    super('leadership_lost', message, { cause });
  }
}

/**
 * The source is not the server the sink's history came from (another system
 * identifier): its LSNs mean nothing against the sink's. Needs a resnapshot.
 */
export class SourceChangedError extends SlotlineError {
  constructor(message: string) {
    super('source_changed', message);
  }
}

/** A connection broke or could not be made; retried with backoff. */
export class ConnectionError extends SlotlineError {
  constructor(message: string, cause?: unknown, remedy?: Remedy, code = 'connection') {
    super(code, message, remedy ? { retriable: true, cause, remedy } : { retriable: true, cause });
  }
}

/** A protocol message we cannot decode: a bug or a server we do not support. */
export class ProtocolError extends SlotlineError {
  constructor(message: string) {
    super('protocol', message);
  }
}

/**
 * An operator's request that cannot be carried out as asked; nothing was changed.
 * Raised below the HTTP edge, which alone maps `kind` to a status code.
 */
export class RequestRefused extends SlotlineError {
  constructor(
    readonly kind: 'invalid' | 'conflict' | 'not_found' | 'unavailable',
    message: string,
  ) {
    super(`request_${kind}`, message);
  }
}

/** The request is malformed or names impossible values (HTTP 400). */
export class InvalidRequest extends RequestRefused {
  constructor(message: string) {
    super('invalid', message);
  }
}

/** The request is valid but not possible in the connector's present state (HTTP 409). */
export class Conflict extends RequestRefused {
  constructor(message: string) {
    super('conflict', message);
  }
}

/** The request names something that does not exist (HTTP 404). */
export class NotFound extends RequestRefused {
  constructor(message: string) {
    super('not_found', message);
  }
}

/**
 * No replica can carry the request out now (no leader, or it does not answer);
 * asking again shortly may succeed (HTTP 503).
 */
export class Unavailable extends RequestRefused {
  constructor(message: string) {
    super('unavailable', message);
  }
}

interface PgErrorLike {
  code?: string;
  message?: string;
  errno?: number;
  syscall?: string;
}

/** SQLSTATE classes that clear up by themselves (see Appendix A of the PostgreSQL docs). */
const RETRIABLE_SQLSTATE = /^(08|40|53|57P0[1-4]|55P03|55006|58000|XX000)/;
const NODE_NET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/** The side and setting behind each I/O boundary's name. */
const BOUNDARIES: Record<string, { side: Side; variable: string }> = {
  source: { side: 'source', variable: 'SLOTLINE_SOURCE_URL' },
  sink: { side: 'sink', variable: 'SLOTLINE_SINK_URL' },
  timescale: { side: 'sink', variable: 'SLOTLINE_SINK_URL' },
  'kafka checkpoint': { side: 'sink', variable: 'SLOTLINE_SINK_URL' },
  kafka: { side: 'kafka', variable: 'SLOTLINE_KAFKA_BROKERS' },
};

/** How reserved characters of a password are written in a URL, for every fix that needs it. */
export const PERCENT_ENCODE = '@ as %40, # as %23, / as %2F, ? as %3F, : as %3A, % as %25';

/**
 * Maps anything thrown at an I/O boundary to a SlotlineError. `where` names the
 * boundary ("source", "sink", "kafka") for the message; for those the error
 * also names the side, the setting and the fix of the mistakes operators make.
 */
export function classifyError(err: unknown, where: string): SlotlineError {
  if (err instanceof SlotlineError) return err;
  const e = (err ?? {}) as PgErrorLike;
  const message = e.message ?? String(err);
  const code = e.code ?? '';
  const at = BOUNDARIES[where];
  const mistake = at ? operatorMistake(code, message, at, err) : null;
  if (mistake) return mistake;
  if (code === '28P01' || code === '28000') {
    return new AuthError(`${where}: authentication failed: ${message}`, err);
  }
  if (code === '42704' && /replication slot .* does not exist/.test(message)) {
    // Dropped under a running connector: the same recovery as when found missing at start.
    return new SlotMissingError(
      `${where}: ${message} (dropped by someone, or the server was rebuilt)`,
    );
  }
  if (code === '42704' && /publication .* does not exist/.test(message)) {
    // Dropped under a running connector: wait, not ready, rather than crash-loop.
    return new SlotlineError(
      'publication_missing',
      `${where}: ${message}. Fix: recreate the publication (slotline setup), then, since the slot ` +
        'cannot decode past the drop, run `slotline setup --resnapshot`',
      { retriable: true, cause: err },
    );
  }
  if (code === '55000' && /can no longer get changes from replication slot/.test(message)) {
    return new SlotInvalidatedError(
      `${where}: ${message} (it fell further behind than max_slot_wal_keep_size allows)`,
    );
  }
  if (code === '55006' && /replication slot .* is active/.test(message)) {
    return new SlotInUseError(
      `${where}: ${message} (another consumer holds the slot; retrying)`,
      err,
    );
  }
  if (
    NODE_NET_CODES.has(code) ||
    /Connection terminated|connection timeout|socket hang up|not queryable|Connection ended|read ECONNRESET|the database system is (starting up|shutting down)/i.test(
      message,
    )
  ) {
    return new ConnectionError(`${where}: ${message}`, err);
  }
  if (code === '42P01' || code === '42703' || code === '42804') {
    return new SinkSchemaError(`${where}: ${message}`, err);
  }
  if (RETRIABLE_SQLSTATE.test(code)) {
    return new SlotlineError(`pg_${code}`, `${where}: ${message}`, { retriable: true, cause: err });
  }
  return new SlotlineError(code ? `pg_${code}` : 'unexpected', `${where}: ${message}`, {
    cause: err,
  });
}

/**
 * The mistakes an operator makes at a database or the brokers (a wrong
 * password, a missing database, a host that does not resolve, a privilege the
 * role lacks), each with its own code and fix. Null: not one of them.
 */
function operatorMistake(
  code: string,
  message: string,
  at: { side: Side; variable: string },
  err: unknown,
): SlotlineError | null {
  const where = at.side;
  const v = at.variable;
  if (code === '28P01' || code === '28000') {
    const fix = /pg_hba/.test(message)
      ? `the server's pg_hba.conf has no line that lets this user reach this database from this host: add one (docs/security.md), or correct the user, host and database in ${v}`
      : `correct the user name and password in ${v} (percent-encode their reserved characters: ${PERCENT_ENCODE})`;
    return new AuthError(`${where}: authentication failed: ${message}`, err, { ...at, fix });
  }
  if (code === '3D000') {
    return new SlotlineError('database_missing', `${where}: ${message}`, {
      cause: err,
      remedy: {
        ...at,
        fix: `correct the database name at the end of ${v}, or create the database (CREATE DATABASE <name>)`,
      },
    });
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return new ConnectionError(
      `${where}: ${message} (the host name does not resolve)`,
      err,
      {
        ...at,
        fix: `correct the host in ${v}; if that host is a piece of the password, percent-encode the password (${PERCENT_ENCODE})`,
      },
      'host_not_found',
    );
  }
  if (code === 'ECONNREFUSED') {
    return new ConnectionError(`${where}: ${message}`, err, {
      ...at,
      fix: `check that the server runs and listens on the host and port in ${v} (its listen_addresses and port settings)`,
    });
  }
  if (code === '42501') return privilegeMistake(message, at, err);
  return null;
}

/** 42501 insufficient_privilege, told apart by what the role was refused. */
function privilegeMistake(
  message: string,
  at: { side: Side; variable: string },
  err: unknown,
): SlotlineError | null {
  const problem = `${at.side}: ${message}`;
  if (
    at.side === 'source' &&
    /publication|must be owner of table|permission denied for database/.test(message)
  ) {
    return new SlotlineError('publication_privilege', problem, {
      cause: err,
      remedy: {
        side: 'source',
        variable: 'SLOTLINE_PUBLICATION',
        fix: 'let the tables\' owner create the publication: psql "$SOURCE_OWNER_URL" -f sql/roles/source_role.sql (it publishes order_book_trades and pools), or set SLOTLINE_PUBLICATION to a publication that already covers both tables',
      },
    });
  }
  if (at.side === 'source' && /replication/i.test(message)) {
    return new SlotlineError('replication_privilege', problem, {
      cause: err,
      remedy: {
        ...at,
        fix: 'ALTER ROLE <source role> WITH REPLICATION (sql/roles/source_role.sql)',
      },
    });
  }
  if (at.side === 'sink') {
    return new SlotlineError('sink_privilege', problem, {
      cause: err,
      remedy: {
        ...at,
        fix: 'let the sink database\'s owner grant what setup needs: psql "$SINK_OWNER_URL" -f sql/roles/sink_role.sql (CREATE on the database, USAGE and CREATE on SLOTLINE_SINK_SCHEMA)',
      },
    });
  }
  return null;
}
