/**
 * `slotline demo` (`npm run demo`): everything on one machine, nothing to
 * install by hand. It starts its own PostgreSQL (see embedded-postgres.ts)
 * with a Ponder-shaped source database `ponder` and a sink database
 * `analytics`, writes some history, then a live stream of trades with an
 * occasional reorg (generator.ts), runs the connector in this process, and
 * shows a progress line once a second. Ctrl-C (or SIGTERM) stops the stream,
 * lets the connector catch up and stop gracefully, stops PostgreSQL and
 * removes its directory; a second Ctrl-C kills the server and exits at once.
 *
 * Environment (all optional):
 *   SLOTLINE_DEMO_SECONDS         stop after N seconds as if Ctrl-C (CI, tests); default: run until Ctrl-C
 *   SLOTLINE_DEMO_RATE            trades per second of the live stream; default 300
 *   SLOTLINE_DEMO_HISTORY         trades written before the connector starts (its initial snapshot copies them); default 5000
 *   SLOTLINE_DEMO_REORG_SECONDS   mean seconds between reorgs, 0 for none; default 10
 *   SLOTLINE_DEMO_POSTGRES        auto | system | npm | <bin dir>: which server binaries; default auto
 *   SLOTLINE_LOG_LEVEL            connector log level, to stderr; default warn, so the progress line stays readable
 *   SLOTLINE_HTTP_PORT, SLOTLINE_KAFKA_BROKERS and the other SLOTLINE_* settings reach the connector as
 *   with `slotline run`; SLOTLINE_SOURCE_URL and SLOTLINE_SINK_URL are always the demo's own server.
 *
 * Machine-readable lines at start (the integration test reads them):
 *   demo: source <url> sink <url>
 *   demo: postgres pid <pid> data <dir>
 */
import pg from 'pg';
import pino from 'pino';
import { loadConfig, type Config } from '../config.js';
import { probePort } from '../admin/http.js';
import { formatError } from '../check/report.js';
import { ConfigError, SlotlineError } from '../errors.js';
import { createLogger } from '../log.js';
import { newConnectorState, runConnector, type ConnectorState } from '../main.js';
import { findPostgres, startEmbeddedPostgres, type EmbeddedPostgres } from './embedded-postgres.js';
import { TradeGenerator } from './generator.js';
import { formatProgress, ProgressSampler } from './progress.js';

export interface DemoOptions {
  /** SLOTLINE_DEMO_SECONDS; null: until a signal. */
  seconds: number | null;
  /** SLOTLINE_DEMO_RATE (default 300) */
  ratePerSecond: number;
  /** SLOTLINE_DEMO_HISTORY (default 5000) */
  history: number;
  /** SLOTLINE_DEMO_REORG_SECONDS (default 10) */
  reorgEverySeconds: number;
  /** SLOTLINE_DEMO_POSTGRES (default auto) */
  postgres: string;
}

/** How long the connector gets to catch up with the last trades before it is stopped. */
const DRAIN_TIMEOUT_MS = 10_000;
/** Without a terminal the progress line is printed every this many seconds. */
const PLAIN_EVERY_S = 5;

function intVar(env: NodeJS.ProcessEnv, name: string, def: number | null, max: number) {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  if (!/^\d+$/.test(raw) || Number(raw) > max)
    throw new ConfigError(`${name} ${JSON.stringify(raw)}: must be a whole number up to ${max}`);
  return Number(raw);
}

export function demoOptions(env: NodeJS.ProcessEnv): DemoOptions {
  return {
    seconds: intVar(env, 'SLOTLINE_DEMO_SECONDS', null, 86_400 * 365),
    ratePerSecond: Math.max(1, intVar(env, 'SLOTLINE_DEMO_RATE', 300, 100_000) ?? 300),
    history: intVar(env, 'SLOTLINE_DEMO_HISTORY', 5000, 10_000_000) ?? 5000,
    reorgEverySeconds: intVar(env, 'SLOTLINE_DEMO_REORG_SECONDS', 10, 86_400) ?? 10,
    postgres: env['SLOTLINE_DEMO_POSTGRES'] || 'auto',
  };
}

