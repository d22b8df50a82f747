/**
 * `npm run bench`: slotline's throughput, latency and memory beside the
 * server's own decode rate and a bare COPY (the ceilings, each the best of two
 * runs), Debezium 3.6.1 on the same backlog (embedded engine; Kafka Connect
 * standalone into the same broker, default and tuned: bench/debezium.ts) and
 * the old timestamp-polling service (the floor), all in one process tree on
 * this machine. Prints a Markdown table and the ratios the issue's targets are
 * stated in, and writes bench/results/<timestamp>.json.
 *
 *   npm run bench                  500,000-trade backlog (the issue's size), 20 s steady states
 *   npm run bench -- --quick       100,000-trade backlog, 5 s steady states
 *   npm run bench -- --trades 1000000 --rates 5000,20000 --seconds 20 --floor-trades 20000
 *   npm run bench -- --profile     repeats the catch-ups under `node --cpu-prof`, summarised
 *   npm run bench -- --only catchup,copy   a subset (ceiling catchup copy kafka debezium snapshot steady floor)
 *   npm run bench -- --no-kafka    skips the Kafka catch-ups (exactly-once and at-least-once)
 *   npm run bench -- --no-debezium skips the Debezium runs (they need Java 17 and Maven)
 *   npm run bench -- --fsync off   PostgreSQL without fsync (default: on)
 *
 * The default backlog is 500,000 trades (it was 1,000,000) so that the whole
 * run, Debezium's three passes included, stays under about ten minutes.
 * Steady state runs at each of --rates (default 5,000 and 20,000 trades/s;
 * --rate N runs only N).
 *
 * Environment: BENCH_TRADES, BENCH_FLOOR_TRADES, BENCH_RATES, BENCH_SECONDS; BENCH_SLOTLINE_X=v
 * sets SLOTLINE_X=v for every connector run (tuning experiments); BENCH_CLI runs another
 * build of the connector (default dist/cli.js). The connector runs with the Deployment's
 * NODE_OPTIONS (its V8 heap cap, deploy/base/deployment.yaml); BENCH_NODE_OPTIONS overrides it.
 *
 * Two throwaway PostgreSQL servers on this machine (test/harness/cluster.ts):
 * the Ponder source and the sink, as in production, so the walsender reads
 * only the source's WAL. Settings, the same for every scenario: the server
 * defaults for durability (fsync, synchronous_commit and full_page_writes on:
 * commit cost is part of what the connector's batching saves, and the old
 * service paid it per row; `--fsync off` turns fsync and full_page_writes off
 * on both), shared_buffers 256MB and max_wal_size 4GB so checkpoints do not
 * land in the middle of a short run. Everything shares the machine's cores
 * with whatever else runs on it: the CPU table shows how much did ("not ours").
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { formatLsn, parseLsn } from '../src/checkpoint/lsn.js';
import { pgPaths, startCluster, type Cluster } from '../test/harness/cluster.js';
import type { KafkaBroker } from '../test/harness/kafka.js';
import {
  cpuPerTrade,
  PATH_ROLES,
  perCores,
  targetBudget,
  total,
  type TargetBudget,
  type Window,
} from './budget.js';
import { Child, cleanEnv } from './child.js';
import {
  CONNECT_TASK_STARTED,
  CONNECT_VERSION,
  connectorProperties,
  DEBEZIUM_VERSION,
  debeziumClasspath,
  engineProperties,
  engineTiming,
  freePort,
  JVM_OPTS,
  parseEngineLine,
  pgConn,
  toProperties,
  workerProperties,
  type ConnectFlavour,
  type EngineEvent,
} from './debezium.js';
import { runFloor, type FloorResult } from './floor.js';
import {
  clkTck,
  cmdline,
  CpuWindow,
  machineInfo,
  peakRssMiB,
  round1,
  type CpuReport,
} from './proc.js';
import { summariseProfile, type ProfileSummary } from './profile.js';
import { runSteady, type SteadyResult } from './steady.js';
import {
  createDatabases,
  createSource,
  dbUrl,
  STEADY_BASE,
  tradeId,
  withClient,
  writeBacklog,
  type Backlog,
} from './workload.js';

// ---- options ----------------------------------------------------------------------------

interface Options {
  trades: number;
  floorTrades: number;
  /** steady-state rates, trades/s, run one after the other */
  rates: number[];
  seconds: number;
  quick: boolean;
  profile: boolean;
  kafka: boolean;
  debezium: boolean;
  fsync: boolean;
  txRows: number;
  /** Scenarios to run (default all). */
  only: Set<string> | null;
  /** SLOTLINE_* settings for every connector run, from BENCH_SLOTLINE_* variables. */
  connectorSettings: Record<string, string>;
}

const SCENARIOS = [
  'ceiling',
  'catchup',
  'copy',
  'kafka',
  'debezium',
  'snapshot',
  'steady',
  'floor',
];

function parseOptions(argv: string[]): Options {
  const quick = argv.includes('--quick');
  const num = (flag: string, env: string, def: number): number => {
    const i = argv.indexOf(flag);
    const raw = i >= 0 ? argv[i + 1] : process.env[env];
    if (raw === undefined || raw === '') return def;
    const v = Number(raw.replace(/[_,]/g, ''));
    if (!Number.isInteger(v) || v <= 0) throw new Error(`${flag}: not a positive integer: ${raw}`);
    return v;
  };
  const fsyncAt = argv.indexOf('--fsync');
  const known = new Set([
    '--quick',
    '--profile',
    '--no-kafka',
    '--no-debezium',
    '--trades',
    '--floor-trades',
    '--rate',
    '--rates',
    '--seconds',
    '--fsync',
    '--only',
  ]);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (!known.has(a)) throw new Error(`unknown argument ${a}`);
    if (
      [
        '--trades',
        '--floor-trades',
        '--rate',
        '--rates',
        '--seconds',
        '--fsync',
        '--only',
      ].includes(a)
    )
      i++;
  }
  const onlyAt = argv.indexOf('--only');
  const only = onlyAt >= 0 ? new Set((argv[onlyAt + 1] ?? '').split(',')) : null;
  for (const s of only ?? [])
    if (!SCENARIOS.includes(s))
      throw new Error(`--only: unknown scenario ${s} (one of ${SCENARIOS.join(', ')})`);
  const connectorSettings: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (k.startsWith('BENCH_SLOTLINE_') && v !== undefined)
      connectorSettings[k.slice('BENCH_'.length)] = v;
  const ratesAt = argv.indexOf('--rates');
  const rawRates = ratesAt >= 0 ? argv[ratesAt + 1] : process.env['BENCH_RATES'];
  const rates =
    argv.includes('--rate') || (rawRates === undefined && process.env['BENCH_RATE'])
      ? [num('--rate', 'BENCH_RATE', 5_000)]
      : parseRates(rawRates ?? '5000,20000');
  return {
    trades: num('--trades', 'BENCH_TRADES', quick ? 100_000 : 500_000),
    floorTrades: num('--floor-trades', 'BENCH_FLOOR_TRADES', quick ? 2_000 : 20_000),
    rates,
    seconds: num('--seconds', 'BENCH_SECONDS', quick ? 5 : 20),
    quick,
    profile: argv.includes('--profile'),
    kafka: !argv.includes('--no-kafka'),
    debezium: !argv.includes('--no-debezium'),
    fsync: fsyncAt < 0 || argv[fsyncAt + 1] !== 'off',
    txRows: 1_000,
    only,
    connectorSettings,
  };
}

/** "5000,20000" → [5000, 20000]; each a positive integer. */
function parseRates(raw: string): number[] {
  const rates = raw.split(',').map((r) => Number(r.trim().replace(/_/g, '')));
  if (rates.length === 0 || rates.some((r) => !Number.isInteger(r) || r <= 0))
    throw new Error(`--rates: not a list of positive integers: ${raw}`);
  return rates;
}

// ---- paths ------------------------------------------------------------------------------

/**
 * NODE_OPTIONS of the Deployment (deploy/base/deployment.yaml): V8's heap cap,
 * without which the old generation grows into garbage-collection slack far
 * above the live heap. BENCH_NODE_OPTIONS overrides it ('' for none).
 */
function deployedNodeOptions(root: string): string {
  const fromEnv = process.env['BENCH_NODE_OPTIONS'];
  if (fromEnv !== undefined) return fromEnv;
  const yaml = readFileSync(join(root, 'deploy', 'base', 'deployment.yaml'), 'utf8');
  const m = /- name: NODE_OPTIONS\s+value: (\S[^\n]*)/.exec(yaml);
  if (!m?.[1]) throw new Error('deploy/base/deployment.yaml sets no NODE_OPTIONS');
  return m[1].trim();
}

