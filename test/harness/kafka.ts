/**
 * A real single-node Apache Kafka broker (KRaft, combined broker+controller) for the
 * integration tests, started from the jars that test/kafka/pom.xml resolves.
 *
 *   await using kafka = await startKafka();
 *   new Kafka({ brokers: [kafka.brokers] });
 *
 * With SLOTLINE_TEST_KAFKA_BROKERS set (e.g. '127.0.0.1:9092'), startKafka() returns a
 * handle to that existing broker instead; stop(), start() and kill() then throw.
 *
 * The JVM is killed when this Node process exits: by an 'exit' hook, and, for deaths that
 * skip it (SIGKILL, a crash), by a tiny `sh` watchdog that reads a pipe from this process
 * and kills the broker when the pipe closes.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { kafkaClasspath } from './kafka-classpath.js';

export interface KafkaBroker extends AsyncDisposable {
  /** Bootstrap servers for clients, e.g. '127.0.0.1:40123'. */
  readonly brokers: string;
  /** True when SLOTLINE_TEST_KAFKA_BROKERS points at a broker this harness did not start. */
  readonly external: boolean;
  /** The broker JVM's stdout/stderr (undefined for an external broker). */
  readonly logFile: string | undefined;
  /** Graceful shutdown (SIGTERM); resolves once the JVM has exited. No-op when stopped. */
  stop(): Promise<void>;
  /** Starts the broker again on the same ports and data directory; waits until it serves. */
  start(): Promise<void>;
  /** SIGKILL, no shutdown; start() afterwards recovers the logs like after a crash. */
  kill(): void;
  /** stop() (kill() if that fails), then removes the temporary directory it created. */
  [Symbol.asyncDispose](): Promise<void>;
}

export interface StartKafkaOptions {
  /**
   * Directory for this broker: server.properties, data/ (Kafka's log.dirs) and broker.log
   * (the JVM's output). Created if missing, kept afterwards; it must not hold an already
   * formatted broker. Default: a fresh temporary directory, removed on dispose.
   */
  logDir?: string;
}

const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;
const POLL_MS = 250;

const JVM_ARGS = [
  '-Xms64m',
  '-Xmx512m',
  '-XX:+UseSerialGC',
  '-XX:+ExitOnOutOfMemoryError',
  '-Djava.awt.headless=true',
  '-Dorg.slf4j.simpleLogger.showDateTime=true',
  '-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS',
];

export async function startKafka(opts: StartKafkaOptions = {}): Promise<KafkaBroker> {
  const external = process.env.SLOTLINE_TEST_KAFKA_BROKERS?.trim();
  if (external) {
    await waitUntilReady(external, Date.now() + READY_TIMEOUT_MS, () => undefined);
    return new ExternalKafkaBroker(external);
  }

  const classpath = await kafkaClasspath();
  const ownsDir = opts.logDir === undefined;
  const dir = opts.logDir ?? (await mkdtemp(join(tmpdir(), 'slotline-kafka-')));
  await mkdir(dir, { recursive: true });
  if (existsSync(join(dir, 'data', 'meta.properties'))) {
    throw new Error(
      `${dir} already holds a formatted Kafka broker; give startKafka() an unused logDir`,
    );
  }
  const [port, controllerPort] = await twoFreePorts();
  const propsFile = join(dir, 'server.properties');
  await writeFile(propsFile, serverProperties(port, controllerPort, join(dir, 'data')));
  await formatStorage(classpath, propsFile);

  const broker = new LocalKafkaBroker(port, dir, ownsDir, propsFile, classpath);
  try {
    await broker.start();
  } catch (err) {
    broker.kill();
    throw err; // the directory is kept for the post-mortem; the error names its log
  }
  return broker;
}

function serverProperties(port: number, controllerPort: number, dataDir: string): string {
  const props: Record<string, string | number | boolean> = {
    'process.roles': 'broker,controller',
    'node.id': 1,
    'controller.quorum.bootstrap.servers': `127.0.0.1:${controllerPort}`,
    listeners: `PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    'advertised.listeners': `PLAINTEXT://127.0.0.1:${port}`,
    'controller.listener.names': 'CONTROLLER',
    'inter.broker.listener.name': 'PLAINTEXT',
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'log.dirs': dataDir,
    'num.partitions': 3,
    'auto.create.topics.enable': false,
    'offsets.topic.replication.factor': 1,
    'offsets.topic.num.partitions': 5,
    'transaction.state.log.replication.factor': 1,
    'transaction.state.log.min.isr': 1,
    'transaction.state.log.num.partitions': 5,
    'share.coordinator.state.topic.replication.factor': 1,
    'share.coordinator.state.topic.min.isr': 1,
    'group.initial.rebalance.delay.ms': 0,
    // After a kill() the restarted broker cannot register until the old registration's
    // session expires (default 9 s); keep that wait short.
    'broker.session.timeout.ms': 4_000,
    'broker.heartbeat.interval.ms': 500,
    // Small machines: the cleaner's default 128 MiB buffer would eat a quarter of the heap.
    'log.cleaner.dedupe.buffer.size': 8 * 1024 * 1024,
    'num.network.threads': 2,
    'num.io.threads': 4,
  };
  return Object.entries(props)
    .map(([key, value]) => `${key}=${String(value)}\n`)
    .join('');
}