/** Writes whole lines above the progress line, which a terminal shows redrawn in place. */
class Screen {
  private readonly tty = process.stdout.isTTY === true;
  private onLine = false;
  private ticks = 0;

  say(message: string): void {
    process.stdout.write(`${this.onLine ? '\r\x1b[K' : ''}demo: ${message}\n`);
    this.onLine = false;
  }

  progress(line: string): void {
    if (this.tty) {
      process.stdout.write(`\r${line}\x1b[K`);
      this.onLine = true;
    } else if (this.ticks++ % PLAIN_EVERY_S === 0) {
      process.stdout.write(`${line}\n`);
    }
  }
}

function newState(): ConnectorState {
  return newConnectorState();
}

const failedIn = (part: string) => (err: unknown) => {
  throw new Error(`${part}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
};

/** Whether the promise settled within `ms` (a rejection is passed on). */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const aborted = (signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });

/** What the demo has started; `cleanup` releases it in reverse, whatever happened. */
interface Running {
  server: EmbeddedPostgres | null;
  generatorClient: pg.Client | null;
  generator: TradeGenerator | null;
  connectorStop: AbortController;
  connector: Promise<void> | null;
  sampler: ProgressSampler | null;
  ticker: NodeJS.Timeout | null;
}

/** Runs the demo until a signal or SLOTLINE_DEMO_SECONDS; resolves to the exit code. */
export async function runDemo(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let opts: DemoOptions;
  try {
    opts = demoOptions(env);
  } catch (err) {
    process.stderr.write(`slotline demo: ${(err as Error).message}\n`);
    return 2;
  }
  const screen = new Screen();
  const stop = new AbortController();
  const running: Running = {
    server: null,
    generatorClient: null,
    generator: null,
    connectorStop: new AbortController(),
    connector: null,
    sampler: null,
    ticker: null,
  };
  const removeSignalHandlers = onSignals(screen, stop, running);
  const timer =
    opts.seconds === null
      ? null
      : setTimeout(() => {
          screen.say(`${opts.seconds} s are up (SLOTLINE_DEMO_SECONDS)`);
          stop.abort();
        }, opts.seconds * 1000);
  try {
    await demo(env, opts, screen, stop.signal, running);
    return 0;
  } catch (err) {
    screen.say(
      `failed: ${err instanceof SlotlineError ? formatError(err) : err instanceof Error ? err.message : String(err)}`,
    );
    return 1;
  } finally {
    if (timer) clearTimeout(timer);
    await cleanup(screen, running);
    removeSignalHandlers();
  }
}

/** The first signal stops the demo gracefully, a second kills PostgreSQL and exits. */
function onSignals(screen: Screen, stop: AbortController, running: Running): () => void {
  let signals = 0;
  const onSignal = () => {
    signals += 1;
    if (signals > 1) {
      screen.say('second signal: killing PostgreSQL and exiting now');
      running.server?.killSync();
      process.exit(130);
    }
    if (!stop.signal.aborted) screen.say('stopping (Ctrl-C again to force)');
    stop.abort();
  };
  const signalNames = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const s of signalNames) process.on(s, onSignal);
  return () => {
    for (const s of signalNames) process.off(s, onSignal);
  };
}

async function demo(
  env: NodeJS.ProcessEnv,
  opts: DemoOptions,
  screen: Screen,
  stop: AbortSignal,
  running: Running,
): Promise<void> {
  await httpPortFree(env);
  const { sourceUrl, sinkUrl } = await startServer(opts, screen, running);
  const cfg = loadConfig({
    ...env,
    SLOTLINE_SOURCE_URL: sourceUrl,
    SLOTLINE_SINK_URL: sinkUrl,
    SLOTLINE_LOG_LEVEL: env['SLOTLINE_LOG_LEVEL'] || 'warn',
  });
  if (cfg.kafkaBrokers)
    screen.say(`Kafka brokers ${cfg.kafkaBrokers.join(',')} (SLOTLINE_KAFKA_BROKERS)`);
  const generator = await startSource(opts, cfg, screen, running);
  if (stop.aborted) return;
  await stream(cfg, screen, stop, generator, running);
}

/**
 * Before anything starts: the HTTP port (8080 unless SLOTLINE_HTTP_PORT says
 * otherwise) is free, so a busy port is told, with the variable, at once.
 */
async function httpPortFree(env: NodeJS.ProcessEnv): Promise<void> {
  const placeholder = 'postgres://demo@127.0.0.1/demo';
  const { httpPort } = loadConfig({
    ...env,
    SLOTLINE_SOURCE_URL: placeholder,
    SLOTLINE_SINK_URL: placeholder,
  });
  const refused = httpPort > 0 ? await probePort(httpPort) : null;
  if (refused) throw refused;
}

/** The embedded server with the demo's two databases; resolves to their URLs. */
async function startServer(
  opts: DemoOptions,
  screen: Screen,
  running: Running,
): Promise<{ sourceUrl: string; sinkUrl: string }> {
  const bins = findPostgres(opts.postgres);
  const server = await startEmbeddedPostgres(bins);
  running.server = server;
  screen.say(
    `PostgreSQL ${bins.version} (${bins.origin} binaries in ${bins.binDir}), ` +
      `${server.timescale ? 'TimescaleDB preloaded' : 'without TimescaleDB'}, ` +
      'fsync off (throwaway data)',
  );
  const admin = new pg.Client({ connectionString: server.url('postgres') });
  await admin.connect();
  await admin.query('CREATE DATABASE ponder');
  await admin.query('CREATE DATABASE analytics');
  await admin.end();
  const sourceUrl = server.url('ponder');
  const sinkUrl = server.url('analytics');
  screen.say(`source ${sourceUrl} sink ${sinkUrl}`);
  screen.say(`postgres pid ${server.pid ?? '?'} data ${server.dataDir}`);
  return { sourceUrl, sinkUrl };
}

/** The Ponder-shaped source with its history written; the live stream not started yet. */
async function startSource(
  opts: DemoOptions,
  cfg: Config,
  screen: Screen,
  running: Running,
): Promise<TradeGenerator> {
  const generatorClient = new pg.Client({
    connectionString: cfg.sourceUrl,
    application_name: 'ponder-demo',
  });
  running.generatorClient = generatorClient;
  generatorClient.on('error', () => undefined);
  await generatorClient.connect();
  const generator = new TradeGenerator(generatorClient, {
    ratePerSecond: opts.ratePerSecond,
    reorgEverySeconds: opts.reorgEverySeconds,
    schema: cfg.sourceSchema,
  });
  running.generator = generator;
  await generator.createSchema();
  await generator.insertHistory(opts.history);
  screen.say(
    `${opts.history.toLocaleString('en-US')} trades of history in ${generator.poolCount} pools; ` +
      `streaming ${opts.ratePerSecond} trades/s ` +
      (opts.reorgEverySeconds > 0
        ? `with a reorg about every ${opts.reorgEverySeconds} s. `
        : 'without reorgs. ') +
      'Ctrl-C stops.',
  );
  return generator;
}

/**
 * The connector and the live stream until told to stop (or until either fails), then the
 * stream stops, the connector catches up and stops, and the sink is compared with the source.
 */
async function stream(
  cfg: Config,
  screen: Screen,
  stop: AbortSignal,
  generator: TradeGenerator,
  running: Running,
): Promise<void> {
  const log = createLogger({
    level: cfg.logLevel,
    secrets: [new URL(cfg.sourceUrl).password],
    destination: pino.destination({ dest: 2, sync: true }),
  });
  const state = newState();
  const startedAt = Date.now();
  const connector = runConnector(cfg, { shutdown: running.connectorStop.signal, log, state });
  running.connector = connector;
  connector.catch(() => undefined); // awaited below
  generator.start();
  generator.done.catch(() => undefined); // awaited below

  const sampler = new ProgressSampler({
    sourceUrl: cfg.sourceUrl,
    sinkUrl: cfg.sinkUrl,
    sourceSchema: cfg.sourceSchema,
    sinkSchema: cfg.sinkSchema,
    slot: cfg.slot,
  });
  running.sampler = sampler;
  running.ticker = startTicker(screen, sampler, cfg, state, generator, startedAt);

  // Run until told to stop, or until the connector or the generator fails.
  const how = await Promise.race([
    aborted(stop).then(() => 'stop' as const),
    connector.then(() => 'connector ended' as const, failedIn('connector')),
    generator.done.then(() => 'generator ended' as const, failedIn('trade generator')),
  ]);
  if (how !== 'stop') throw new Error(`${how} unexpectedly`);

  await generator.stop();
  const drained = await drain(sampler, state);
  clearInterval(running.ticker);
  running.ticker = null;
  running.connectorStop.abort();
  if (!(await within(connector, cfg.shutdownTimeoutMs)))
    screen.say('the connector did not stop in time (SLOTLINE_SHUTDOWN_TIMEOUT_MS)');
  const reorgs = `${generator.stats.reorgs} ${generator.stats.reorgs === 1 ? 'reorg' : 'reorgs'}`;
  screen.say(
    drained.equal
      ? `source and sink agree: ${drained.text} (${reorgs} applied)`
      : `the sink had not caught up after ${DRAIN_TIMEOUT_MS / 1000} s: ${drained.text}`,
  );
}

/** After a failure, too: the stream and the connector stop before the server does. */
async function cleanup(screen: Screen, running: Running): Promise<void> {
  if (running.ticker) clearInterval(running.ticker);
  await running.generator?.stop();
  running.connectorStop.abort();
  if (running.connector)
    await within(
      running.connector.catch(() => undefined),
      10_000,
    );
  await running.sampler?.close();
  await running.generatorClient?.end().catch(() => undefined);
  const server = running.server;
  if (server) {
    await server.stop().catch(() => server.killSync());
    screen.say(`PostgreSQL stopped, ${server.rootDir} removed`);
  }
}

function startTicker(
  screen: Screen,
  sampler: ProgressSampler,
  cfg: Config,
  state: ConnectorState,
  generator: TradeGenerator,
  startedAt: number,
): NodeJS.Timeout {
  let busy = false;
  let httpProbes = cfg.httpPort > 0 ? 5 : 0;
  return setInterval(() => {
    if (busy) return; // a slow sample is skipped, not queued
    busy = true;
    void (async () => {
      try {
        const s = await sampler.sample();
        screen.progress(
          formatProgress({
            ...s,
            elapsedMs: Date.now() - startedAt,
            phase: state.phase,
            reorgs: generator.stats.reorgs,
          }),
        );
        if (httpProbes > 0 && state.phase === 'streaming') {
          httpProbes -= 1;
          if (await slotlineHttp(cfg.httpPort)) {
            httpProbes = 0;
            const base = `http://127.0.0.1:${cfg.httpPort}`;
            screen.say(
              `status ${base}/status metrics ${base}/metrics (another port: SLOTLINE_HTTP_PORT=<port>, none: 0)`,
            );
          }
        }
      } finally {
        busy = false;
      }
    })();
  }, 1000);
}

/** Whether the connector's HTTP server answers on that port (and not some other program). */
async function slotlineHttp(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, {
      signal: AbortSignal.timeout(1000),
    });
    return res.ok && (await res.text()).includes('slotline_');
  } catch {
    return false;
  }
}

/**
 * Once the stream has stopped, waits until the sink holds what the source
 * holds: the same trades (count) with the same values (the sum of exact
 * volumes, which a reorg's re-inserted trades change).
 */
async function drain(
  sampler: ProgressSampler,
  state: ConnectorState,
): Promise<{ equal: boolean; text: string }> {
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  let last = { equal: false, text: 'no answer from the databases' };
  while (Date.now() < deadline && state.phase !== 'stopped') {
    const t = await sampler.totals().catch(() => null);
    if (t) {
      const equal = t.sourceRows === t.sinkRows && t.sourceVolume === t.sinkVolume;
      last = {
        equal,
        text: equal
          ? `${t.sinkRows.toLocaleString('en-US')} trades, the same ${t.sinkVolume.length}-digit total volume`
          : `source ${t.sourceRows.toLocaleString('en-US')} trades, sink ${t.sinkRows.toLocaleString('en-US')}`,
      };
      if (equal) return last;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return last;
}
