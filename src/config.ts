import { isIP } from 'node:net';
import { z } from 'zod';
import { ConfigError, PERCENT_ENCODE, type ConfigProblem, type Side } from './errors.js';
import { redactUrl } from './log.js';

/**
 * Every setting is a SLOTLINE_* environment variable, parsed once at start.
 * A bad value stops start-up with a message naming the variable. The README's
 * configuration table is generated from the descriptions here
 * (`slotline config --doc`), so this file is the single source of truth.
 */

const identifier = z
  .string()
  .regex(
    /^[A-Za-z_][A-Za-z0-9_]{0,62}$/,
    'must be an SQL identifier: letters, digits, _; at most 63 characters',
  );
const slotName = z
  .string()
  .regex(
    /^[a-z0-9_]{1,63}$/,
    'must be lower-case letters, digits and _, at most 63 characters (a PostgreSQL slot name)',
  );
const postgresUrl = z
  .string()
  .min(1, 'must not be empty')
  .refine((s) => {
    try {
      const u = new URL(s);
      return u.protocol === 'postgres:' || u.protocol === 'postgresql:';
    } catch {
      return false;
    }
  }, 'must be a postgres:// or postgresql:// URL');
const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'must be true or false' })
  .transform((s) => s === 'true' || s === '1' || s === 'yes');
/** Kafka's own rule for topic names (legal characters, at most 249 of them). */
const topicName = z
  .string()
  .regex(/^[A-Za-z0-9._-]{1,249}$/, 'must be a Kafka topic name: letters, digits, . _ -')
  .refine((s) => s !== '.' && s !== '..', 'must not be . or ..');

/** A host name, or an IPv4 or IPv6 address, to bind a server to. */
const listenHost = z
  .string()
  .refine(
    (s) =>
      isIP(s) !== 0 ||
      /^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/.test(s),
    'must be an IP address (0.0.0.0, ::, 127.0.0.1, ::1, …) or a host name',
  );

interface Setting<T extends z.ZodTypeAny> {
  schema: T;
  default?: string;
  description: string;
  /** Never shown: `slotline config` prints *** instead. */
  secret?: true;
}

function setting<T extends z.ZodTypeAny>(schema: T, description: string, def?: string): Setting<T> {
  return def === undefined ? { schema, description } : { schema, description, default: def };
}

function secret<T extends z.ZodTypeAny>(schema: T, description: string): Setting<T> {
  return { schema, description, secret: true };
}

