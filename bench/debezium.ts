/**
 * The Debezium side of the benchmark: Debezium 3.6.1's PostgreSQL connector
 * on the same backlog, each configuration on its own slot created before the
 * backlog was written (like slotline's catch-ups), one at a time.
 *
 * - embedded: our own program (bench/debezium/src/main/java) runs the
 *   Debezium engine with a handler that only counts the trades' change
 *   records: Debezium's decode and event-building rate, nothing written.
 * - Connect standalone (Kafka Connect 4.3's ConnectStandalone, the Debezium
 *   connector on its classpath) into the benchmark's broker, "defaults" and
 *   "tuned" (see workerProperties / connectorProperties): timed until the
 *   trades topic holds the whole backlog.
 *
 * bench/debezium/pom.xml names the artifacts; Maven compiles our program and
 * writes the runtime classpath to bench/debezium/target/classpath.txt
 * (git-ignored), again only when the pom or a source is newer.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { delimiter, join } from 'node:path';

export const DEBEZIUM_VERSION = '3.6.1.Final';
export const CONNECT_VERSION = '4.3.0';

/** What a Debezium run connects to on the source. */
export interface PgConn {
  host: string;
  port: string;
  user: string;
  password: string;
  dbname: string;
}

export function pgConn(url: string): PgConn {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: u.port || '5432',
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    dbname: decodeURIComponent(u.pathname.replace(/^\//, '')),
  };
}

/**
 * JVM options of every Debezium run: the heap and collector Kafka's
 * bin/connect-standalone.sh starts a worker with (KAFKA_HEAP_OPTS,
 * KAFKA_JVM_PERFORMANCE_OPTS), so peak RSS is what a user of the stock
 * scripts sees.
 */
export const JVM_OPTS = [
  '-Xms256M',
  '-Xmx2G',
  '-server',
  '-XX:+UseG1GC',
  '-XX:MaxGCPauseMillis=20',
  '-XX:InitiatingHeapOccupancyPercent=35',
  '-XX:+ExplicitGCInvokesConcurrent',
  '-XX:MaxInlineLevel=15',
  '-Djava.awt.headless=true',
  // slf4j-simple: INFO to stderr, and nothing chattier.
  '-Dorg.slf4j.simpleLogger.defaultLogLevel=info',
];

/** The connector settings every configuration shares: stream from an existing slot, no snapshot. */
export function commonConnectorProperties(
  c: PgConn,
  slot: string,
  publication: string,
  topicPrefix: string,
): Record<string, string> {
  return {
    'connector.class': 'io.debezium.connector.postgresql.PostgresConnector',
    'database.hostname': c.host,
    'database.port': c.port,
    'database.user': c.user,
    'database.password': c.password,
    'database.dbname': c.dbname,
    'topic.prefix': topicPrefix,
    'plugin.name': 'pgoutput',
    'slot.name': slot,
    'publication.name': publication,
    // The bench's publication already exists (slotline's setup made it): use it as it is.
    'publication.autocreate.mode': 'disabled',
    // Stream only, from the slot's position: the backlog is in the WAL after it.
    'snapshot.mode': 'no_data',
    'table.include.list': 'public.order_book_trades,public.pools',
  };
}

/** The embedded engine: offsets in memory (the run never restarts), the no-op handler counts. */
export function engineProperties(
  c: PgConn,
  slot: string,
  publication: string,
  topicPrefix: string,
): Record<string, string> {
  return {
    name: 'slotline-bench-embedded',
    ...commonConnectorProperties(c, slot, publication, topicPrefix),
    'offset.storage': 'org.apache.kafka.connect.storage.MemoryOffsetBackingStore',
    'offset.flush.interval.ms': '60000',
  };
}

export type ConnectFlavour = 'defaults' | 'tuned';

/**
 * The standalone worker. "defaults": Kafka's shipped
 * config/connect-standalone.properties (JSON converters with schemas, offsets
 * flushed every 10 s) and Connect's default producer (batch.size 16 KiB,
 * linger.ms 5, acks=all, no compression). "tuned": schemaless JSON (about a
 * third of the bytes per record), producer batch.size 512 KiB and linger.ms
 * 20, set as worker-level producer.* settings. Compression stays off in both,
 * as in slotline's own Kafka runs.
 */
export function workerProperties(
  flavour: ConnectFlavour,
  brokers: string,
  offsetsFile: string,
  restPort: number,
): Record<string, string> {
  const schemas = flavour === 'defaults' ? 'true' : 'false';
  const p: Record<string, string> = {
    'bootstrap.servers': brokers,
    'key.converter': 'org.apache.kafka.connect.json.JsonConverter',
    'value.converter': 'org.apache.kafka.connect.json.JsonConverter',
    'key.converter.schemas.enable': schemas,
    'value.converter.schemas.enable': schemas,
    'offset.storage.file.filename': offsetsFile,
    'offset.flush.interval.ms': '10000',
    listeners: `http://127.0.0.1:${restPort}`,
    // The bench creates the topics itself (the broker does not auto-create them).
    'topic.creation.enable': 'false',
  };
  if (flavour === 'tuned') {
    p['producer.batch.size'] = String(512 * 1024);
    p['producer.linger.ms'] = '20';
    p['producer.buffer.memory'] = String(64 * 1024 * 1024);
  }
  return p;
}

/**
 * The connector. "tuned" raises Debezium's own batching: max.batch.size 8192
 * records per poll (default 2048) and a queue of 32768 (default 8192).
 */
export function connectorProperties(
  flavour: ConnectFlavour,
  c: PgConn,
  slot: string,
  publication: string,
  topicPrefix: string,
): Record<string, string> {
  const p: Record<string, string> = {
    name: `slotline-bench-${flavour}`,
    'tasks.max': '1',
    ...commonConnectorProperties(c, slot, publication, topicPrefix),
  };
  if (flavour === 'tuned') {
    p['max.batch.size'] = '8192';
    p['max.queue.size'] = '32768';
  }
  return p;
}

/** A .properties file's text (keys and values escaped as java.util.Properties reads them). */
export function toProperties(p: Record<string, string>): string {
  const esc = (s: string, key: boolean) =>
    s
      .replace(/\\/g, '\\\\')
      .replace(/\n/g, '\\n')
      .replace(/\r/g, '\\r')
      .replace(/\t/g, '\\t')
      .replace(key ? /([=: #!])/g : /^([ #!])/, '\\$1');
  return Object.entries(p)
    .map(([k, v]) => `${esc(k, true)}=${esc(v, false)}\n`)
    .join('');
}

// ---- the embedded program's output ------------------------------------------------------

export type EngineEvent =
  | { event: 'task-started'; atMs: number }
  | {
      event: 'done';
      count: number;
      taskStartedAtMs: number;
      firstAtMs: number;
      lastAtMs: number;
      /** snapshot records seen (not counted); 0 when the run streamed only */
      snapshotReads: number;
    }
  | { event: 'failed'; message: string };

/** One line of EmbeddedNoop's stdout, or null for anything else (the log goes to stderr). */
export function parseEngineLine(line: string): EngineEvent | null {
  if (!line.startsWith('{"event":')) return null;
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  const num = (k: string) => (typeof o[k] === 'number' ? o[k] : NaN);
  switch (o['event']) {
    case 'task-started':
      return { event: 'task-started', atMs: num('atMs') };
    case 'done':
      return {
        event: 'done',
        count: num('count'),
        taskStartedAtMs: num('taskStartedAtMs'),
        firstAtMs: num('firstAtMs'),
        lastAtMs: num('lastAtMs'),
        snapshotReads: num('snapshotReads'),
      };
    case 'failed':
      return { event: 'failed', message: String(o['message'] ?? '') };
    default:
      return null;
  }
}

/**
 * The embedded run's timing: from the task's start (the analogue of
 * slotline's "replication started") to the last trade's record; and, as a
 * check, first record to last. Seconds.
 */
export function engineTiming(d: Extract<EngineEvent, { event: 'done' }>): {
  seconds: number;
  firstToLastSeconds: number;
} {
  const start = Number.isFinite(d.taskStartedAtMs) ? d.taskStartedAtMs : d.firstAtMs;
  return {
    seconds: (d.lastAtMs - start) / 1000,
    firstToLastSeconds: (d.lastAtMs - d.firstAtMs) / 1000,
  };
}

/** Kafka Connect's log line once the source task runs (WorkerSourceTask, Connect 4.x). */
export const CONNECT_TASK_STARTED = /Source task finished initialization and start/;

// ---- tools ------------------------------------------------------------------------------

function run(
  cmd: string,
  args: string[],
  timeoutMs: number,
): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { maxBuffer: 16 * 1024 * 1024, timeout: timeoutMs },
      (error, stdout, stderr) => {
        resolve({ ok: error === null, output: `${stdout}${stderr}`.trim() || String(error) });
      },
    );
  });
}

