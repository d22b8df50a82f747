#!/usr/bin/env node
import {
  backfillCommand,
  deadLettersCommand,
  resetLsnCommand,
  statusCommand,
  type CliResult,
} from './admin/client.js';
import { configMarkdown, loadConfig, type Config } from './config.js';
import { ConfigError, SlotlineError } from './errors.js';
import { checkCommand } from './check/command.js';
import { formatError } from './check/report.js';
import { createLogger, scrubSecrets, type Logger } from './log.js';
import { runConnector } from './main.js';
import { runSetup } from './setup.js';
import { verifyCommand } from './verify/command.js';

const USAGE = `usage: slotline <command>

commands:
  setup [--resnapshot]   check the source, create publication and slot, apply the sink schema (idempotent)
  run                    stream changes into the sinks until SIGTERM/SIGINT
  check                  check both databases (and Kafka, the HTTP port) as setup would; changes nothing
  status                 the running connector's status (or the slot and checkpoints read from the databases)
  reset-lsn <X/Y> [--force]
                         re-stream from an LSN inside the replayable window; ahead of the checkpoint only with --force
  backfill --from <time> [--to <time>] [--from-id <id>] [--to-id <id>] [--chunk <n>] | --cancel
                         re-read source trades by range beside the live stream (times: unix seconds or ISO 8601)
  verify [--from <time>] [--to <time>] [--bucket <seconds>] [--repair]
                         compare source and sink per time bucket (count and hash); --repair fixes the buckets
                         that differ (through the running connector); exit 1 when some still differ
  dead-letters list|show|retry|discard|purge [ids…] [--reason r] [--table t] [--state s] [--from t] [--to t]
               [--limit n] [--after id] [--all] [--note "why"] [--older-than-days n]
                         inspect and act on rows that could not be mapped
  config                 print the configuration variables as a Markdown table
  demo                   run everything on a throwaway embedded PostgreSQL with live trades (Ctrl-C stops)

Configuration comes from SLOTLINE_* environment variables (see README).`;

function secretsOf(cfg: Config): string[] {
  const out: string[] = [];
  for (const url of [cfg.sourceUrl, cfg.sinkUrl]) {
    try {
      const p = decodeURIComponent(new URL(url).password);
      if (p) out.push(p);
    } catch {
      // validated already
    }
  }
  if (cfg.adminToken) out.push(cfg.adminToken);
  if (cfg.kafkaSasl) out.push(cfg.kafkaSasl.password);
  return out;
}

function report(log: Logger | null, err: unknown, secrets: string[] = []): number {
  if (err instanceof ConfigError) {
    process.stderr.write(`slotline: ${err.message}\n`);
    return 2;
  }
  const e =
    err instanceof SlotlineError
      ? err
      : new SlotlineError('unexpected', String((err as Error)?.stack ?? err));
  const r = e.remedy;
  log?.fatal({ code: e.code, side: r?.side, variable: r?.variable }, e.message);
  // The last words, also for a person at a terminal: the code, side, variable and fix.
  process.stderr.write(`slotline: ${scrubSecrets(formatError(e), secrets)}\n`);
  return 1;
}

/** Parses `--name value` pairs; unknown or valueless flags are errors. */
function flags(
  args: string[],
  names: string[],
  switches: string[],
): Record<string, string | true> | string {
  const out: Record<string, string | true> = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    const name = a.replace(/^--/, '');
    if (!a.startsWith('--')) return `unexpected argument ${JSON.stringify(a)}`;
    if (switches.includes(name)) out[name] = true;
    else if (names.includes(name)) {
      const v = args[++i];
      if (v === undefined || v.startsWith('--')) return `${a} needs a value`;
      out[name] = v;
    } else return `unknown option ${a}`;
  }
  return out;
}

async function adminCommand(
  command: 'status' | 'reset-lsn' | 'backfill',
  rest: string[],
): Promise<number> {
  let cfg: Config;
  try {
    cfg = loadConfig(process.env);
  } catch (err) {
    return report(null, err);
  }
  const usage = (msg: string) => {
    process.stderr.write(`slotline ${command}: ${msg}\n`);
    return 2;
  };
  let result: CliResult;
  if (command === 'status') {
    if (rest.length > 0) return usage(`unexpected argument ${JSON.stringify(rest[0])}`);
    result = await statusCommand(cfg).catch((err: unknown) => ({
      code: 1,
      out: String((err as Error).message),
    }));
  } else if (command === 'reset-lsn') {
    const [lsn, ...more] = rest;
    if (lsn === undefined || lsn.startsWith('--'))
      return usage('give the LSN, e.g. slotline reset-lsn 0/16B3748');
    const f = flags(more, [], ['force']);
    if (typeof f === 'string') return usage(f);
    result = await resetLsnCommand(cfg, lsn, f.force === true);
  } else {
    const f = flags(rest, ['from', 'to', 'from-id', 'to-id', 'chunk'], ['cancel']);
    if (typeof f === 'string') return usage(f);
    if (f.cancel === true) result = await backfillCommand(cfg, 'cancel');
    else {
      const body: Record<string, unknown> = {};
      if (typeof f.from === 'string') body.from = f.from;
      if (typeof f.to === 'string') body.to = f.to;
      if (typeof f['from-id'] === 'string') body.fromId = f['from-id'];
      if (typeof f['to-id'] === 'string') body.toId = f['to-id'];
      if (typeof f.chunk === 'string') {
        if (!/^\d+$/.test(f.chunk)) return usage('--chunk must be a whole number');
        body.chunkSize = Number(f.chunk);
      }
      result = await backfillCommand(cfg, body);
    }
  }
  (result.code === 0 ? process.stdout : process.stderr).write(`${result.out}\n`);
  return result.code;
}

