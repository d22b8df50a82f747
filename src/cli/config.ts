import { configMarkdown, effectiveConfigText, loadConfig } from '../config.js';
import { flags, usageError } from './command.js';
import { report } from './configured.js';

/**
 * `slotline config`: the configuration `run` would use, as an environment
 * file with secrets hidden, then checked (exit 2 naming each bad variable).
 * `--doc`: the table of every variable, as in the README.
 */
export function config(args: string[]): Promise<number> {
  const f = flags(args, [], ['doc']);
  if (typeof f === 'string') return Promise.resolve(usageError('config', f));
  if (f.doc === true) {
    process.stdout.write(`${configMarkdown()}\n`);
    return Promise.resolve(0);
  }
  process.stdout.write(`${effectiveConfigText(process.env)}\n`);
  try {
    loadConfig(process.env);
    return Promise.resolve(0);
  } catch (err) {
    return Promise.resolve(report(null, err));
  }
}
