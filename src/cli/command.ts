/**
 * One `slotline` command: what `slotline --help` lists, what
 * `slotline <name> --help` prints (never loading the configuration), and how
 * it runs. Exit codes: 0 success, 1 failure, 2 usage or configuration error.
 */
export interface Command {
  name: string;
  /** One short line for the command list (`slotline --help`). */
  summary: string;
  /** The synopsis lines, after `usage: `. */
  usage: string[];
  /** What it does, its options, exit codes: printed by `--help`. */
  help: string;
  run(args: string[]): Promise<number>;
}

/** `slotline <name> --help`. */
export function helpText(c: Command): string {
  const [first = '', ...more] = c.usage;
  const usage = [`usage: ${first}`, ...more.map((u) => `       ${u}`)].join('\n');
  return `${usage}\n\n${c.help.trim()}\n`;
}

/** Writes a usage error for `slotline <command>` and returns exit code 2. */
export function usageError(command: string, message: string): number {
  process.stderr.write(`slotline ${command}: ${message} (see slotline ${command} --help)\n`);
  return 2;
}

/** Writes a result: stdout on success, stderr otherwise; returns its code. */
export function printResult(r: { code: number; out: string }): number {
  (r.code === 0 ? process.stdout : process.stderr).write(`${r.out}\n`);
  return r.code;
}

/** Parses `--name value` pairs; unknown or valueless flags are errors (returned as a message). */
export function flags(
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