export const SETTINGS = {
  SLOTLINE_SOURCE_URL: setting(
    postgresUrl,
    'Connection URL of the Ponder (source) database. The role needs REPLICATION and SELECT on the tables.',
  ),
  SLOTLINE_SINK_URL: setting(
    postgresUrl,
    'Connection URL of the TimescaleDB (or plain PostgreSQL) sink database.',
  ),
  SLOTLINE_SOURCE_SCHEMA: setting(
    identifier,
    'Schema of the Ponder tables on the source: one fixed deployment. Not with SLOTLINE_PONDER_VIEWS_SCHEMA.',
    'public',
  ),
  SLOTLINE_PONDER_VIEWS_SCHEMA: setting(
    identifier.optional(),
    "Follow Ponder redeploys: the schema Ponder's `--views-schema` maintains. slotline streams the deployment its views point at and, when a new deployment is ready and the views move to it, switches to it without a restart (see docs/ponder.md). Unset: stream SLOTLINE_SOURCE_SCHEMA.",
  ),
  SLOTLINE_PONDER_POLL_MS: setting(
    int(100, 3_600_000),
    'In follow mode, how often the views are read to notice a new deployment.',
    '5000',
  ),
  SLOTLINE_SINK_SCHEMA: setting(
    identifier,
    'Schema of `analytics_trades` and `pools` on the sink.',
    'public',
  ),
  SLOTLINE_SLOT: setting(slotName, 'Logical replication slot name.', 'slotline'),
  SLOTLINE_PUBLICATION: setting(
    identifier,
    'Publication name (covers `order_book_trades` and `pools`).',
    'slotline',
  ),
  SLOTLINE_POOL_JOIN_COLUMN: setting(
    z.enum(['order_book', 'id'], { message: 'must be order_book or id' }),
    "Column of `pools` that a trade's `pool_id` refers to.",
    'order_book',
  ),
  SLOTLINE_KAFKA_BROKERS: setting(
    z.string().optional(),
    'Comma-separated Kafka brokers (host:port); unset disables Kafka entirely. When set, the slot is acknowledged only as far as Kafka has acknowledged.',
  ),
  SLOTLINE_KAFKA_CLIENT_ID: setting(
    z.string().min(1).max(255),
    'Kafka client id (shows in broker logs and quotas).',
    'slotline',
  ),
  SLOTLINE_KAFKA_TOPIC_TRADES: setting(
    topicName,
    'Topic of `order_book_trades` changes, keyed by pool id (`{"pool_id": …}`), so each pool keeps its order. Must not be compacted.',
    'ponder.order_book_trades',
  ),
  SLOTLINE_KAFKA_TOPIC_POOLS: setting(
    topicName,
    'Topic of `pools` changes, keyed by pool id (`{"id": …}`); may be compacted.',
    'ponder.pools',
  ),
  SLOTLINE_KAFKA_DELIVERY: setting(
    z.enum(['exactly-once', 'at-least-once'], { message: 'must be exactly-once or at-least-once' }),
    "`exactly-once`: Kafka transactions carry the changes together with the connector's progress, so a `read_committed` consumer sees every change once, also after a crash or a standby taking over (needs brokers with transactions, and WRITE/DESCRIBE on the transactional id). `at-least-once`: plain idempotent sends; a crash may send the changes after the last checkpoint again.",
    'exactly-once',
  ),
  SLOTLINE_KAFKA_TOPIC_PROGRESS: setting(
    topicName.optional(),
    "Compacted one-partition topic of the connector's progress (exactly-once): the LSN each transaction committed up to, written in the same Kafka transaction as its changes. Default: `<SLOTLINE_KAFKA_TOPIC_TRADES>.progress`.",
  ),
  SLOTLINE_KAFKA_TRANSACTIONAL_ID: setting(
    z.string().min(1).max(255).optional(),
    'transactional.id of the exactly-once producer; every replica of one connector must use the same, so a standby that takes over fences the old leader. Default: `slotline.<SLOTLINE_SLOT>.<SLOTLINE_KAFKA_TOPIC_TRADES>`.',
  ),
  SLOTLINE_KAFKA_CREATE_TOPICS: setting(
    bool,
    'Create missing topics at connect (needs the CREATE ACL). Existing topics are used as they are.',
    'true',
  ),
  SLOTLINE_KAFKA_TOPIC_PARTITIONS: setting(
    int(1, 10_000),
    'Partitions of topics the connector creates.',
    '6',
  ),
  SLOTLINE_KAFKA_REPLICATION_FACTOR: setting(
    int(1, 32_767).optional(),
    "Replication factor of topics the connector creates; unset uses the brokers' `default.replication.factor`.",
  ),
  SLOTLINE_KAFKA_TOMBSTONES: setting(
    bool,
    'Follow each pool delete with a tombstone (null value), for compacted pool topics. Trade deletes never get one: trades are keyed by pool, and a tombstone would erase the whole pool.',
    'false',
  ),
  SLOTLINE_KAFKA_COMPRESSION: setting(
    z.enum(['none', 'gzip'], {
      message:
        'must be none or gzip (snappy, lz4 and zstd need codec packages slotline does not ship)',
    }),
    "Compression of the record batches sent to Kafka. `gzip` (kafkajs' built-in codec) sends several times fewer bytes (the envelopes are JSON; hashes and ids compress least) for CPU in the connector and in the brokers, which decompress to validate: worth it when the network or the brokers' disks are the limit, not when CPU is.",
    'none',
  ),
  SLOTLINE_KAFKA_SSL: setting(bool, 'Connect to the brokers with TLS.', 'false'),
  SLOTLINE_KAFKA_SSL_CA_FILE: setting(
    z.string().min(1).optional(),
    "PEM file of the CA that signed the brokers' certificates (default: the system CAs). Needs SLOTLINE_KAFKA_SSL=true.",
  ),
  SLOTLINE_KAFKA_SASL_MECHANISM: setting(
    z
      .enum(['plain', 'scram-sha-256', 'scram-sha-512'], {
        message: 'must be plain, scram-sha-256 or scram-sha-512',
      })
      .optional(),
    'SASL mechanism; unset: no SASL. Use with SLOTLINE_KAFKA_SSL=true unless the network is trusted (PLAIN sends the password as is).',
  ),
  SLOTLINE_KAFKA_SASL_USERNAME: setting(
    z.string().min(1).optional(),
    'SASL user name (required with a mechanism).',
  ),
  SLOTLINE_KAFKA_SASL_PASSWORD: secret(
    z.string().min(1).optional(),
    'SASL password (required with a mechanism); a secret, never logged.',
  ),
  SLOTLINE_HTTP_PORT: setting(
    int(0, 65535),
    'Port of the HTTP server (health, metrics, status, admin); 0 disables it.',
    '8080',
  ),
  SLOTLINE_HTTP_HOST: setting(
    listenHost,
    'Address the HTTP server binds to: `0.0.0.0` all IPv4 interfaces (what a pod needs), `::` all interfaces, `127.0.0.1` this machine only.',
    '0.0.0.0',
  ),
  SLOTLINE_ADMIN_PORT: setting(
    int(0, 65535),
    'Port of a second HTTP listener that alone serves the admin actions (every route that needs the token); 0: they share SLOTLINE_HTTP_PORT. Keeps admin off the port Prometheus scrapes, so a NetworkPolicy can tell them apart.',
    '0',
  ),
  SLOTLINE_ADVERTISE_URL: setting(
    z
      .string()
      .regex(
        /^https?:\/\/[^/?#\s]+\/?$/,
        'must be http(s)://host:port with no path, e.g. http://10.0.0.7:8081',
      )
      .optional(),
    "Where the other replicas reach this one's admin routes while it leads (a standby forwards admin and /api/sync/* calls there); default http://<hostname>:<admin port>. In Kubernetes: http://$(POD_IP):<port>.",
  ),
  SLOTLINE_FORWARD_TIMEOUT_MS: setting(
    int(100, 3_600_000),
    "Longest a standby waits for the leader's answer to a forwarded call (connecting gives up after 3 s at most).",
    '60000',
  ),
  SLOTLINE_DEAD_PEER_TIMEOUT_MS: setting(
    int(2000, 600_000),
    "How soon a database server ends a session of this connector whose peer went silent (node lost, partition): the leader's lock session is a lease renewed every quarter of it (idle_session_timeout), the replication connection's wal_sender_timeout is this, and those two and the sink's write sessions get server-side TCP keepalives and tcp_user_timeout to match. A standby then takes over about this long after the leader is cut off (docs/deployment.md).",
    '10000',
  ),
  SLOTLINE_ADMIN_TOKEN: secret(
    // Trimmed: a token read from a secret file usually ends with a newline, and
    // HTTP clients never send whitespace around a header value, so it could never match.
    z
      .string()
      .transform((s) => s.trim())
      .pipe(
        z
          .string()
          .min(16, 'must be at least 16 characters')
          .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces (a Bearer token)'),
      )
      .optional(),
    'Bearer token for admin actions; unset disables them. Whitespace around it (the newline a secret file ends with) is ignored.',
  ),
  SLOTLINE_ADMIN_URL: setting(
    z.string().url('must be a URL, e.g. http://slotline:8080').optional(),
    'Where `slotline status`, `reset-lsn`, `backfill` and `dead-letters` reach the running connector; default http://127.0.0.1:$SLOTLINE_ADMIN_PORT (or $SLOTLINE_HTTP_PORT when that is 0; $SLOTLINE_HTTP_HOST instead of 127.0.0.1 when it names one address).',
  ),
  SLOTLINE_LOG_LEVEL: setting(
    z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
      message: 'must be one of fatal, error, warn, info, debug, trace, silent',
    }),
    'pino log level. Row payloads are only logged at debug and below.',
    'info',
  ),
  SLOTLINE_BATCH_MAX_ROWS: setting(
    int(1, 1_000_000),
    'Most changes written to the sink in one transaction. An idle sink takes whatever is waiting, so batches grow only under load.',
    '5000',
  ),
  SLOTLINE_INFLIGHT_MAX_ROWS: setting(
    int(1, 100_000_000),
    'Changes decoded but not yet durable in every sink; above it the connector stops reading the replication socket.',
    '10000',
  ),
  SLOTLINE_INFLIGHT_MAX_BYTES: setting(
    int(1024, 2 ** 40),
    'Same bound in bytes of what the changes become: decoded values plus the symbol each trade carries.',
    String(64 * 1024 * 1024),
  ),
  SLOTLINE_MAX_ROW_BYTES: setting(
    int(1024, 2 ** 30),
    "Largest change carried, estimated once enriched and serialized (a trade carries its pool's symbol); a larger one becomes a row_too_large dead letter.",
    String(512 * 1024),
  ),
  SLOTLINE_STATUS_INTERVAL_MS: setting(
    int(100, 3_600_000),
    "Interval of standby status updates to the server; never more than a third of SLOTLINE_DEAD_PEER_TIMEOUT_MS, so the connection's wal_sender_timeout never ends a live connector.",
    '10000',
  ),
  SLOTLINE_ACK_INTERVAL_MS: setting(
    int(0, 3_600_000),
    'Least time between two acknowledgements sent because a sink advanced (status updates also go out every SLOTLINE_STATUS_INTERVAL_MS).',
    '200',
  ),
  SLOTLINE_IDLE_ACK_INTERVAL_MS: setting(
    int(0, 3_600_000),
    "When nothing is in flight, the server's WAL end is checkpointed and acknowledged at most this often, so an idle slot holds no WAL.",
    '1000',
  ),
  SLOTLINE_STANDBY_POLL_MS: setting(
    int(50, 600_000),
    'How often a hot standby tries to take over the slot (an advisory lock on the source held by the leader), and a new leader tries a slot that the old one still holds.',
    '1000',
  ),
  SLOTLINE_HEARTBEAT_INTERVAL_MS: setting(
    int(0, 3_600_000),
    'Interval of heartbeat messages (pg_logical_emit_message) written to the source; 0 disables them.',
    '10000',
  ),
  SLOTLINE_RETRY_INITIAL_MS: setting(
    int(1, 600_000),
    'First delay of the capped exponential backoff (with jitter) for connections and sink writes.',
    '500',
  ),
  SLOTLINE_RETRY_MAX_MS: setting(int(1, 3_600_000), 'Cap of that backoff.', '30000'),
  SLOTLINE_SHUTDOWN_TIMEOUT_MS: setting(
    int(0, 600_000),
    'On SIGTERM, how long to flush and acknowledge before exiting anyway.',
    '25000',
  ),
  SLOTLINE_LIVENESS_TIMEOUT_MS: setting(
    int(1_000, 86_400_000),
    'GET /healthz fails when the connector reads the slot and hears nothing from the server this long. A pause (an operator, a full queue while a sink is down) never fails it.',
    '300000',
  ),
  SLOTLINE_AUTO_SETUP: setting(
    bool,
    "`run` first applies `setup` (idempotent). Turn off when the connector's role may not create publications or DDL.",
    'true',
  ),
  SLOTLINE_SNAPSHOT: setting(
    z.enum(['initial', 'never'], { message: 'must be initial or never' }),
    "On first start, copy existing rows in the slot's exported snapshot (`initial`) or stream only new changes (`never`).",
    'initial',
  ),
  SLOTLINE_DEAD_LETTER_RETENTION_DAYS: setting(
    int(0, 36_500),
    'Resolved and discarded dead letters are purged after this many days (checked hourly); pending ones are never purged.',
    '30',
  ),
  SLOTLINE_VERIFY_INTERVAL_MS: setting(
    int(0, 7 * 86_400_000),
    'How often the connector compares source and sink per time bucket (row count and hash, as `slotline verify`); 0 disables it. Results in /status and the `slotline_verify_*` metrics.',
    '0',
  ),
  SLOTLINE_VERIFY_BUCKET_SECONDS: setting(
    int(60, 366 * 86_400),
    'Bucket of trade time that verify compares (and repairs) as a unit.',
    '3600',
  ),
  SLOTLINE_VERIFY_LOOKBACK_SECONDS: setting(
    int(0, 100 * 366 * 86_400),
    'How far back in trade time the periodic verify and `POST /api/sync/run` look when no `from` is given; 0: all history.',
    String(7 * 86_400),
  ),
  SLOTLINE_VERIFY_REPAIR: setting(
    bool,
    'The periodic verify also repairs the buckets that differ (removes sink rows gone at the source, backfills the bucket).',
    'false',
  ),
  SLOTLINE_COLUMNSTORE_AFTER_SECONDS: setting(
    z
      .string()
      .regex(/^\d+$/, 'must be a whole number')
      .transform(Number)
      .pipe(
        z
          .number()
          .int()
          .max(100 * 366 * 86_400)
          .refine((n) => n === 0 || n >= 3_600, 'must be 0 (no policy) or at least 3600'),
      ),
    'TimescaleDB: chunks of `analytics_trades` whose trades are all older than this move to the columnstore (compressed, segmented by pool, ordered by time), applied by `setup`; 0: no columnstore policy. The default is far beyond the deepest reorg Ponder undoes (minutes); see docs/timescaledb.md.',
    String(7 * 86_400),
  ),
  SLOTLINE_APPLY_TRUNCATE: setting(
    bool,
    'Apply TRUNCATE of a source table to its sink table.',
    'true',
  ),
} as const;