async function formatStorage(classpath: string, propsFile: string): Promise<void> {
  const args = [
    ...JVM_ARGS,
    '-cp',
    classpath,
    'kafka.tools.StorageTool',
    'format',
    '--standalone',
    '--cluster-id',
    clusterId(),
    '--config',
    propsFile,
  ];
  await new Promise<void>((resolve, reject) => {
    execFile(javaBin(), args, { maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error === null) return resolve();
      const status = error.code ?? error.signal ?? error.message;
      reject(new Error(`kafka StorageTool format failed (${status}):\n${stdout}${stderr}`));
    });
  });
}

/** A Kafka cluster id: 16 random bytes, base64url; a leading '-' would read as a CLI flag. */
function clusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

function javaBin(): string {
  const home = process.env.JAVA_HOME;
  return home ? join(home, 'bin', 'java') : 'java';
}

class LocalKafkaBroker implements KafkaBroker {
  readonly external = false;
  readonly brokers: string;
  readonly logFile: string;
  /** The JVM while it is meant to be running; cleared as soon as stop()/kill() begins. */
  private child: ChildProcess | undefined;
  /** Settles when the last spawned JVM has exited. */
  private exited: Promise<void> = Promise.resolve();
  private exitDescription = '';

  constructor(
    private readonly port: number,
    private readonly dir: string,
    private readonly ownsDir: boolean,
    private readonly propsFile: string,
    private readonly classpath: string,
  ) {
    this.brokers = `127.0.0.1:${port}`;
    this.logFile = join(dir, 'broker.log');
  }

  /** Set while a start() is under way, so concurrent calls share it. */
  private starting: Promise<void> | undefined;

  start(): Promise<void> {
    this.starting ??= this.startOnce().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async startOnce(): Promise<void> {
    if (this.child) return;
    await this.exited;
    const child = await this.launch();
    try {
      await waitUntilReady(this.brokers, Date.now() + READY_TIMEOUT_MS, () =>
        this.child === child ? undefined : `the broker exited (${this.exitDescription})`,
      );
    } catch (err) {
      if (this.child === child) this.kill();
      throw new Error(
        `${(err as Error).message}\nbroker log ${this.logFile}, last lines:\n${await tail(this.logFile)}`,
        { cause: err },
      );
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child) {
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), STOP_TIMEOUT_MS);
      });
      const late = await Promise.race([this.exited.then(() => false), timedOut]);
      clearTimeout(timer);
      if (late) child.kill('SIGKILL');
    }
    await this.exited;
  }

  kill(): void {
    const child = this.child;
    this.child = undefined;
    child?.kill('SIGKILL');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.stop();
    } catch {
      this.kill();
      await this.exited;
    }
    if (this.ownsDir) await rm(this.dir, { recursive: true, force: true });
  }

  private async launch(): Promise<ChildProcess> {
    await appendFile(
      this.logFile,
      `\n=== slotline test harness: starting broker on ${this.brokers} at ${new Date().toISOString()}\n`,
    );
    const fd = openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(
        javaBin(),
        [...JVM_ARGS, '-cp', this.classpath, 'kafka.Kafka', this.propsFile],
        {
          cwd: this.dir,
          stdio: ['ignore', fd, fd],
        },
      );
    } finally {
      closeSync(fd);
    }
    this.child = child;
    this.exitDescription = '';
    this.exited = new Promise<void>((resolve) => {
      const done = (description: string) => {
        if (this.child === child) this.child = undefined;
        this.exitDescription = description;
        resolve();
      };
      child.once('exit', (code, signal) => done(signal ? `signal ${signal}` : `exit code ${code}`));
      child.once('error', (err) => {
        if (child.pid === undefined) done(`could not start ${javaBin()}: ${err.message}`);
      });
    });
    if (child.pid !== undefined) guardAgainstOrphan(child);
    // Neither the JVM nor its watchdog keeps this process alive; the exit hook cleans up.
    child.unref();
    return child;
  }
}