/** The repository: the nearest directory above this file holding package.json and src/cli.ts. */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'src', 'cli.ts'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the repository root above the benchmark');
    dir = up;
  }
}

const ROOT = repoRoot();
/** The connector under test; BENCH_CLI points at another build (e.g. a prototype) for an A/B run. */
const CLI = process.env['BENCH_CLI'] || join(ROOT, 'dist', 'cli.js');
const DEPLOYED_NODE_OPTIONS = deployedNodeOptions(ROOT);

/** A JVM of Debezium's runs: Kafka's stock heap and collector, our classpath, `main` with `args`. */
function javaChild(classpath: string, main: string, args: string[]): Child {
  return new Child('java', [...JVM_OPTS, '-cp', classpath, main, ...args], cleanEnv({}), ROOT);
}
const RESULTS = join(ROOT, 'bench', 'results');

/**
 * test/harness/kafka-classpath.ts finds test/kafka/pom.xml relative to its own
 * compiled file; in the benchmark's build directory that is a link back to the
 * repository's test/kafka.
 */
function linkKafkaPom(): void {
  const buildRoot = dirname(dirname(fileURLToPath(import.meta.url)));
  if (buildRoot === ROOT) return;
  const link = join(buildRoot, 'test', 'kafka');
  let present = false;
  try {
    lstatSync(link);
    present = true;
  } catch {
    // absent
  }
  if (!present) {
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(join(ROOT, 'test', 'kafka'), link);
  }
}

// ---- progress -----------------------------------------------------------------------------

