/**
 * The documentation agrees with the code: the generated parts (source contract, commands,
 * configuration) are current, the README's first screen says what package.json and the source
 * checks say, and every relative link points at a file and heading that exist.
 * (test/integration/first-screen.test.ts runs the commands the first screen shows.)
 */
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../../src/cli/commands.js';
import { GENERATED_BLOCKS, blockIn } from '../../src/docs.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');
const README = read('README.md');
const DOCS = ['README.md', ...readdirSync(join(ROOT, 'docs')).map((f) => `docs/${f}`)];
/** The README up to its first section: what a newcomer reads first. */
const FIRST_SCREEN = README.slice(0, README.indexOf('\n## '));

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  for (const m of markdown.matchAll(/^#{1,6} +(.+)$/gm)) {
    out.add(
      (m[1] as string)
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N} _-]/gu, '')
        .replace(/ /g, '-'),
    );
  }
  return out;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? sourceFiles(join(dir, e.name))
      : e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')
        ? [join(dir, e.name)]
        : [],
  );
}

describe('generated documentation (regenerate with `npm run docs`)', () => {
  it.each(GENERATED_BLOCKS.map((b) => [`${b.file} ${b.name}`, b] as const))(
    '%s is what the code says',
    (_, b) => {
      expect(blockIn(read(b.file), b.name), `${b.file} lacks <!-- ${b.name}:start -->`).toBe(
        b.generate(),
      );
    },
  );

  it('lists every command', () => {
    for (const c of COMMANDS) expect(README).toContain(`\`slotline ${c.name}`);
  });
});

describe("the README's first screen", () => {
  it('says how to try it, install it, and what it needs, as package.json does', () => {
    const pkg = JSON.parse(read('package.json')) as {
      engines: { node: string };
      bin: Record<string, string>;
      scripts: Record<string, string>;
    };
    expect(FIRST_SCREEN).toContain('npm run demo');
    expect(FIRST_SCREEN).toContain('npm ci && npm run build');
    const node = /^>=(\d+\.\d+)$/.exec(pkg.engines.node)?.[1];
    expect(node, 'engines.node is >=X.Y').toBeDefined();
    expect(FIRST_SCREEN).toContain(`Node.js ${node}+`);
    expect(pkg.bin.slotline).toBe('dist/cli.js');
    expect(FIRST_SCREEN).toContain('node dist/cli.js');
    for (const s of ['test', 'test:heavy', 'demo', 'docs']) expect(pkg.scripts[s], s).toBeDefined();
    expect(FIRST_SCREEN).toMatch(/PostgreSQL 15\+ with `wal_level = logical`/);
    expect(FIRST_SCREEN).toMatch(/superuser/);
  });

  it('names as its common errors codes that the source checks raise, each with a Fix', () => {
    const codes = [...FIRST_SCREEN.matchAll(/^- `([a-z_]+)`: /gm)].map((m) => m[1] as string);
    expect(codes).toHaveLength(3);
    const src = sourceFiles(join(ROOT, 'src'))
      .map((f) => readFileSync(f, 'utf8'))
      .join('\n');
    for (const code of codes) {
      // The error carries its fix (a `fix:` remedy, printed as a `Fix:` line).
      const raised = new RegExp(`'${code}'[\\s\\S]{0,600}?(Fix:|fix:)`);
      expect(raised.test(src), `src raises ${code} with a Fix:`).toBe(true);
    }
  });

  it('fits roughly one screen', () => {
    expect(FIRST_SCREEN.split('\n').length).toBeLessThanOrEqual(75);
  });
});

describe('links in README.md and docs/', () => {
  it.each(DOCS)('%s: every relative link names a file and heading that exist', (file) => {
    const text = read(file);
    const broken: string[] = [];
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1] as string;
      if (/^[a-z]+:/.test(target)) continue;
      const [path = '', anchor] = target.split('#');
      const resolved = path === '' ? file : relative(ROOT, join(ROOT, dirname(file), path));
      if (!existsSync(join(ROOT, resolved))) broken.push(`${target}: no file ${resolved}`);
      else if (anchor && resolved.endsWith('.md') && !anchors(read(resolved)).has(anchor))
        broken.push(`${target}: no heading #${anchor} in ${resolved}`);
    }
    expect(broken).toEqual([]);
  });
});
