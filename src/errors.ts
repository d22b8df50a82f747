/**
 * One base error with a stable `code` and a `retriable` flag. The retry loop
 * reads `retriable`; nothing else decides. Classes exist only for the cases an
 * operator must tell apart.
 */
export class SlotlineError extends Error {
  readonly code: string;
  readonly retriable: boolean;

  constructor(code: string, message: string, opts: { retriable?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.retriable = opts.retriable ?? false;
  }
}

export class ConfigError extends SlotlineError {
  constructor(message: string) {
    super('config_invalid', message);
  }
}

/** The source is not set up for logical replication (wal_level, privileges, tables). */
export class SourceSetupError extends SlotlineError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}

export class SlotMissingError extends SlotlineError {
  constructor(message: string) {
    super('slot_missing', message);
  }
}

export class SlotInvalidatedError extends SlotlineError {
  constructor(message: string) {
    super('slot_invalidated', message);
  }
}

/** Another process streams from the slot: a hot standby waits and retries. */
export class SlotInUseError extends SlotlineError {
  constructor(message: string, cause?: unknown) {
    super('slot_in_use', message, { retriable: true, cause });
  }
}

export class PublicationMissingError extends SlotlineError {
  constructor(message: string) {
    super('publication_missing', message);
  }
}

export class SinkSchemaError extends SlotlineError {
  constructor(message: string, cause?: unknown) {
    super('sink_schema_mismatch', message, { cause });
  }
}

export class AuthError extends SlotlineError {
  constructor(message: string, cause?: unknown) {
    super('auth_failed', message, { cause });
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
  constructor(message: string, cause?: unknown) {
    super('connection', message, { retriable: true, cause });
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

/**
 * Maps anything thrown at an I/O boundary to a SlotlineError. `where` names the
 * boundary ("source", "sink", "kafka") for the message.
 */
export function classifyError(err: unknown, where: string): SlotlineError {
  if (err instanceof SlotlineError) return err;
  const e = (err ?? {}) as PgErrorLike;
  const message = e.message ?? String(err);
  const code = e.code ?? '';
  if (code === '28P01' || code === '28000') {
    return new AuthError(`${where}: authentication failed: ${message}`, err);
  }
  if (code === '42704' && /replication slot .* does not exist/.test(message)) {
    // Dropped under a running connector: the same recovery as when found missing at start.
    return new SlotMissingError(
      `${where}: ${message} (dropped by someone, or the server was rebuilt). ` +
        'Recovery: run `slotline setup --resnapshot` (new slot, fresh snapshot), then `slotline run`',
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
      `${where}: ${message} (it fell further behind than max_slot_wal_keep_size allows). ` +
        'Recovery: run `slotline setup --resnapshot` (new slot, fresh snapshot), then `slotline run`',
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
