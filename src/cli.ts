#!/usr/bin/env node
import { helpText, type Command } from './cli/command.js';
import { COMMANDS } from './cli/commands.js';

/**
 * The `slotline` command. Each command is an entry of src/cli/commands.ts;
 * `slotline <command> --help` (or `slotline help <command>`) prints its help
 * before anything else happens, so help never needs a configuration.
 */

const HELP = ['--help', '-h'];

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`);
  return `usage: slotline <command> [options]

commands:
${lines.join('\n')}

slotline <command> --help   the command's options and exit codes
Configuration comes from SLOTLINE_* environment variables: slotline config shows them.
`;
}

function find(name: string): Command | undefined {
  return COMMANDS.find((c) => c.name === name);
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(overview());
    return 2;
  }
  if (HELP.includes(name) || name === 'help') {
    const topic = rest[0] === undefined ? undefined : find(rest[0]);
    if (rest[0] !== undefined && !topic) {
      process.stderr.write(`slotline: unknown command ${JSON.stringify(rest[0])}\n${overview()}`);
      return 2;
    }
    process.stdout.write(topic ? helpText(topic) : overview());
    return 0;
  }
  const command = find(name);
  if (!command) {
    process.stderr.write(`slotline: unknown command ${JSON.stringify(name)}\n${overview()}`);
    return 2;
  }
  if (rest.some((a) => HELP.includes(a))) {
    process.stdout.write(helpText(command));
    return 0;
  }
  return command.run(rest);
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