type Settings = typeof SETTINGS;
type Parsed = { [K in keyof Settings]: z.output<Settings[K]['schema']> };

export interface Config {
  sourceUrl: string;
  sinkUrl: string;
  /** The fixed deployment schema; in follow mode the sink's current one is resolved at run time. */
  sourceSchema: string;
  /** SLOTLINE_PONDER_VIEWS_SCHEMA: follow mode when set. */
  ponderViewsSchema: string | null;
  ponderPollMs: number;
  sinkSchema: string;
  slot: string;
  publication: string;
  poolJoinColumn: 'order_book' | 'id';
  kafkaBrokers: string[] | null;
  kafkaClientId: string;
  kafkaTopicTrades: string;
  kafkaTopicPools: string;
  kafkaDelivery: 'exactly-once' | 'at-least-once';
  /** The exactly-once progress topic (default: the trades topic + `.progress`). */
  kafkaTopicProgress: string;
  /** The exactly-once producer's transactional.id (default: derived from the slot and the trades topic). */
  kafkaTransactionalId: string;
  kafkaCreateTopics: boolean;
  kafkaTopicPartitions: number;
  /** null: the brokers' default.replication.factor */
  kafkaReplicationFactor: number | null;
  kafkaTombstones: boolean;
  kafkaCompression: 'none' | 'gzip';
  kafkaSsl: boolean;
  kafkaSslCaFile: string | null;
  kafkaSasl: KafkaSasl | null;
  httpPort: number;
  /** 0: admin routes share httpPort */
  adminPort: number;
  /** null: http://<hostname>:<admin port> */
  advertiseUrl: string | null;
  forwardTimeoutMs: number;
  deadPeerTimeoutMs: number;
  httpHost: string;
  adminToken: string | null;
  adminUrl: string | null;
  logLevel: Parsed['SLOTLINE_LOG_LEVEL'];
  batchMaxRows: number;
  inflightMaxRows: number;
  inflightMaxBytes: number;
  maxRowBytes: number;
  statusIntervalMs: number;
  ackIntervalMs: number;
  idleAckIntervalMs: number;
  standbyPollMs: number;
  heartbeatIntervalMs: number;
  retryInitialMs: number;
  retryMaxMs: number;
  shutdownTimeoutMs: number;
  livenessTimeoutMs: number;
  autoSetup: boolean;
  snapshot: 'initial' | 'never';
  applyTruncate: boolean;
  deadLetterRetentionDays: number;
  verifyIntervalMs: number;
  verifyBucketSeconds: number;
  verifyLookbackSeconds: number;
  verifyRepair: boolean;
  /** 0: no columnstore policy */
  columnstoreAfterSeconds: number;
}

