import { commandsMarkdown } from './cli/commands.js';
import { configMarkdown } from './config.js';
import { sourceColumnsMarkdown, sourceContractMarkdown } from './trades/contract.js';

/**
 * The parts of the documentation generated from the code, between
 * `<!-- name:start -->` and `<!-- name:end -->`: `npm run docs` writes them
 * (scripts/update-docs.mjs), and test/unit/readme.test.ts checks they are
 * current, so the documentation cannot drift from the code.
 */
export interface GeneratedBlock {
  /** Relative to the repository's root. */
  file: string;
  name: string;
  generate(): string;
}

export const GENERATED_BLOCKS: readonly GeneratedBlock[] = [
  { file: 'README.md', name: 'contract', generate: sourceContractMarkdown },
  { file: 'README.md', name: 'commands', generate: commandsMarkdown },
  { file: 'README.md', name: 'config', generate: configMarkdown },
  { file: 'docs/design.md', name: 'source-columns', generate: sourceColumnsMarkdown },
];

const markers = (name: string) => [`<!-- ${name}:start -->`, `<!-- ${name}:end -->`] as const;

/** What a file holds between a block's markers, or null without them. */
export function blockIn(text: string, name: string): string | null {
  const [start, end] = markers(name);
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  if (a < 0 || b < a) return null;
  return text
    .slice(a + start.length, b)
    .replace(/^\n/, '')
    .replace(/\n$/, '');
}

/** The text with a block's content replaced; throws when the markers are missing. */
export function withBlock(text: string, name: string, content: string): string {
  const [start, end] = markers(name);
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  if (a < 0 || b < a) throw new Error(`the markers ${start} … ${end} are missing`);
  return `${text.slice(0, a + start.length)}\n${content}\n${text.slice(b)}`;
}
