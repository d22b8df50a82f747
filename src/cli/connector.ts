import type { Config } from '../config.js';
import { createLogger, type Logger } from '../log.js';
import { runConnector } from '../main.js';
import { checkCommand } from '../check/command.js';
import { runSetup } from '../setup.js';
import { setupKafkaTopics } from '../sinks/index.js';
import { verifyCommand } from '../verify/command.js';
import { flags, usageError } from './command.js';
import { secretsOf, withConfig, withLogger } from './configured.js';

/** `setup`, `run` and `verify`: the commands that work on the databases themselves. */

export async function setup(args: string[]): Promise<number> {
  const f = flags(args, [], ['resnapshot']);
  if (typeof f === 'string') return usageError('setup', f);
  return withLogger(async (cfg, log) => {
    const r = await runSetup(cfg, log.child({ component: 'setup' }), {
      create: true,
      resnapshot: f.resnapshot === true,
    });
    const kafkaTopics = await setupKafkaTopics(cfg, log.child({ component: 'kafka' }));
    log.info({ ...r, kafkaTopics }, 'setup complete');
    return 0;
  });
}

export async function run(args: string[]): Promise<number> {
  if (args.length > 0) return usageError('run', `unexpected argument ${JSON.stringify(args[0])}`);
  return withLogger(async (cfg, log) => {
    const shutdown = new AbortController();
    onShutdownSignals(shutdown, cfg, log);
    await runConnector(cfg, { shutdown: shutdown.signal, log });
    return 0;
  });
}

export function verify(args: string[]): Promise<number> {
  const f = flags(args, ['from', 'to', 'bucket'], ['repair']);
  if (typeof f === 'string') return Promise.resolve(usageError('verify', f));
  return withConfig(async (cfg) => {
    const log = createLogger({
      level: cfg.logLevel,
      secrets: secretsOf(cfg),
      destination: process.stderr,
    });
    const result = await verifyCommand(cfg, f, log.child({ component: 'verify' }));
    (result.report ? process.stdout : process.stderr).write(`${result.out}\n`);
    return result.code;
  });
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

/** `slotline check`: every check `setup` runs, on both databases (and Kafka, the HTTP ports); changes nothing. */
export async function check(args: string[]): Promise<number> {
  if (args.length > 0) return usageError('check', `unexpected argument ${JSON.stringify(args[0])}`);
  return withConfig((cfg) => checkCommand(cfg, process.stdout));
}