export interface KafkaSasl {
  mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512';
  username: string;
  password: string;
}

/** Parses the environment; throws ConfigError listing every bad variable by name. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  return toConfig(parseSettings(env));
}

/** Every setting parsed by its schema, and the combinations checked. */
function parseSettings(env: NodeJS.ProcessEnv): Parsed {
  const problems: ConfigProblem[] = [];
  const out: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(SETTINGS) as [keyof Settings, Setting<z.ZodTypeAny>][]) {
    const raw = env[name];
    const value = raw === undefined || raw === '' ? s.default : raw;
    if (value === undefined && !s.schema.safeParse(undefined).success) {
      problems.push({ variable: name, message: `${name} is required: ${s.description}` });
      continue;
    }
    const mistake = value === undefined ? null : (MISTAKES[name]?.(value) ?? null);
    if (mistake) {
      problems.push(mistake);
      continue;
    }
    const r = s.schema.safeParse(value);
    if (!r.success) {
      const shown =
        name === 'SLOTLINE_ADMIN_TOKEN' || name.endsWith('_URL') || name.endsWith('_PASSWORD')
          ? '(value hidden)'
          : JSON.stringify(value);
      problems.push({
        variable: name,
        message: `${name} ${shown}: ${r.error.issues.map((i) => i.message).join('; ')}`,
      });
      continue;
    }
    out[name] = r.data;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const p = out as Parsed;
  if (p.SLOTLINE_RETRY_MAX_MS < p.SLOTLINE_RETRY_INITIAL_MS) {
    throw new ConfigError(
      'invalid configuration:\n  SLOTLINE_RETRY_MAX_MS must be at least SLOTLINE_RETRY_INITIAL_MS',
    );
  }
  if (p.SLOTLINE_ADMIN_PORT !== 0 && p.SLOTLINE_ADMIN_PORT === p.SLOTLINE_HTTP_PORT) {
    throw new ConfigError(
      'invalid configuration:\n  SLOTLINE_ADMIN_PORT must differ from SLOTLINE_HTTP_PORT (or be 0 to share it)',
    );
  }
  if (p.SLOTLINE_INFLIGHT_MAX_ROWS < p.SLOTLINE_BATCH_MAX_ROWS) {
    throw new ConfigError(
      'invalid configuration:\n  SLOTLINE_INFLIGHT_MAX_ROWS must be at least SLOTLINE_BATCH_MAX_ROWS',
    );
  }
  if (p.SLOTLINE_PONDER_VIEWS_SCHEMA !== undefined && (env.SLOTLINE_SOURCE_SCHEMA ?? '') !== '') {
    throw new ConfigError([
      {
        variable: 'SLOTLINE_PONDER_VIEWS_SCHEMA',
        code: 'source_schema_conflict',
        message:
          'SLOTLINE_SOURCE_SCHEMA and SLOTLINE_PONDER_VIEWS_SCHEMA exclude each other: one fixed deployment schema, or follow the deployment the views point at',
        remedy: {
          side: 'source',
          variable: 'SLOTLINE_PONDER_VIEWS_SCHEMA',
          fix: 'unset SLOTLINE_SOURCE_SCHEMA to follow redeploys, or unset SLOTLINE_PONDER_VIEWS_SCHEMA to stream one fixed schema',
        },
      },
    ]);
  }
  const kafkaProblems = kafkaCombinations(p);
  if (kafkaProblems.length > 0)
    throw new ConfigError(`invalid configuration:\n  ${kafkaProblems.join('\n  ')}`);
  return p;
}

