import { type PortVariable, probePort } from '../admin/http.js';
import type { Config } from '../config.js';
import { redactUrl } from '../log.js';
import { checkKafka } from './kafka.js';
import { preflight } from './preflight.js';
import { formatChecks } from './report.js';
import { ok, warning, type CheckResult } from './result.js';

/**
 * `slotline check`: every check `setup` makes before it changes anything
 * (both databases), and Kafka and the HTTP port when configured. Changes
 * nothing. Exit 0 when nothing failed (warnings allowed), 1 otherwise.
 */
export async function checkCommand(cfg: Config, out: NodeJS.WritableStream): Promise<number> {
  out.write(
    `slotline check: source ${redactUrl(cfg.sourceUrl)}, sink ${redactUrl(cfg.sinkUrl)}, slot ${cfg.slot}, publication ${cfg.publication}\n\n`,
  );
  const results = await preflight(cfg, { create: true, resnapshot: false });
  if (cfg.kafkaBrokers !== null) results.push(...(await checkKafka(cfg)));
  if (cfg.httpPort > 0) results.push(await checkHttp(cfg.httpPort, 'SLOTLINE_HTTP_PORT'));
  if (cfg.adminPort > 0) results.push(await checkHttp(cfg.adminPort, 'SLOTLINE_ADMIN_PORT'));
  out.write(`${formatChecks(results)}\n`);
  return results.some((r) => r.status === 'fail') ? 1 : 0;
}

/** In use is a warning only: it may be this connector, already running. */
async function checkHttp(port: number, variable: PortVariable): Promise<CheckResult> {
  const refused = await probePort(port, '0.0.0.0', variable);
  if (!refused) return ok('http', 'port', `${port} is free (${variable})`);
  return warning('port', refused);
}