class ExternalKafkaBroker implements KafkaBroker {
  readonly external = true;
  readonly logFile = undefined;
  constructor(readonly brokers: string) {}
  async stop(): Promise<void> {
    throw notSupported('stop');
  }
  async start(): Promise<void> {
    throw notSupported('start');
  }
  kill(): void {
    throw notSupported('kill');
  }
  async [Symbol.asyncDispose](): Promise<void> {}
}

function notSupported(what: string): Error {
  return new Error(
    `KafkaBroker.${what}() is not supported for an external broker (SLOTLINE_TEST_KAFKA_BROKERS)`,
  );
}

// ---- never leave a broker behind ------------------------------------------------------

const liveBrokers = new Set<ChildProcess>();
let exitHookInstalled = false;

function guardAgainstOrphan(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const c of liveBrokers) c.kill('SIGKILL');
    });
  }
  liveBrokers.add(child);

  // `read` returns when every write end of its stdin pipe is closed, i.e. when this
  // process is gone however it died; the pipe is close-on-exec, so no other child holds it.
  const watchdog = spawn(
    'sh',
    [
      '-c',
      'read -r _line; kill -KILL "$1" 2>/dev/null',
      'slotline-kafka-watchdog',
      String(child.pid),
    ],
    {
      stdio: ['pipe', 'ignore', 'ignore'],
    },
  );
  watchdog.on('error', () => {});
  watchdog.stdin?.on('error', () => {});
  watchdog.unref();
  (watchdog.stdin as Socket | null)?.unref();

  child.once('exit', () => {
    liveBrokers.delete(child);
    watchdog.kill('SIGKILL');
  });
}

// ---- readiness ------------------------------------------------------------------------

/**
 * Polls until the port accepts connections and a kafkajs admin can list topics.
 * `failed()` returns a reason to give up early (e.g. the JVM exited).
 */
async function waitUntilReady(
  brokers: string,
  deadline: number,
  failed: () => string | undefined,
): Promise<void> {
  const [host, portText] = splitHostPort(brokers.split(',')[0] ?? brokers);
  const port = Number(portText);
  let lastError = 'the port never accepted a connection';
  for (;;) {
    const reason = failed();
    if (reason !== undefined) throw new Error(`Kafka broker ${brokers} did not start: ${reason}`);
    if (Date.now() > deadline) {
      throw new Error(
        `Kafka broker ${brokers} not ready after ${READY_TIMEOUT_MS / 1000}s: ${lastError}`,
      );
    }
    if (await canConnect(host, port)) {
      try {
        await listTopicsOnce(brokers);
        return;
      } catch (err) {
        lastError = `admin listTopics failed: ${(err as Error).message}`;
      }
    }
    await sleep(POLL_MS);
  }
}

async function listTopicsOnce(brokers: string): Promise<void> {
  const kafka = new Kafka({
    clientId: 'slotline-test-harness',
    brokers: brokers.split(','),
    logLevel: logLevel.NOTHING,
    connectionTimeout: 2_000,
    requestTimeout: 5_000,
    retry: { retries: 0 },
  });
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.listTopics();
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

function splitHostPort(address: string): [string, string] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i).replace(/^\[|\]$/g, ''), address.slice(i + 1)];
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

// ---- small helpers --------------------------------------------------------------------

/** Two distinct free loopback ports, found by binding port 0 (both held until both are known). */
async function twoFreePorts(): Promise<[number, number]> {
  const first = await listenOnFreePort();
  try {
    const second = await listenOnFreePort();
    try {
      return [portOf(first), portOf(second)];
    } finally {
      await closeServer(second);
    }
  } finally {
    await closeServer(first);
  }
}

async function listenOnFreePort(): Promise<Server> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return server;
}

function portOf(server: Server): number {
  return (server.address() as AddressInfo).port;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

async function tail(file: string, maxBytes = 6_000, maxLines = 40): Promise<string> {
  try {
    const handle = await open(file, 'r');
    try {
      const { size } = await handle.stat();
      const start = Math.max(0, size - maxBytes);
      const buffer = Buffer.alloc(size - start);
      await handle.read(buffer, 0, buffer.length, start);
      return buffer.toString('utf8').split('\n').slice(-maxLines).join('\n');
    } finally {
      await handle.close();
    }
  } catch (err) {
    return `(could not read ${file}: ${(err as Error).message})`;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