async function deadLetters(rest: string[]): Promise<number> {
  let cfg: Config;
  try {
    cfg = loadConfig(process.env);
  } catch (err) {
    return report(null, err);
  }
  const [sub = '', ...more] = rest;
  const isId = (a: string, i: number) => /^\d+$/.test(a) && !(more[i - 1] ?? '').startsWith('--');
  const ids = more.filter(isId);
  const f = flags(
    more.filter((a, i) => !isId(a, i)),
    ['reason', 'table', 'state', 'from', 'to', 'limit', 'after', 'note', 'older-than-days'],
    ['all'],
  );
  if (typeof f === 'string') {
    process.stderr.write(`slotline dead-letters: ${f}\n`);
    return 2;
  }
  const result = await deadLettersCommand(cfg, sub, f, ids);
  (result.code === 0 ? process.stdout : process.stderr).write(`${result.out}\n`);
  // A retry that leaves letters failing is a failure for scripts, like `verify`.
  if (sub === 'retry' && result.code === 0 && retryFailed(result.out)) return 1;
  return result.code;
}

function retryFailed(out: string): boolean {
  try {
    return ((JSON.parse(out) as { failed?: unknown }).failed ?? 0) !== 0;
  } catch {
    return true;
  }
}

async function verify(rest: string[]): Promise<number> {
  let cfg: Config;
  try {
    cfg = loadConfig(process.env);
  } catch (err) {
    return report(null, err);
  }
  const f = flags(rest, ['from', 'to', 'bucket'], ['repair']);
  if (typeof f === 'string') {
    process.stderr.write(`slotline verify: ${f}\n`);
    return 2;
  }
  const log = createLogger({
    level: cfg.logLevel,
    secrets: secretsOf(cfg),
    destination: process.stderr,
  });
  const result = await verifyCommand(cfg, f, log.child({ component: 'verify' }));
  (result.report ? process.stdout : process.stderr).write(`${result.out}\n`);
  return result.code;
}

async function check(rest: string[]): Promise<number> {
  if (rest.length > 0) {
    process.stderr.write(`slotline check: unknown argument ${JSON.stringify(rest[0])}\n`);
    return 2;
  }
  try {
    return await checkCommand(loadConfig(process.env), process.stdout);
  } catch (err) {
    return report(null, err);
  }
}

/**
 * Turns the first SIGTERM/SIGINT into an abort of `shutdown`, bounded by the configured
 * deadline; a second signal exits at once.
 */
function onShutdownSignals(shutdown: AbortController, cfg: Config, log: Logger): void {
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) {
      log.warn({ signal: sig }, 'second signal: exiting now');
      process.exit(130);
    }
    log.info({ signal: sig }, 'shutting down');
    shutdown.abort();
    // Hard deadline: whatever is not flushed by then is replayed on the next start.
    setTimeout(() => {
      log.error('shutdown deadline passed; exiting');
      process.exit(1);
    }, cfg.shutdownTimeoutMs).unref();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

async function setupOrRun(command: 'setup' | 'run', rest: string[]): Promise<number> {
  const unknown = rest.filter((a) => !(command === 'setup' && a === '--resnapshot'));
  if (unknown.length > 0) {
    process.stderr.write(`slotline ${command}: unknown argument ${JSON.stringify(unknown[0])}\n`);
    return 2;
  }
  let log: Logger | null = null;
  let secrets: string[] = [];
  try {
    const cfg = loadConfig(process.env);
    secrets = secretsOf(cfg);
    log = createLogger({ level: cfg.logLevel, secrets });
    if (command === 'setup') {
      const r = await runSetup(cfg, log.child({ component: 'setup' }), {
        create: true,
        resnapshot: rest.includes('--resnapshot'),
      });
      log.info(r, 'setup complete');
      return 0;
    }
    const shutdown = new AbortController();
    onShutdownSignals(shutdown, cfg, log);
    await runConnector(cfg, { shutdown: shutdown.signal, log });
    return 0;
  } catch (err) {
    return report(log, err, secrets);
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  if (command === 'config') {
    process.stdout.write(`${configMarkdown()}\n`);
    return 0;
  }
  if (command === 'demo') {
    if (rest.length > 0) {
      process.stderr.write(`slotline demo: unknown argument ${JSON.stringify(rest[0])}\n`);
      return 2;
    }
    // Loaded only here: the demo's server and generator are no part of `run`.
    const { runDemo } = await import('./demo/demo.js');
    return runDemo(process.env);
  }
  if (command === 'check') return check(rest);
  if (command === 'dead-letters') return deadLetters(rest);
  if (command === 'verify') return verify(rest);
  if (command === 'status' || command === 'reset-lsn' || command === 'backfill') {
    return adminCommand(command, rest);
  }
  if (command === 'setup' || command === 'run') return setupOrRun(command, rest);
  process.stderr.write(`slotline: unknown command ${JSON.stringify(command)}\n${USAGE}\n`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Nothing may keep a finished command alive (a stray socket or timer).
    setImmediate(() => process.exit(code));
  },
  (err: unknown) => {
    process.stderr.write(`slotline: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