/**
 * Mistakes that pass (or fail) a setting's schema for a reason an operator
 * would not guess, told with a code and a fix before the schema is asked.
 */
const MISTAKES: Partial<Record<keyof Settings, (value: string) => ConfigProblem | null>> = {
  SLOTLINE_SOURCE_URL: (v) => urlMistake('SLOTLINE_SOURCE_URL', 'source', v),
  SLOTLINE_SINK_URL: (v) => urlMistake('SLOTLINE_SINK_URL', 'sink', v),
  SLOTLINE_SINK_SCHEMA: systemSchema,
};

/**
 * A password with an unencoded reserved character still parses as a URL, but
 * another one: after a `#` everything is a fragment (the host becomes a piece
 * of the password, hence `getaddrinfo ENOTFOUND`), after a `/` or `?` the rest
 * is the database name or parameters. No part of the value is echoed: it may be
 * the password.
 */
export function urlMistake(variable: string, side: Side, value: string): ConfigProblem | null {
  let found: string | null = null;
  let url: URL | null = null;
  try {
    url = new URL(value);
  } catch {
    // The schema says it is no URL; say why when an unencoded character is the likely cause.
    if (/^postgres(ql)?:\/\/[^@]*[#?/%][^@]*@/i.test(value))
      found = 'cannot be parsed: its user name or password holds a reserved character';
  }
  if (url && /^postgres(ql)?:$/.test(url.protocol)) {
    if (url.hash !== '')
      found =
        "holds a '#': everything after it is dropped, so the host, port and database come out wrong (a '#' in the password)";
    else if (/@/.test(url.pathname + url.search))
      found =
        "has an '@' in its database name or parameters: a '/' or '?' in the password ended the host part early";
    else if (!decodes(url.username) || !decodes(url.password))
      found = "has a '%' in its user name or password that is not followed by two hex digits";
  }
  if (found === null) return null;
  return {
    variable,
    code: 'url_unencoded_character',
    message: `${variable} (value hidden): the URL ${found}`,
    remedy: {
      side,
      variable,
      fix: `percent-encode the password (and user name) in ${variable}: ${PERCENT_ENCODE}; node -e 'console.log(encodeURIComponent(process.argv[1]))' 'the password' prints it encoded`,
    },
  };
}

function decodes(s: string): boolean {
  try {
    decodeURIComponent(s);
    return true;
  } catch {
    return false;
  }
}

/** PostgreSQL reserves pg_* and information_schema; the sink tables cannot live there. */
function systemSchema(value: string): ConfigProblem | null {
  if (!/^pg_/.test(value) && value !== 'information_schema') return null;
  return {
    variable: 'SLOTLINE_SINK_SCHEMA',
    code: 'sink_schema_reserved',
    message: `SLOTLINE_SINK_SCHEMA ${JSON.stringify(value)}: is a system schema of PostgreSQL (pg_* and information_schema are reserved)`,
    remedy: {
      side: 'sink',
      variable: 'SLOTLINE_SINK_SCHEMA',
      fix: 'choose a schema of your own, e.g. SLOTLINE_SINK_SCHEMA=analytics, or leave it unset for public',
    },
  };
}

function toConfig(p: Parsed): Config {
  const brokers = p.SLOTLINE_KAFKA_BROKERS?.split(',')
    .map((b) => b.trim())
    .filter((b) => b.length > 0);
  return {
    sourceUrl: p.SLOTLINE_SOURCE_URL,
    sinkUrl: p.SLOTLINE_SINK_URL,
    sourceSchema: p.SLOTLINE_SOURCE_SCHEMA,
    ponderViewsSchema: p.SLOTLINE_PONDER_VIEWS_SCHEMA ?? null,
    ponderPollMs: p.SLOTLINE_PONDER_POLL_MS,
    sinkSchema: p.SLOTLINE_SINK_SCHEMA,
    slot: p.SLOTLINE_SLOT,
    publication: p.SLOTLINE_PUBLICATION,
    poolJoinColumn: p.SLOTLINE_POOL_JOIN_COLUMN,
    kafkaBrokers: brokers && brokers.length > 0 ? brokers : null,
    kafkaClientId: p.SLOTLINE_KAFKA_CLIENT_ID,
    kafkaTopicTrades: p.SLOTLINE_KAFKA_TOPIC_TRADES,
    kafkaTopicPools: p.SLOTLINE_KAFKA_TOPIC_POOLS,
    kafkaDelivery: p.SLOTLINE_KAFKA_DELIVERY,
    kafkaTopicProgress: progressTopic(p),
    kafkaTransactionalId:
      p.SLOTLINE_KAFKA_TRANSACTIONAL_ID ??
      `slotline.${p.SLOTLINE_SLOT}.${p.SLOTLINE_KAFKA_TOPIC_TRADES}`,
    kafkaCreateTopics: p.SLOTLINE_KAFKA_CREATE_TOPICS,
    kafkaTopicPartitions: p.SLOTLINE_KAFKA_TOPIC_PARTITIONS,
    kafkaReplicationFactor: p.SLOTLINE_KAFKA_REPLICATION_FACTOR ?? null,
    kafkaTombstones: p.SLOTLINE_KAFKA_TOMBSTONES,
    kafkaCompression: p.SLOTLINE_KAFKA_COMPRESSION,
    kafkaSsl: p.SLOTLINE_KAFKA_SSL,
    kafkaSslCaFile: p.SLOTLINE_KAFKA_SSL_CA_FILE ?? null,
    kafkaSasl:
      p.SLOTLINE_KAFKA_SASL_MECHANISM === undefined
        ? null
        : {
            mechanism: p.SLOTLINE_KAFKA_SASL_MECHANISM,
            username: p.SLOTLINE_KAFKA_SASL_USERNAME as string,
            password: p.SLOTLINE_KAFKA_SASL_PASSWORD as string,
          },
    httpPort: p.SLOTLINE_HTTP_PORT,
    adminPort: p.SLOTLINE_ADMIN_PORT,
    advertiseUrl: p.SLOTLINE_ADVERTISE_URL ?? null,
    forwardTimeoutMs: p.SLOTLINE_FORWARD_TIMEOUT_MS,
    deadPeerTimeoutMs: p.SLOTLINE_DEAD_PEER_TIMEOUT_MS,
    httpHost: p.SLOTLINE_HTTP_HOST,
    adminToken: p.SLOTLINE_ADMIN_TOKEN ?? null,
    adminUrl: p.SLOTLINE_ADMIN_URL ?? null,
    logLevel: p.SLOTLINE_LOG_LEVEL,
    batchMaxRows: p.SLOTLINE_BATCH_MAX_ROWS,
    inflightMaxRows: p.SLOTLINE_INFLIGHT_MAX_ROWS,
    inflightMaxBytes: p.SLOTLINE_INFLIGHT_MAX_BYTES,
    maxRowBytes: p.SLOTLINE_MAX_ROW_BYTES,
    statusIntervalMs: p.SLOTLINE_STATUS_INTERVAL_MS,
    ackIntervalMs: p.SLOTLINE_ACK_INTERVAL_MS,
    idleAckIntervalMs: p.SLOTLINE_IDLE_ACK_INTERVAL_MS,
    standbyPollMs: p.SLOTLINE_STANDBY_POLL_MS,
    heartbeatIntervalMs: p.SLOTLINE_HEARTBEAT_INTERVAL_MS,
    retryInitialMs: p.SLOTLINE_RETRY_INITIAL_MS,
    retryMaxMs: p.SLOTLINE_RETRY_MAX_MS,
    shutdownTimeoutMs: p.SLOTLINE_SHUTDOWN_TIMEOUT_MS,
    livenessTimeoutMs: p.SLOTLINE_LIVENESS_TIMEOUT_MS,
    autoSetup: p.SLOTLINE_AUTO_SETUP,
    snapshot: p.SLOTLINE_SNAPSHOT,
    applyTruncate: p.SLOTLINE_APPLY_TRUNCATE,
    deadLetterRetentionDays: p.SLOTLINE_DEAD_LETTER_RETENTION_DAYS,
    verifyIntervalMs: p.SLOTLINE_VERIFY_INTERVAL_MS,
    verifyBucketSeconds: p.SLOTLINE_VERIFY_BUCKET_SECONDS,
    verifyLookbackSeconds: p.SLOTLINE_VERIFY_LOOKBACK_SECONDS,
    verifyRepair: p.SLOTLINE_VERIFY_REPAIR,
    columnstoreAfterSeconds: p.SLOTLINE_COLUMNSTORE_AFTER_SECONDS,
  };
}

/** Kafka settings that only make sense together; each problem names its variables. */
function kafkaCombinations(p: Parsed): string[] {
  const problems: string[] = [];
  const mechanism = p.SLOTLINE_KAFKA_SASL_MECHANISM;
  if (mechanism !== undefined) {
    if (p.SLOTLINE_KAFKA_SASL_USERNAME === undefined)
      problems.push(`SLOTLINE_KAFKA_SASL_USERNAME is required with SLOTLINE_KAFKA_SASL_MECHANISM`);
    if (p.SLOTLINE_KAFKA_SASL_PASSWORD === undefined)
      problems.push(`SLOTLINE_KAFKA_SASL_PASSWORD is required with SLOTLINE_KAFKA_SASL_MECHANISM`);
  } else if (
    p.SLOTLINE_KAFKA_SASL_USERNAME !== undefined ||
    p.SLOTLINE_KAFKA_SASL_PASSWORD !== undefined
  ) {
    problems.push(
      'SLOTLINE_KAFKA_SASL_USERNAME/SLOTLINE_KAFKA_SASL_PASSWORD need SLOTLINE_KAFKA_SASL_MECHANISM (plain, scram-sha-256 or scram-sha-512)',
    );
  }
  if (p.SLOTLINE_KAFKA_SSL_CA_FILE !== undefined && !p.SLOTLINE_KAFKA_SSL)
    problems.push('SLOTLINE_KAFKA_SSL_CA_FILE needs SLOTLINE_KAFKA_SSL=true');
  if (p.SLOTLINE_KAFKA_TOPIC_TRADES === p.SLOTLINE_KAFKA_TOPIC_POOLS)
    problems.push('SLOTLINE_KAFKA_TOPIC_TRADES and SLOTLINE_KAFKA_TOPIC_POOLS must differ');
  const progress = progressTopic(p);
  if (p.SLOTLINE_KAFKA_DELIVERY !== 'exactly-once') return problems;
  if (progress === p.SLOTLINE_KAFKA_TOPIC_TRADES || progress === p.SLOTLINE_KAFKA_TOPIC_POOLS)
    problems.push('SLOTLINE_KAFKA_TOPIC_PROGRESS must differ from the trades and pools topics');
  else if (progress.length > 249)
    problems.push(
      `the progress topic ${progress} is longer than Kafka allows (249): set SLOTLINE_KAFKA_TOPIC_PROGRESS`,
    );
  return problems;
}

function progressTopic(p: Parsed): string {
  return p.SLOTLINE_KAFKA_TOPIC_PROGRESS ?? `${p.SLOTLINE_KAFKA_TOPIC_TRADES}.progress`;
}

/** The configuration table for the README. */
export function configMarkdown(): string {
  const rows = Object.entries(SETTINGS).map(
    ([name, s]) =>
      `| \`${name}\` | ${'default' in s && s.default !== undefined ? `\`${s.default}\`` : '—'} | ${s.description} |`,
  );
  return ['| variable | default | meaning |', '| --- | --- | --- |', ...rows].join('\n');
}

/** One line of `slotline config`: a setting's value as `run` would take it, secrets hidden. */
export interface EffectiveSetting {
  name: string;
  /** null: not set and no default */
  value: string | null;
  from: 'environment' | 'default' | 'unset';
}

/**
 * What `slotline config` prints: every setting's value as `run` would take it
 * from `env`, with secrets hidden (secret settings entirely; passwords and
 * token-like parameters of URLs). Does not validate: loadConfig does.
 */
export function effectiveSettings(env: NodeJS.ProcessEnv): EffectiveSetting[] {
  return (Object.entries(SETTINGS) as [string, Setting<z.ZodTypeAny>][]).map(([name, s]) => {
    const raw = env[name];
    const set = raw !== undefined && raw !== '';
    const value = set ? raw : (s.default ?? null);
    return {
      name,
      value: value === null ? null : shownValue(name, s, value),
      from: set ? 'environment' : s.default !== undefined ? 'default' : 'unset',
    };
  });
}

function shownValue(name: string, s: Setting<z.ZodTypeAny>, value: string): string {
  if (s.secret) return '***';
  // A URL that does not parse is shown as such: it may hold a password.
  if (name.endsWith('_URL')) return redactUrl(value);
  return value;
}

/** `slotline config`: the effective settings as an environment file (secrets hidden). */
export function effectiveConfigText(env: NodeJS.ProcessEnv): string {
  const rows = effectiveSettings(env);
  const width = Math.max(...rows.map((r) => r.name.length + 1 + quoted(r.value ?? '').length));
  return rows
    .map((r) => {
      const line = `${r.name}=${quoted(r.value ?? '')}`;
      const note =
        r.from === 'default'
          ? 'default'
          : r.from === 'unset'
            ? SETTINGS[r.name as keyof Settings].schema.safeParse(undefined).success
              ? 'not set'
              : 'required, not set'
            : null;
      return note === null ? line : `${line.padEnd(Math.min(width, 48))}  # ${note}`;
    })
    .join('\n');
}

/** Quotes a value that a shell or an env file would otherwise split or trim. */
function quoted(v: string): string {
  return /^[A-Za-z0-9_@%+=:,./*-]*$/.test(v) ? v : JSON.stringify(v);
}