const T0 = performance.now();
function say(text: string): void {
  const s = ((performance.now() - T0) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[bench ${s}s] ${text}\n`);
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---- results ------------------------------------------------------------------------------

interface Row {
  scenario: string;
  trades: number;
  seconds: number | null;
  rate: number | null;
  ratio: string;
  rssMiB: number | null;
  notes: string;
  cpu?: CpuReport;
  workers?: Record<string, WorkerStats>;
}

interface WorkerStats {
  batches: number;
  rows: number;
  meanRows: number;
  meanMs: number;
  /** share of the window the sink worker spent inside write() */
  busyPct: number;
}

/**
 * The connector's "batch written" debug lines (rows, ms per sink batch),
 * counted from construction on: how big the batches were and how much of the
 * window each sink worker spent writing. A worker near 100% busy is the
 * pipeline's serial bottleneck.
 */
class BatchStats {
  private readonly by = new Map<string, { batches: number; rows: number; ms: number }>();

  constructor(child: Child) {
    child.onLog((l) => {
      if (l.msg !== 'batch written' || typeof l['component'] !== 'string') return;
      const sink = l['component'].replace(/^sink-/, '');
      const s = this.by.get(sink) ?? { batches: 0, rows: 0, ms: 0 };
      s.batches += 1;
      s.rows += Number(l['rows'] ?? 0);
      s.ms += Number(l['ms'] ?? 0);
      this.by.set(sink, s);
    });
  }

  report(seconds: number): Record<string, WorkerStats> {
    const out: Record<string, WorkerStats> = {};
    for (const [sink, s] of this.by) {
      out[sink] = {
        batches: s.batches,
        rows: s.rows,
        meanRows: Math.round(s.rows / Math.max(1, s.batches)),
        meanMs: round1(s.ms / Math.max(1, s.batches)),
        busyPct: round1(s.ms / 10 / seconds),
      };
    }
    return out;
  }
}

function describeWorkers(w: Record<string, WorkerStats>): string {
  return Object.entries(w)
    .map(
      ([sink, s]) =>
        `${sink} writer busy ${s.busyPct}% (${s.batches} batches, ${s.meanRows} rows, ${s.meanMs} ms each)`,
    )
    .join('; ');
}

// ---- the benchmark ------------------------------------------------------------------------

const PUBLICATION = 'bench';
const SINK_CHECKPOINT = 'timescale';
const SOURCE_DBS = new Set(['bench_src', 'floor_src']);
const SINK_DBS = [
  'sink_a',
  'sink_b',
  'sink_c',
  'sink_d',
  'sink_e',
  'sink_snap',
  'sink_copy',
  'sink_copy2',
  'floor_sink',
];
/** SLOTLINE_KAFKA_DELIVERY of a run with Kafka; null: no Kafka. */
type Delivery = 'exactly-once' | 'at-least-once';
const KAFKA_EOS = 'catch-up → TimescaleDB + Kafka (exactly-once)';
const KAFKA_ALO = 'catch-up → TimescaleDB + Kafka (at-least-once)';
const CATCHUP = 'catch-up → TimescaleDB';
const RECV = 'ceiling: pg_recvlogical (pgoutput → /dev/null)';
const COPY = 'ceiling: bare COPY into the sink table';
const SNAPSHOT = 'initial snapshot (first start, COPY path)';
const DBZ_EMBEDDED = 'Debezium embedded, no-op handler (decode only)';
const DBZ_CONNECT: Record<ConnectFlavour, string> = {
  defaults: 'Debezium → Kafka (Connect standalone, JSON, defaults)',
  tuned: 'Debezium → Kafka (Connect, tuned)',
};
/** Debezium's slots, made before the backlog like slotline's. */
const RECV_SLOTS = ['bench_recv1', 'bench_recv2'];
const DBZ_SLOTS = { embedded: 'dbz_embedded', defaults: 'dbz_defaults', tuned: 'dbz_tuned' };
/** Partitions of the Debezium topics: slotline's default (SLOTLINE_KAFKA_TOPIC_PARTITIONS). */
const DBZ_PARTITIONS = 6;

class Bench {
  readonly rows: Row[] = [];
  readonly cpu: { scenario: string; report: CpuReport }[] = [];
  /** The Ponder database's server and the sink's: two servers, as in production, on this machine. */
  src!: Cluster;
  snk!: Cluster;
  monitors: pg.Client[] = [];
  kafka: KafkaBroker | null = null;
  kafkaNote = '';
  postmasters = new Set<number>();
  backlog!: Backlog;
  endLsn = '';
  steady: SteadyResult[] = [];
  /** The Debezium runs' classpath, or why they cannot run. */
  dbz: { classpath: string } | { missing: string } | null = null;
  ratioRows: { comparison: string; ratio: number | null; target: string; met: string }[] = [];
  floor: FloorResult | null = null;
  profiles: { scenario: string; summary: ProfileSummary }[] = [];
  versions: Record<string, string> = {};
  startedAt = new Date();

  constructor(readonly o: Options) {}

  url(db: string): string {
    return dbUrl(SOURCE_DBS.has(db) ? this.src.adminUrl : this.snk.adminUrl, db);
  }

  connectorEnv(slot: string, sinkDb: string, kafka: Delivery | null): Record<string, string> {
    const env: Record<string, string> = {
      SLOTLINE_SOURCE_URL: this.url('bench_src'),
      SLOTLINE_SINK_URL: this.url(sinkDb),
      SLOTLINE_SLOT: slot,
      SLOTLINE_PUBLICATION: PUBLICATION,
      SLOTLINE_HTTP_PORT: '0',
      // debug adds one line per sink batch (rows, ms): the benchmark's view of the sink worker.
      SLOTLINE_LOG_LEVEL: 'debug',
      ...this.o.connectorSettings,
    };
    if (kafka && this.kafka) {
      env['SLOTLINE_KAFKA_BROKERS'] = this.kafka.brokers;
      env['SLOTLINE_KAFKA_DELIVERY'] = kafka;
      env['SLOTLINE_KAFKA_TOPIC_TRADES'] = `bench.${slot}.trades`;
      env['SLOTLINE_KAFKA_TOPIC_POOLS'] = `bench.${slot}.pools`;
    }
    return env;
  }

  /** The connector runs as deployed: with the Deployment's NODE_OPTIONS (its heap cap). */
  connector(env: Record<string, string>, args: string[], nodeArgs: string[] = []): Child {
    const withHeap = { NODE_OPTIONS: DEPLOYED_NODE_OPTIONS, ...env };
    return new Child(process.execPath, [...nodeArgs, CLI, ...args], cleanEnv(withHeap), ROOT);
  }

  /** A CPU window over this scenario's processes: PostgreSQL backends by their role. */
  cpuWindow(): CpuWindow {
    const pms = this.postmasters;
    return new CpuWindow(
      () => this.pgRoles(),
      (s) =>
        pms.has(s.pid) || pms.has(s.ppid) ? 'pg-other' : s.pid === process.pid ? 'bench' : null,
    );
  }

  private async pgRoles(): Promise<Map<number, string>> {
    const out = new Map<number, string>();
    if (this.monitors.length === 0) {
      for (const c of [this.src, this.snk]) {
        const m = new pg.Client({
          connectionString: c.adminUrl,
          application_name: 'bench-monitor',
        });
        await m.connect();
        this.monitors.push(m);
      }
    }
    const rows: { pid: number; backend_type: string; application_name: string }[] = [];
    for (const m of this.monitors) {
      const r = await m.query<{ pid: number; backend_type: string; application_name: string }>(
        'SELECT pid, backend_type, application_name FROM pg_stat_activity',
      );
      rows.push(...r.rows);
    }
    for (const a of rows) {
      if (a.backend_type === 'walsender') out.set(a.pid, 'walsender');
      else if (a.backend_type === 'autovacuum worker') out.set(a.pid, 'pg-autovacuum');
      else if (/timescale/i.test(a.backend_type)) out.set(a.pid, 'pg-tsdb-jobs');
      else if (['slotline-sink', 'psql', 'old-service'].includes(a.application_name))
        out.set(a.pid, 'pg-sink');
      else if (a.application_name === 'slotline-snapshot-copy') out.set(a.pid, 'pg-snapshot');
    }
    return out;
  }

  kafkaPid(): number | null {
    if (!this.kafka?.logFile) return null;
    const dir = dirname(this.kafka.logFile);
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      const cmd = cmdline(Number(name));
      if (cmd.includes('kafka.Kafka') && cmd.includes(dir)) return Number(name);
    }
    return null;
  }

  // ---- set-up ----

  async start(): Promise<void> {
    const conf: Record<string, string> = {
      fsync: this.o.fsync ? 'on' : 'off',
      full_page_writes: this.o.fsync ? 'on' : 'off',
      synchronous_commit: 'on',
      shared_buffers: '256MB',
      max_wal_size: '4GB',
      checkpoint_timeout: '15min',
    };
    say('starting PostgreSQL: a source server and a sink server');
    const [src, snk] = await Promise.allSettled([
      startCluster({ extraConf: conf }),
      startCluster({ extraConf: conf }),
    ]);
    if (src.status === 'fulfilled') this.src = src.value;
    if (snk.status === 'fulfilled') this.snk = snk.value;
    if (src.status === 'rejected') throw src.reason;
    if (snk.status === 'rejected') throw snk.reason;
    for (const c of [this.src, this.snk]) {
      this.postmasters.add(
        Number(readFileSync(join(c.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]),
      );
    }
    await createDatabases(this.src.adminUrl, [...SOURCE_DBS]);
    await createDatabases(this.snk.adminUrl, SINK_DBS);
    await createSource(this.url('bench_src'));
    await withClient(this.src.adminUrl, async (c) => {
      const v = await c.query<{ v: string }>(`SELECT current_setting('server_version') AS v`);
      this.versions['postgresql'] = v.rows[0]?.v ?? '?';
    });
    this.versions['node'] = process.version;
  }

  async startKafka(): Promise<void> {
    if (!this.o.kafka) {
      this.kafkaNote = 'n/a (--no-kafka)';
      return;
    }
    if (!existsSync(join(ROOT, 'src', 'sinks', 'kafka.ts'))) {
      this.kafkaNote = 'n/a (Kafka sink not built)';
      return;
    }
    say('starting a Kafka broker');
    try {
      linkKafkaPom();
      const { startKafka } = await import('../test/harness/kafka.js');
      this.kafka = await startKafka();
      const { kafkaClasspath } = await import('../test/harness/kafka-classpath.js');
      const jar = /kafka_[\d.]+-([\d.]+)\.jar/.exec(await kafkaClasspath());
      if (jar?.[1]) this.versions['kafka'] = jar[1];
    } catch (err) {
      this.kafkaNote = `n/a (no broker: ${String((err as Error).message).split('\n')[0]})`;
    }
  }

  /**
   * `setup`, then `run` until it streams (the first start copies the still
   * empty tables), then SIGTERM: the slot and a streaming checkpoint exist, so
   * the next `run` resumes from the slot and drains whatever was written since.
   */
  async prepare(slot: string, sinkDb: string, kafka: Delivery | null): Promise<void> {
    const env = this.connectorEnv(slot, sinkDb, kafka);
    await this.connector(env, ['setup']).done(`slotline setup (${slot})`);
    const c = this.connector(env, ['run']);
    try {
      await c.waitForLog('replication started', 180_000);
    } finally {
      await c.stop();
    }
    if (c.exit?.code !== 0)
      throw new Error(`connector ${slot} did not stop cleanly:\n${c.output()}`);
  }

  async dropSlot(slot: string): Promise<void> {
    await withClient(this.url('bench_src'), async (c) => {
      for (let i = 0; i < 50; i++) {
        try {
          await c.query(
            `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`,
            [slot],
          );
          return;
        } catch {
          await sleep(200); // still active for a moment after its client left
        }
      }
    });
  }

  // ---- scenarios ----

  /** pg_recvlogical twice, each on its own slot made before the backlog: the better run counts. */
  async ceiling(): Promise<void> {
    const runs: { seconds: number; cpu: CpuReport }[] = [];
    for (const slot of RECV_SLOTS) runs.push(await this.recvlogical(slot));
    this.bestCeiling(
      RECV,
      'ceiling: pg_recvlogical',
      runs,
      (rates) =>
        `server decode rate, best of two runs (${rates} trades/s); ` +
        `${(this.backlog.walBytes / 2 ** 20).toFixed(0)} MiB of WAL`,
    );
  }

  /** A ceiling's row: the better of its timed runs, the notes giving every run's rate. */
  bestCeiling(
    scenario: string,
    cpuLabel: string,
    runs: { seconds: number; cpu: CpuReport }[],
    notes: (rates: string) => string,
  ): void {
    const N = this.backlog.trades;
    const best = runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
    this.cpu.push({ scenario: cpuLabel, report: best.cpu });
    this.rows.push({
      scenario,
      trades: N,
      seconds: best.seconds,
      rate: N / best.seconds,
      ratio: '',
      rssMiB: null,
      notes: notes(runs.map((r) => fmt(N / r.seconds)).join(' and ')),
      cpu: best.cpu,
    });
  }

  async recvlogical(slot: string): Promise<{ seconds: number; cpu: CpuReport }> {
    const bin = join(pgPaths().binDir, 'pg_recvlogical');
    // Exits at the first message past the last backlog INSERT: the last transaction's commit.
    const endpos = formatLsn(parseLsn(this.endLsn) + 1n);
    say(`ceiling: pg_recvlogical (pgoutput) → /dev/null on ${slot}, endpos ${endpos}`);
    const w = this.cpuWindow();
    await w.start();
    const t0 = performance.now();
    const child = new Child(
      bin,
      [
        '-d',
        this.url('bench_src'),
        `--slot=${slot}`,
        '--start',
        '--no-loop',
        `--endpos=${endpos}`,
        '-o',
        'proto_version=1',
        '-o',
        `publication_names=${PUBLICATION}`,
        '-f',
        '/dev/null',
      ],
      cleanEnv({}),
      ROOT,
    );
    w.name(child.pid, 'client');
    await child.done('pg_recvlogical');
    const seconds = (performance.now() - t0) / 1000;
    const cpu = await w.finish();
    await this.dropSlot(slot);
    return { seconds, cpu };
  }

  /**
   * A catch-up: `run` on a slot that is `trades` behind, timed from
   * "replication started" until every sink's checkpoint is past the backlog's
   * last INSERT (so its last transaction is durable there).
   */
  async catchUp(
    label: string,
    slot: string,
    sinkDb: string,
    kafka: Delivery | null,
    nodeArgs: string[] = [],
  ): Promise<{ row: Row; child: Child }> {
    const N = this.backlog.trades;
    const env = this.connectorEnv(slot, sinkDb, kafka);
    const sinks = kafka ? [SINK_CHECKPOINT, 'kafka'] : [SINK_CHECKPOINT];
    say(`${label}: draining ${fmt(N)} trades`);
    const t0 = performance.now();
    const child = this.connector(env, ['run'], nodeArgs);
    const w = this.cpuWindow();
    await child.waitForLog('replication started', 180_000);
    const t1 = performance.now();
    const named: Record<number, string> = { [child.pid]: 'connector' };
    const kpid = kafka ? this.kafkaPid() : null;
    if (kpid !== null) named[kpid] = 'kafka';
    const batches = new BatchStats(child);
    await w.start(named);
    await this.waitCheckpoints(slot, sinkDb, sinks, child, 30 * 60_000);
    const t2 = performance.now();
    const cpu = await w.finish();
    const workers = batches.report((t2 - t1) / 1000);
    const rss = peakRssMiB(child.pid);
    const inSink = await withClient(this.url(sinkDb), async (c) => {
      // Backlog ids only: the steady state's trades may follow them in the same stream.
      const r = await c.query<{ n: string }>(
        'SELECT count(*)::text AS n FROM analytics_trades WHERE trade_id < $1',
        [tradeId(STEADY_BASE)],
      );
      return Number(r.rows[0]?.n ?? 0);
    });
    if (inSink !== N) throw new Error(`${label}: sink holds ${inSink} trades, expected ${N}`);
    let kafkaNote = '';
    if (kafka && this.kafka) {
      const messages = await this.topicMessages(`bench.${slot}.trades`);
      kafkaNote =
        kafka === 'exactly-once'
          ? `; topic holds ${fmt(messages)} offsets (records and transaction markers)`
          : `; topic holds ${fmt(messages)} messages`;
    }
    this.cpu.push({ scenario: label, report: cpu });
    const seconds = (t2 - t1) / 1000;
    const row: Row = {
      scenario: label,
      trades: N,
      seconds,
      rate: N / seconds,
      ratio: '',
      rssMiB: rss,
      notes:
        `+${((t1 - t0) / 1000).toFixed(1)} s start-up before streaming${kafkaNote}; ` +
        describeWorkers(workers),
      cpu,
      workers,
    };
    return { row, child };
  }

  async waitCheckpoints(
    slot: string,
    sinkDb: string,
    sinks: string[],
    child: Child,
    timeoutMs: number,
  ): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    await withClient(this.url(sinkDb), async (c) => {
      for (;;) {
        const r = await c.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM slotline.checkpoints
            WHERE slot = $1 AND sink = ANY($2) AND lsn > $3::pg_lsn`,
          [slot, sinks, this.endLsn],
        );
        if ((r.rows[0]?.n ?? 0) === sinks.length) return;
        if (!child.alive) throw new Error(`the connector exited:\n${child.output()}`);
        if (performance.now() > deadline)
          throw new Error(`catch-up not done in ${timeoutMs} ms:\n${child.output()}`);
        await sleep(20);
      }
    });
  }

  /** Until the sink's checkpoint reaches the source's current WAL end (the idle ack moves it there). */
  async waitCaughtUp(slot: string, sinkDb: string, child: Child): Promise<void> {
    const target = await withClient(this.url('bench_src'), async (c) => {
      const r = await c.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l');
      return r.rows[0]?.l ?? '0/0';
    });
    await this.pollSink(sinkDb, child, `${slot} to catch up to ${target}`, async (c) => {
      const r = await c.query<{ ok: boolean }>(
        `SELECT coalesce(bool_and(lsn >= $2::pg_lsn), false) AS ok FROM slotline.checkpoints
          WHERE slot = $1 AND sink = $3`,
        [slot, target, SINK_CHECKPOINT],
      );
      return r.rows[0]?.ok === true;
    });
  }

  /** Waits until the connector owes no OHLCV refresh for `slot` (none recorded); returns how long. */
  async waitRefreshed(slot: string, sinkDb: string, child: Child): Promise<number> {
    const started = performance.now();
    await this.pollSink(sinkDb, child, `${slot}'s owed OHLCV refresh`, async (c) => {
      const r = await c.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM slotline.ohlcv_refresh WHERE slot = $1',
        [slot],
      );
      return r.rows[0]?.n === 0;
    });
    return performance.now() - started;
  }

  /** Asks the sink `done` every 50 ms until it says so, for at most 5 minutes, while the connector lives. */
  private async pollSink(
    sinkDb: string,
    child: Child,
    what: string,
    done: (c: pg.Client) => Promise<boolean>,
  ): Promise<void> {
    const deadline = performance.now() + 300_000;
    await withClient(this.url(sinkDb), async (c) => {
      for (;;) {
        if (await done(c)) return;
        if (!child.alive) throw new Error(`the connector exited:\n${child.output()}`);
        if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await sleep(50);
      }
    });
  }

  async topicMessages(topic: string): Promise<number> {
    if (!this.kafka) return 0;
    const { Kafka, logLevel } = await import('kafkajs');
    const admin = new Kafka({
      clientId: 'slotline-bench',
      brokers: [this.kafka.brokers],
      logLevel: logLevel.NOTHING,
    }).admin();
    await admin.connect();
    try {
      const offsets = await admin.fetchTopicOffsets(topic);
      return offsets.reduce((a, p) => a + Number(p.high) - Number(p.low), 0);
    } finally {
      await admin.disconnect();
    }
  }

  /**
   * The sink's own write rate: the same rows, already mapped (symbol joined,
   * volume computed), exported untimed to a file with psql's \copy, then
   * loaded with `\copy … FROM` into analytics_trades of a fresh sink database
   * whose schema `slotline setup` applied (the same hypertable, indexes and
   * continuous aggregates as the connector's sink). Only the load is timed.
   */
  async bareCopy(): Promise<void> {
    const psql = join(pgPaths().binDir, 'psql');
    const dir = await mkdtemp(join(tmpdir(), 'slotline-bench-copy-'));
    const file = join(dir, 'trades.copy');
    try {
      say('ceiling: bare COPY into the sink table (twice, each into a fresh sink database)');
      const select =
        `SELECT t.id, to_timestamp(t."timestamp"), t.chain_id, t.pool_id, p.coin, t.side, ` +
        `t.price, t.quantity, t.price * t.quantity, t.transaction_id, '0/1'::pg_lsn ` +
        `FROM order_book_trades t LEFT JOIN pools p ON p.order_book = t.pool_id ` +
        `WHERE t.id < '${tradeId(STEADY_BASE)}'`;
      await new Child(
        psql,
        [
          '-X',
          '-q',
          '-v',
          'ON_ERROR_STOP=1',
          '-d',
          this.url('bench_src'),
          '-c',
          `\\copy (${select}) TO '${file}'`,
        ],
        cleanEnv({}),
        ROOT,
      ).done('psql \\copy out');
      const runs: { seconds: number; cpu: CpuReport }[] = [];
      for (const db of ['sink_copy', 'sink_copy2']) {
        const env = { ...this.connectorEnv('copy_unused', db, null) };
        env['SLOTLINE_LOG_LEVEL'] = 'warn';
        await this.connector(env, ['setup']).done(`slotline setup (COPY sink schema, ${db})`);
        await this.dropSlot('copy_unused');
        const w = this.cpuWindow();
        await w.start();
        const t0 = performance.now();
        const load = new Child(
          psql,
          [
            '-X',
            '-q',
            '-v',
            'ON_ERROR_STOP=1',
            '-d',
            this.url(db),
            '-c',
            `\\copy analytics_trades (trade_id, time, chain_id, pool_id, symbol, side, price, quantity, volume, transaction_id, source_lsn) FROM '${file}'`,
          ],
          cleanEnv({}),
          ROOT,
        );
        w.name(load.pid, 'client');
        await load.done('psql \\copy in');
        const seconds = (performance.now() - t0) / 1000;
        runs.push({ seconds, cpu: await w.finish() });
      }
      this.bestCeiling(
        COPY,
        'ceiling: bare COPY',
        runs,
        (rates) =>
          `psql \\copy of the mapped rows into an empty analytics_trades, best of two runs (${rates} trades/s)`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** First start on a source that already holds the backlog: the initial snapshot path. */
  async snapshot(): Promise<void> {
    say('initial snapshot: first start on the populated source');
    const env = this.connectorEnv('bench_snap', 'sink_snap', null);
    const child = this.connector(env, ['run']);
    try {
      const w = this.cpuWindow();
      await child.waitForLog('initial snapshot started', 180_000);
      const t1 = performance.now();
      await w.start({ [child.pid]: 'connector' });
      await child.waitForLog('initial snapshot complete', 30 * 60_000);
      const t2 = performance.now();
      const cpu = await w.finish();
      const rss = peakRssMiB(child.pid);
      this.cpu.push({ scenario: 'initial snapshot', report: cpu });
      const seconds = (t2 - t1) / 1000;
      // The source may hold the steady state's trades too by now.
      const copied = await withClient(this.url('sink_snap'), async (c) => {
        const r = await c.query<{ n: string }>('SELECT count(*)::text AS n FROM analytics_trades');
        return Number(r.rows[0]?.n ?? 0);
      });
      this.rows.push({
        scenario: SNAPSHOT,
        trades: copied,
        seconds,
        rate: copied / seconds,
        ratio: '',
        rssMiB: rss,
        notes: 'not a target: first deploy on a populated source',
        cpu,
      });
    } finally {
      await child.stop();
    }
    await this.dropSlot('bench_snap');
  }

  /** Each of the steady-state rates in turn, on one connector run that has caught up first. */
  async steadyState(): Promise<void> {
    const env = this.connectorEnv('bench_a', 'sink_a', null);
    const child = this.connector(env, ['run']);
    try {
      await child.waitForLog('replication started', 180_000);
      await this.waitCaughtUp('bench_a', 'sink_a', child);
      // The catch-up rewrote old trade time: the connector refreshes those OHLCV aggregates
      // soon after it. That is the catch-up's aftermath, not the steady state: let it finish.
      const refreshMs = await this.waitRefreshed('bench_a', 'sink_a', child);
      say(
        `the catch-up's OHLCV refresh took ${(refreshMs / 1000).toFixed(1)} s before the steady state`,
      );
      for (const [i, rate] of this.o.rates.entries()) {
        say(`steady state: ${fmt(rate)} trades/s for ${this.o.seconds} s`);
        const w = this.cpuWindow();
        const batches = new BatchStats(child);
        await w.start({ [child.pid]: 'connector' });
        const r = await runSteady({
          sourceUrl: this.url('bench_src'),
          sinkUrl: this.url('sink_a'),
          rate,
          seconds: this.o.seconds,
          warmupSeconds: 2,
          // Each rate's trades numbered above the previous one's.
          base: STEADY_BASE + i * 2 ** 32,
        });
        const cpu = await w.finish();
        const workers = batches.report(r.seconds);
        const rss = peakRssMiB(child.pid);
        this.steady.push(r);
        this.cpu.push({ scenario: `steady state ${fmt(rate)}/s`, report: cpu });
        const l = r.latencyMs;
        this.rows.push({
          scenario: `steady state, ${fmt(rate)} trades/s target`,
          trades: r.written,
          seconds: r.seconds,
          rate: r.rate,
          ratio: '',
          rssMiB: rss,
          notes:
            `commit→sink p50 ${l.p50} ms, p95 ${l.p95} ms, p99 ${l.p99} ms, max ${l.max} ms at ${r.worstAtSeconds} s` +
            ` (${r.transactions} txns of ${Math.round(r.written / r.transactions)}` +
            `${r.lateTicks ? `, ${r.lateTicks} late ticks` : ''}${r.missing ? `, ${r.missing} MISSING` : ''}); ` +
            describeWorkers(workers),
          cpu,
          workers,
        });
      }
    } finally {
      await child.stop();
    }
  }

  async floorScenario(): Promise<void> {
    const n = this.o.floorTrades;
    say(`floor: the old timestamp-polling service on ${fmt(n)} trades`);
    const src = this.url('floor_src');
    const sink = this.url('floor_sink');
    await createSource(src);
    await writeBacklog(src, n, this.o.txRows);
    // The sink schema exactly as slotline applies it; the slot setup makes is not used.
    const env = {
      SLOTLINE_SOURCE_URL: src,
      SLOTLINE_SINK_URL: sink,
      SLOTLINE_SLOT: 'floor_unused',
      SLOTLINE_PUBLICATION: 'floor_unused',
      SLOTLINE_LOG_LEVEL: 'warn',
    };
    await this.connector(env, ['setup']).done('slotline setup (floor sink schema)');
    await withClient(src, (c) =>
      c.query(`SELECT pg_drop_replication_slot('floor_unused')`).then(() => undefined),
    );
    const w = this.cpuWindow();
    await w.start();
    const r = await runFloor(src, sink, n);
    const cpu = await w.finish();
    this.floor = r;
    this.cpu.push({ scenario: 'floor', report: cpu });
    this.rows.push({
      scenario: 'floor: old polling service',
      trades: n,
      seconds: r.seconds,
      rate: r.written / r.seconds,
      ratio: '',
      rssMiB: null,
      notes:
        `timestamp > last, pages of 100, one sync_log row per trade; ` +
        `${fmt(r.lost)} of ${fmt(n)} trades LOST (shared timestamps at page ends)`,
      cpu,
    });
  }

  // ---- Debezium (bench/debezium.ts) ----

  /** Builds bench/debezium (Maven) and makes Debezium's slots; before the backlog is written. */
  async prepareDebezium(): Promise<void> {
    if (!this.o.debezium) {
      this.dbz = { missing: 'n/a (--no-debezium)' };
      return;
    }
    say(`Debezium ${DEBEZIUM_VERSION}: building bench/debezium (Maven; the first time downloads)`);
    const r = await debeziumClasspath(ROOT);
    this.dbz = 'missing' in r ? { missing: `n/a (${r.missing})` } : r;
    if ('missing' in this.dbz) {
      say(`Debezium runs skipped: ${this.dbz.missing}`);
      return;
    }
    this.versions['debezium'] = DEBEZIUM_VERSION;
    this.versions['connect'] = CONNECT_VERSION;
    await withClient(this.url('bench_src'), async (c) => {
      for (const slot of Object.values(DBZ_SLOTS))
        await c.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
    });
  }

  async debeziumScenarios(): Promise<void> {
    const dbz = this.dbz;
    const na = (scenario: string, why: string) =>
      this.rows.push({
        scenario,
        trades: this.o.trades,
        seconds: null,
        rate: null,
        ratio: '',
        rssMiB: null,
        notes: why,
      });
    if (dbz === null || 'missing' in dbz) {
      const why = dbz?.missing ?? 'n/a';
      for (const s of [DBZ_EMBEDDED, DBZ_CONNECT.defaults, DBZ_CONNECT.tuned]) na(s, why);
      return;
    }
    try {
      await this.debeziumEmbedded(dbz.classpath);
    } catch (err) {
      na(DBZ_EMBEDDED, `FAILED: ${firstLine(err)}`);
    }
    await this.dropSlot(DBZ_SLOTS.embedded);
    for (const flavour of ['defaults', 'tuned'] as const) {
      if (!this.kafka) na(DBZ_CONNECT[flavour], this.kafkaNote || 'n/a (no broker)');
      else {
        try {
          await this.debeziumConnect(flavour, dbz.classpath);
        } catch (err) {
          na(DBZ_CONNECT[flavour], `FAILED: ${firstLine(err)}`);
        }
      }
      await this.dropSlot(DBZ_SLOTS[flavour]);
    }
  }

  /**
   * The embedded engine with a handler that only counts: timed from the
   * connector task's start to the backlog's last trade record.
   */
  async debeziumEmbedded(classpath: string): Promise<void> {
    const N = this.backlog.trades;
    const slot = DBZ_SLOTS.embedded;
    const dir = await mkdtemp(join(tmpdir(), 'slotline-bench-dbz-'));
    const props = join(dir, 'engine.properties');
    await writeFile(
      props,
      toProperties(engineProperties(pgConn(this.url('bench_src')), slot, PUBLICATION, slot)),
    );
    say(`${DBZ_EMBEDDED}: draining ${fmt(N)} trades`);
    const t0 = performance.now();
    const child = javaChild(classpath, 'dev.slotline.bench.EmbeddedNoop', [
      props,
      String(N),
      `${slot}.public.order_book_trades`,
    ]);
    try {
      const events: EngineEvent[] = [];
      const waiters: (() => void)[] = [];
      child.onText((line) => {
        const e = parseEngineLine(line);
        if (!e) return;
        events.push(e);
        for (const w of waiters.splice(0)) w();
      });
      const next = async (want: EngineEvent['event'], timeoutMs: number): Promise<EngineEvent> => {
        const deadline = performance.now() + timeoutMs;
        for (;;) {
          const e = events.find((x) => x.event === want || x.event === 'failed');
          if (e?.event === 'failed') throw new Error(`Debezium engine failed: ${e.message}`);
          if (e) return e;
          if (!child.alive) throw new Error(`the engine exited:\n${child.output()}`);
          if (performance.now() > deadline)
            throw new Error(`no ${want} in ${timeoutMs} ms:\n${child.output()}`);
          await Promise.race([new Promise<void>((r) => waiters.push(r)), sleep(500)]);
        }
      };
      await next('task-started', 180_000);
      const t1 = performance.now();
      const w = this.cpuWindow();
      await w.start({ [child.pid]: 'connector' });
      const done = await next('done', 30 * 60_000);
      const cpu = await w.finish();
      const rss = peakRssMiB(child.pid);
      if (done.event !== 'done') throw new Error('unreachable');
      const t = engineTiming(done);
      this.cpu.push({ scenario: 'Debezium embedded', report: cpu });
      this.rows.push({
        scenario: DBZ_EMBEDDED,
        trades: N,
        seconds: t.seconds,
        rate: N / t.seconds,
        ratio: '',
        rssMiB: rss,
        notes:
          `+${((t1 - t0) / 1000).toFixed(1)} s JVM and connector start-up; timed from task start ` +
          `to the last trade's record (first→last record ${t.firstToLastSeconds.toFixed(2)} s); ` +
          `records as Connect SourceRecords, not serialised` +
          (done.snapshotReads ? `; ${fmt(done.snapshotReads)} SNAPSHOT records seen` : ''),
        cpu,
      });
    } finally {
      await child.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Kafka Connect standalone with the Debezium connector into the bench's
   * broker: timed from the source task's start until the trades topic holds
   * the whole backlog.
   */
  async debeziumConnect(flavour: ConnectFlavour, classpath: string): Promise<void> {
    if (!this.kafka) throw new Error('no broker');
    const N = this.backlog.trades;
    const slot = DBZ_SLOTS[flavour];
    const label = DBZ_CONNECT[flavour];
    const topic = `${slot}.public.order_book_trades`;
    const { Kafka, logLevel } = await import('kafkajs');
    const admin = new Kafka({
      clientId: 'slotline-bench',
      brokers: [this.kafka.brokers],
      logLevel: logLevel.NOTHING,
    }).admin();
    await admin.connect();
    const dir = await mkdtemp(join(tmpdir(), 'slotline-bench-connect-'));
    let child: Child | null = null;
    try {
      await admin.createTopics({
        topics: [topic, `${slot}.public.pools`].map((t) => ({
          topic: t,
          numPartitions: DBZ_PARTITIONS,
          replicationFactor: 1,
        })),
        waitForLeaders: true,
      });
      const worker = join(dir, 'worker.properties');
      const connector = join(dir, 'connector.properties');
      const c = pgConn(this.url('bench_src'));
      await writeFile(
        worker,
        toProperties(
          workerProperties(flavour, this.kafka.brokers, join(dir, 'offsets'), await freePort()),
        ),
      );
      await writeFile(
        connector,
        toProperties(connectorProperties(flavour, c, slot, PUBLICATION, slot)),
      );
      say(`${label}: draining ${fmt(N)} trades`);
      const t0 = performance.now();
      const proc = javaChild(classpath, 'org.apache.kafka.connect.cli.ConnectStandalone', [
        worker,
        connector,
      ]);
      child = proc;
      let started = 0;
      proc.onText((line) => {
        if (started === 0 && CONNECT_TASK_STARTED.test(line)) started = performance.now();
      });
      const deadline = performance.now() + 180_000;
      while (started === 0) {
        if (!proc.alive) throw new Error(`Connect exited:\n${proc.output()}`);
        if (performance.now() > deadline)
          throw new Error(`Connect's task did not start:\n${proc.output()}`);
        await sleep(20);
      }
      const t1 = started;
      const w = this.cpuWindow();
      const named: Record<number, string> = { [proc.pid]: 'connector' };
      const kpid = this.kafkaPid();
      if (kpid !== null) named[kpid] = 'kafka';
      await w.start(named);
      const end = performance.now() + 30 * 60_000;
      let messages = 0;
      for (;;) {
        const offsets = await admin.fetchTopicOffsets(topic);
        messages = offsets.reduce((a, p) => a + Number(p.high) - Number(p.low), 0);
        if (messages >= N) break;
        if (!proc.alive) throw new Error(`Connect exited:\n${proc.output()}`);
        if (performance.now() > end)
          throw new Error(`${label}: ${messages} of ${N} in Kafka after 30 min`);
        await sleep(50);
      }
      const t2 = performance.now();
      const cpu = await w.finish();
      const rss = peakRssMiB(proc.pid);
      const seconds = (t2 - t1) / 1000;
      this.cpu.push({ scenario: `Debezium → Kafka, ${flavour}`, report: cpu });
      this.rows.push({
        scenario: label,
        trades: N,
        seconds,
        rate: N / seconds,
        ratio: '',
        rssMiB: rss,
        notes:
          `+${((t1 - t0) / 1000).toFixed(1)} s JVM and worker start-up; timed from the source task's ` +
          `start until the topic holds ${fmt(messages)} messages (polled every 50 ms); ` +
          (flavour === 'defaults'
            ? 'JSON with schemas, default producer and connector batching'
            : 'schemaless JSON, producer batch.size 512 KiB linger.ms 20, max.batch.size 8192, max.queue.size 32768'),
        cpu,
      });
    } finally {
      if (child) await child.stop();
      await admin.disconnect().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  }

  want(scenario: string): boolean {
    return this.o.only === null || this.o.only.has(scenario);
  }

  async run(): Promise<void> {
    await this.start();
    // The steady state runs on slot A after its catch-up; COPY needs A's sink schema.
    const catchup = this.want('catchup') || this.want('steady');
    const slotlineKafka = this.want('kafka');
    // Debezium's Connect runs use the same broker as slotline's Kafka runs.
    const debezium = this.want('debezium') && this.o.debezium;
    const kafkaStarting = slotlineKafka || debezium ? this.startKafka() : Promise.resolve();
    if (!slotlineKafka && !debezium) this.kafkaNote = 'n/a (not selected)';

    // Slots first, then the backlog: every consumer starts equally far behind.
    say('preparing connectors (setup, first run, stop)');
    await this.prepare('bench_a', 'sink_a', null);
    if (this.want('ceiling')) {
      await withClient(this.url('bench_src'), async (c) => {
        for (const slot of RECV_SLOTS)
          await c.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
      });
    }
    if (this.o.profile) await this.prepare('bench_c', 'sink_c', null);
    if (this.want('debezium')) await this.prepareDebezium();
    await kafkaStarting;
    if (this.kafka && slotlineKafka) await this.prepare('bench_b', 'sink_b', 'exactly-once');
    if (this.kafka && slotlineKafka) await this.prepare('bench_e', 'sink_e', 'at-least-once');
    if (this.kafka && slotlineKafka && this.o.profile)
      await this.prepare('bench_d', 'sink_d', 'exactly-once');

    say(
      `writing the backlog: ${fmt(this.o.trades)} trades in ${fmt(this.o.txRows)}-row transactions`,
    );
    this.backlog = await writeBacklog(this.url('bench_src'), this.o.trades, this.o.txRows);
    this.endLsn = this.backlog.lastInsertLsn;
    say(
      `backlog written in ${this.backlog.seconds.toFixed(1)} s (${fmt(this.o.trades / this.backlog.seconds)} trades/s), ` +
        `${(this.backlog.walBytes / 2 ** 20).toFixed(0)} MiB WAL`,
    );
    await withClient(this.url('bench_src'), (c) => c.query('CHECKPOINT'));

    if (this.want('ceiling')) await this.ceiling();

    if (catchup) {
      const a = await this.catchUp(CATCHUP, 'bench_a', 'sink_a', null);
      await a.child.stop();
      this.rows.push(a.row);
      if (this.want('steady')) await this.steadyState();
      await this.dropSlot('bench_a');
    }

    if (this.want('copy')) await this.bareCopy();

    if (slotlineKafka) {
      if (this.kafka) {
        // The same backlog into Kafka both ways, one after the other on the same broker.
        for (const [label, slot, sinkDb, delivery] of [
          [KAFKA_EOS, 'bench_b', 'sink_b', 'exactly-once'],
          [KAFKA_ALO, 'bench_e', 'sink_e', 'at-least-once'],
        ] as const) {
          const r = await this.catchUp(label, slot, sinkDb, delivery);
          await r.child.stop();
          this.rows.push(r.row);
          await this.dropSlot(slot);
        }
        if (this.o.profile) await this.profiled(KAFKA_EOS, 'bench_d', 'sink_d', 'exactly-once');
      } else {
        for (const scenario of [KAFKA_EOS, KAFKA_ALO])
          this.rows.push({
            scenario,
            trades: this.o.trades,
            seconds: null,
            rate: null,
            ratio: '',
            rssMiB: null,
            notes: this.kafkaNote,
          });
      }
    }

    if (this.want('debezium')) await this.debeziumScenarios();
    if (this.kafka) {
      await this.kafka[Symbol.asyncDispose]().catch(() => undefined);
      this.kafka = null;
    }

    if (this.o.profile) await this.profiled(CATCHUP, 'bench_c', 'sink_c', null);

    if (this.want('snapshot')) await this.snapshot();
    if (this.want('floor')) await this.floorScenario();
    this.ratios();
  }

  /** The same catch-up again under `node --cpu-prof` (a separate slot), summarised. */
  async profiled(
    label: string,
    slot: string,
    sinkDb: string,
    kafka: Delivery | null,
  ): Promise<void> {
    const dir = join(RESULTS, `${stamp(this.startedAt)}-profile-${slot}`);
    mkdirSync(dir, { recursive: true });
    const c = await this.catchUp(`${label} (under --cpu-prof)`, slot, sinkDb, kafka, [
      '--cpu-prof',
      `--cpu-prof-dir=${dir}`,
    ]);
    await c.child.stop();
    c.row.notes = `profiled, not a result; ${c.row.notes}`;
    this.rows.push(c.row);
    await this.dropSlot(slot);
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (file) {
      this.profiles.push({ scenario: label, summary: await summariseProfile(join(dir, file)) });
    }
  }

  ratios(): void {
    const rate = (scenario: string) => this.rows.find((r) => r.scenario === scenario)?.rate ?? null;
    const recv = rate(RECV);
    const copy = rate(COPY);
    const floor = rate('floor: old polling service');
    const dbzTuned = rate(DBZ_CONNECT.tuned);
    for (const r of this.rows) {
      if (r.rate === null) continue;
      const slotline = r.scenario.startsWith('catch-up') || r.scenario === SNAPSHOT;
      const debezium = r.scenario.startsWith('Debezium');
      if (!slotline && !debezium) continue;
      const parts: string[] = [];
      if (recv) parts.push(`${(r.rate / recv).toFixed(2)}× recvlogical`);
      if (copy && slotline) parts.push(`${(r.rate / copy).toFixed(2)}× COPY`);
      if (floor && slotline) parts.push(`${fmt(r.rate / floor)}× floor`);
      const alo = rate(KAFKA_ALO);
      if (r.scenario === KAFKA_EOS && alo)
        parts.unshift(`${(r.rate / alo).toFixed(2)}× at-least-once`);
      if ((r.scenario === KAFKA_EOS || r.scenario === KAFKA_ALO) && dbzTuned)
        parts.unshift(`${(r.rate / dbzTuned).toFixed(2)}× Debezium tuned`);
      r.ratio = parts.join(', ');
    }

    // The issue's targets, as ratios within this run.
    const add = (comparison: string, num: string, den: string, min: number | null) => {
      const n = rate(num);
      const d = rate(den);
      const ratio = n !== null && d !== null ? n / d : null;
      this.ratioRows.push({
        comparison,
        ratio,
        target: min === null ? '—' : `≥ ${min}×`,
        met: ratio === null || min === null ? '—' : ratio >= min ? 'yes' : 'NO',
      });
    };
    add('slotline catch-up → TimescaleDB ÷ pg_recvlogical', CATCHUP, RECV, 0.6);
    add('slotline catch-up → TimescaleDB ÷ bare COPY', CATCHUP, COPY, 0.8);
    add('slotline catch-up → TimescaleDB ÷ Debezium embedded (no-op)', CATCHUP, DBZ_EMBEDDED, null);
    add(
      'slotline + Kafka (exactly-once) ÷ Debezium → Kafka tuned',
      KAFKA_EOS,
      DBZ_CONNECT.tuned,
      2,
    );
    add(
      'slotline + Kafka (at-least-once) ÷ Debezium → Kafka tuned',
      KAFKA_ALO,
      DBZ_CONNECT.tuned,
      2,
    );
    add(
      'slotline + Kafka (exactly-once) ÷ Debezium → Kafka defaults',
      KAFKA_EOS,
      DBZ_CONNECT.defaults,
      null,
    );
    add('slotline + Kafka (exactly-once) ÷ pg_recvlogical', KAFKA_EOS, RECV, null);
    add('Debezium embedded (no-op) ÷ pg_recvlogical', DBZ_EMBEDDED, RECV, null);
    add('Debezium → Kafka defaults ÷ pg_recvlogical', DBZ_CONNECT.defaults, RECV, null);
    add('Debezium → Kafka tuned ÷ pg_recvlogical', DBZ_CONNECT.tuned, RECV, null);
    add('initial snapshot ÷ bare COPY', SNAPSHOT, COPY, 0.8);
  }

  ratioTable(): string {
    const lines = this.ratioRows
      .filter((r) => r.ratio !== null)
      .map(
        (r) => `| ${r.comparison} | ${(r.ratio as number).toFixed(2)}× | ${r.target} | ${r.met} |`,
      );
    if (lines.length === 0) return '';
    return ['| comparison | ratio | target | met |', '| --- | ---: | --- | --- |', ...lines].join(
      '\n',
    );
  }

  // ---- report ----

  table(): string {
    const head = '| scenario | trades | seconds | trades/s | ratio | peak RSS MiB | notes |';
    const sep = '| --- | ---: | ---: | ---: | --- | ---: | --- |';
    const lines = this.rows.map(
      (r) =>
        `| ${r.scenario} | ${fmt(r.trades)} | ${r.seconds === null ? 'n/a' : r.seconds.toFixed(2)} | ` +
        `${r.rate === null ? 'n/a' : fmt(r.rate)} | ${r.ratio || '—'} | ` +
        `${r.rssMiB === null ? '—' : r.rssMiB.toFixed(0)} | ${r.notes} |`,
    );
    return [head, sep, ...lines].join('\n');
  }

  cpuTable(): string {
    // The path's processes first (budget.ts), then what runs beside them.
    const cols = [...PATH_ROLES, 'pg-autovacuum', 'pg-tsdb-jobs', 'pg-other', 'bench'].filter((k) =>
      this.cpu.some((c) => c.report.roles[k] !== undefined),
    );
    const head = `| scenario | ${cols.join(' | ')} | machine busy | not ours |`;
    const sep = `| --- | ${cols.map(() => '---:').join(' | ')} | ---: | ---: |`;
    const lines = this.cpu.map(({ scenario, report }) => {
      const v = cols.map((k) => {
        const cpu = report.roles[k];
        if (cpu === undefined) return '';
        const wait = report.runQueue[k] ?? 0;
        return wait >= 1 ? `${cpu}% (+${wait}% wait)` : `${cpu}%`;
      });
      return `| ${scenario} | ${v.join(' | ')} | ${report.machineBusy}% of ${report.cores * 100}% | ${report.notOurs}% |`;
    });
    return [head, sep, ...lines].join('\n');
  }

  /** A scenario's timed window (its row carries the CPU of it) and its rate. */
  private window(scenario: string): (Window & { rate: number }) | null {
    const row = this.rows.find((r) => r.scenario === scenario);
    return row?.rate != null && row.cpu
      ? { trades: row.trades, cpu: row.cpu, rate: row.rate }
      : null;
  }

  /** µs of CPU per trade by process, for every scenario on a trade's path. */
  costTable(): string {
    const scenarios = [RECV, COPY, CATCHUP, KAFKA_EOS, KAFKA_ALO, SNAPSHOT, DBZ_EMBEDDED]
      .concat([DBZ_CONNECT.defaults, DBZ_CONNECT.tuned])
      .map((s) => ({ s, w: this.window(s) }))
      .filter((x): x is { s: string; w: Window & { rate: number } } => x.w !== null);
    if (scenarios.length === 0) return '';
    const roles = PATH_ROLES.filter((r) => scenarios.some(({ w }) => w.cpu.roles[r] !== undefined));
    const lines = scenarios.map(({ s, w }) => {
      const c = cpuPerTrade(w);
      const sum = total(c);
      const allows = perCores(sum, w.cpu.cores);
      return (
        `| ${s} | ${roles.map((r) => (c[r] === undefined ? '' : c[r].toFixed(1))).join(' | ')} | ` +
        `${sum.toFixed(1)} | ${fmt(allows)} | ${(w.rate / allows).toFixed(2)} |`
      );
    });
    return [
      `| scenario | ${roles.join(' | ')} | total µs | all cores allow (trades/s) | rate ÷ that |`,
      `| --- | ${roles.map(() => '---:').join(' | ')} | ---: | ---: | ---: |`,
      ...lines,
    ].join('\n');
  }

  /** Each throughput target's CPU budget against the servers' own cost and slotline's (budget.ts). */
  budgetTable(): string {
    const rate = (s: string) => this.rows.find((r) => r.scenario === s)?.rate ?? null;
    const cost = (s: string) => {
      const w = this.window(s);
      return w ? cpuPerTrade(w) : null;
    };
    const recv = cost(RECV);
    const copy = cost(COPY);
    const cores = this.cpu[0]?.report.cores ?? 2;
    if (!recv || !copy || recv.walsender === undefined || copy['pg-sink'] === undefined) return '';
    const stream = [
      { what: 'walsender decoding', micros: recv.walsender },
      { what: 'pg_recvlogical receiving', micros: recv.client ?? 0 },
      { what: 'sink server, bare COPY', micros: copy['pg-sink'] },
    ];
    const out: TargetBudget[] = [];
    const add = (target: string, needs: number | null, parts: typeof stream, path: string) => {
      const now = cost(path);
      if (needs === null || !now) return;
      out.push(targetBudget({ target, needs, cores, floorParts: parts, now: total(now) }));
    };
    const recvRate = rate(RECV);
    const copyRate = rate(COPY);
    const tuned = rate(DBZ_CONNECT.tuned);
    add('catch-up ≥ 0.6× pg_recvlogical', recvRate && 0.6 * recvRate, stream, CATCHUP);
    add('catch-up ≥ 0.8× bare COPY', copyRate && 0.8 * copyRate, stream, CATCHUP);
    const broker = cost(DBZ_CONNECT.tuned)?.kafka;
    if (broker !== undefined) {
      const parts = [...stream, { what: 'Kafka broker (under tuned Debezium)', micros: broker }];
      add('Kafka (exactly-once) ≥ 2× tuned Debezium', tuned && 2 * tuned, parts, KAFKA_EOS);
      add('Kafka (at-least-once) ≥ 2× tuned Debezium', tuned && 2 * tuned, parts, KAFKA_ALO);
    }
    const read = cost(SNAPSHOT)?.['pg-snapshot'];
    const snap = [
      { what: 'source server, COPY out', micros: read ?? 0 },
      { what: 'sink server, bare COPY', micros: copy['pg-sink'] },
    ];
    add('initial snapshot ≥ 0.8× bare COPY', copyRate && 0.8 * copyRate, snap, SNAPSHOT);
    if (out.length === 0) return '';
    return [
      `| target | needs trades/s | leaves µs/trade on ${cores} cores | servers' own work µs/trade | slotline now µs/trade | verdict |`,
      '| --- | ---: | ---: | ---: | ---: | --- |',
      ...out.map(
        (b) =>
          `| ${b.target} | ${fmt(b.needs)} | ${b.budget.toFixed(1)} | ${b.floor.toFixed(1)} (` +
          `${b.floorParts.map((p) => `${p.what} ${p.micros.toFixed(1)}`).join(' + ')}) | ` +
          `${b.now.toFixed(1)} | ${b.verdict} |`,
      ),
    ].join('\n');
  }

  machine(): string {
    const m = machineInfo();
    const v = this.versions;
    return (
      `Machine: ${m.nproc} × ${m.cpuModel}, ${m.memoryGiB} GiB RAM, Linux ${m.kernel}; ` +
      `PostgreSQL ${v['postgresql']}${v['timescaledb'] ? ` + TimescaleDB ${v['timescaledb']}` : ''}` +
      `${v['kafka'] ? `, Kafka ${v['kafka']}` : ''}` +
      `${v['debezium'] ? `, Debezium ${v['debezium']} on Kafka Connect ${v['connect']} (Java 17)` : ''}` +
      `, Node ${v['node']}; ` +
      `fsync ${this.o.fsync ? 'on' : 'off'}; load average at the end ${m.loadAverage}.`
    );
  }
}

function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split('\n')[0] ?? '';
}

function stamp(d: Date): string {
  return d.toISOString().replace(/[:.]/g, '-').replace(/Z$/, 'Z');
}

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
  const b = new Bench(o);
  process.once('SIGINT', () => process.exit(130));
  process.once('SIGTERM', () => process.exit(143));
  try {
    await b.run();
    await withClient(b.url('sink_a'), async (c) => {
      const t = await c.query<{ v: string }>(
        `SELECT extversion AS v FROM pg_extension WHERE extname = 'timescaledb'`,
      );
      if (t.rows[0]) b.versions['timescaledb'] = t.rows[0].v;
    });
  } finally {
    for (const m of b.monitors) await m.end().catch(() => undefined);
    if (b.kafka) await b.kafka[Symbol.asyncDispose]().catch(() => undefined);
    if (b.src) await b.src[Symbol.asyncDispose]().catch(() => undefined);
    if (b.snk) await b.snk[Symbol.asyncDispose]().catch(() => undefined);
  }
  const total = (performance.now() - T0) / 1000;
  const out: string[] = [];
  out.push(`## slotline benchmark (${o.quick ? 'quick' : 'full'})`, '');
  out.push(b.table(), '');
  const ratios = b.ratioTable();
  if (ratios) out.push('Ratios (same run, same machine; targets from issue #13):', '', ratios, '');
  out.push(
    'CPU during each timed window (100% = one core; "+x% wait" = time spent runnable but waiting for a core, summed over all threads of the process from /proc/<pid>/task/*/schedstat, as a share of the window, so a JVM with many threads can pass 100%; "not ours" = busy time of other processes on the machine):',
    '',
    b.cpuTable(),
    '',
  );
  const costs = b.costTable();
  if (costs)
    out.push(
      'CPU per trade (µs of CPU each process spent per trade in the window above; "all cores allow" = cores × 10⁶ ÷ total, the rate no overlap of the work could pass; "rate ÷ that" = how much of it the run reached):',
      '',
      costs,
      '',
    );
  const budget = b.budgetTable();
  if (budget)
    out.push(
      "CPU budget of each throughput target (bench/budget.ts): the rate it needs leaves cores × 10⁶ ÷ rate µs of CPU per trade for everything; the servers' own work is the part no connector can avoid, measured where nothing else ran; out of reach = that part alone exceeds the budget:",
      '',
      budget,
      '',
    );
  out.push(b.machine());
  out.push(
    `Backlog: ${fmt(b.backlog.trades)} trades in ${fmt(o.txRows)}-row transactions, written in ` +
      `${b.backlog.seconds.toFixed(1)} s. Total run time ${total.toFixed(0)} s.`,
  );
  for (const { scenario, summary: p } of b.profiles) {
    out.push(
      '',
      `Connector profile, ${scenario} (${relative(ROOT, p.file)}): ` +
        `busy ${p.busyMs} ms, idle ${p.idleMs} ms, of which GC ${p.gcMs} ms (whole process life).`,
      '',
    );
    out.push('| self ms | % of busy | function |', '| ---: | ---: | --- |');
    for (const f of p.functions.slice(0, 15))
      out.push(`| ${f.selfMs} | ${f.pct}% | \`${f.name}\` |`);
    out.push('', '| self ms | % of busy | file / package |', '| ---: | ---: | --- |');
    for (const f of p.files.slice(0, 12))
      out.push(`| ${f.selfMs} | ${f.pct}% | \`${f.name || '(native)'}\` |`);
  }
  const text = out.join('\n');
  process.stdout.write(`\n${text}\n`);

  mkdirSync(RESULTS, { recursive: true });
  const file = join(RESULTS, `${stamp(b.startedAt)}.json`);
  await writeFile(
    file,
    JSON.stringify(
      {
        startedAt: b.startedAt.toISOString(),
        totalSeconds: round1(total),
        options: { ...o, only: o.only ? [...o.only] : null },
        connector: CLI,
        machine: machineInfo(),
        versions: b.versions,
        clkTck: clkTck(),
        backlog: b.backlog,
        rows: b.rows,
        steady: b.steady,
        ratios: b.ratioRows,
        floor: b.floor,
        profiles: b.profiles,
        markdown: text,
      },
      null,
      2,
    ) + '\n',
  );
  process.stderr.write(`\nwritten ${join('bench', 'results', basename(file))}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