function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestSource(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * The classpath of the Debezium runs (our compiled program first), or the
 * reason there is none (no Java, no Maven, artifacts not resolvable).
 */
export async function debeziumClasspath(
  root: string,
): Promise<{ classpath: string } | { missing: string }> {
  const dir = join(root, 'bench', 'debezium');
  const pom = join(dir, 'pom.xml');
  const file = join(dir, 'target', 'classpath.txt');
  const classes = join(dir, 'target', 'classes');
  const java = await run('java', ['-version'], 30_000);
  if (!java.ok) return { missing: `no java on PATH (${java.output.split('\n')[0]})` };
  const fresh = async (): Promise<string | null> => {
    if (!existsSync(file) || !existsSync(join(classes, 'dev'))) return null;
    const built = statSync(file).mtimeMs;
    if (built < statSync(pom).mtimeMs || built < newestSource(join(dir, 'src'))) return null;
    const cp = (await readFile(file, 'utf8')).trim();
    if (cp === '' || !cp.split(delimiter).every((e) => existsSync(e))) return null;
    return `${classes}${delimiter}${cp}`;
  };
  const cached = await fresh();
  if (cached) return { classpath: cached };
  const mvn = await run('mvn', ['-v'], 60_000);
  if (!mvn.ok) return { missing: `no mvn on PATH (${mvn.output.split('\n')[0]})` };
  await rm(file, { force: true });
  const goals = [
    '-B',
    '-q',
    '-f',
    pom,
    'compile',
    'dependency:build-classpath',
    '-Dmdep.includeScope=runtime',
    `-Dmdep.outputFile=${file}`,
  ];
  let r = await run('mvn', ['-o', ...goals], 10 * 60_000);
  if (!r.ok) r = await run('mvn', goals, 20 * 60_000);
  if (!r.ok) {
    const last = r.output.split('\n').find((l) => l.includes('ERROR')) ?? r.output.split('\n')[0];
    return { missing: `Maven could not build bench/debezium (${last?.trim()})` };
  }
  const built = await fresh();
  return built ? { classpath: built } : { missing: 'Maven wrote no classpath for bench/debezium' };
}

/** A free TCP port on the loopback interface (Connect's REST listener, unused by the bench). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}
