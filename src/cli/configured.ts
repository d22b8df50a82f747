import { loadConfig, type Config } from '../config.js';
import { ConfigError, SlotlineError } from '../errors.js';
import { formatError } from '../check/report.js';
import { createLogger, scrubSecrets, type Logger } from '../log.js';

/** What the commands that need a configuration share: loading it, and reporting failures. */

/** The values a log must never show: passwords of the URLs, the admin token, SASL's password. */
export function secretsOf(cfg: Config): string[] {
  const out: string[] = [];
  for (const url of [cfg.sourceUrl, cfg.sinkUrl]) {
    try {
      const u = new URL(url);
      const p = decodeURIComponent(u.password);
      if (p) out.push(p);
      const q = u.searchParams.get('password');
      if (q) out.push(q);
    } catch {
      // validated already
    }
  }
  if (cfg.adminToken) out.push(cfg.adminToken);
  if (cfg.kafkaSasl) out.push(cfg.kafkaSasl.password);
  return out;
}

/**
 * Reports an error: exit 2 for configuration, 1 for anything else. A logger gets the code, side
 * and variable; the terminal always gets the last words: the code, side, variable and `Fix:`.
 */
export function report(log: Logger | null, err: unknown, secrets: string[] = []): number {
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
  process.stderr.write(`slotline: ${scrubSecrets(formatError(e), secrets)}\n`);
  return 1;
}

/** Runs `fn` with the configuration, or reports why there is none (exit 2). */
export async function withConfig(fn: (cfg: Config) => Promise<number>): Promise<number> {
  let cfg: Config;
  try {
    cfg = loadConfig(process.env);
  } catch (err) {
    return report(null, err);
  }
  return fn(cfg);
}

/**
 * Runs `fn` with the configuration and a logger that redacts its secrets;
 * a failure is reported through that logger, secrets scrubbed (exit 1), or,
 * before there is one, as a configuration error (exit 2).
 */
export async function withLogger(
  fn: (cfg: Config, log: Logger) => Promise<number>,
): Promise<number> {
  let log: Logger | null = null;
  let secrets: string[] = [];
  try {
    const cfg = loadConfig(process.env);
    secrets = secretsOf(cfg);
    log = createLogger({ level: cfg.logLevel, secrets });
    return await fn(cfg, log);
  } catch (err) {
    return report(log, err, secrets);
  }
}
