#!/usr/bin/env node
/**
 * Fails when the modules in src/ import each other in a cycle, printing each cycle.
 *
 * Every relative import counts: `import`, `import type`, `export ... from`, side-effect imports
 * and dynamic `import()`. A type-only import vanishes at run time, but it still says that one
 * module knows the other: a cycle of them is the same tangle of layers (issue 12's
 * main.ts <-> admin/control.ts is type-only in one direction), and it breaks as soon as a
 * value is imported along the same edge.
 *
 * No dependency: the specifiers are read with regular expressions, which is enough for this
 * code base's style (imports at the top of a file, relative specifiers ending in `.js`).
 */
import console from 'node:console';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SRC = join(ROOT, 'src');

function sourceFiles(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

const FROM = /^[ \t]*(?:import|export)\s[^'";]*?\sfrom\s*['"]([^'"]+)['"]/gm;
const SIDE_EFFECT = /^[ \t]*import\s*['"]([^'"]+)['"]/gm;
const DYNAMIC = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

/** The files in src/ that `file` imports. */
function importsOf(file, known) {
  const text = readFileSync(file, 'utf8');
  const out = new Set();
  for (const re of [FROM, SIDE_EFFECT, DYNAMIC]) {
    for (const m of text.matchAll(re)) {
      const spec = m[1];
      if (!spec.startsWith('.')) continue;
      const base = resolve(dirname(file), spec);
      const candidates = [base.replace(/\.(m?js)$/, '.ts'), `${base}.ts`, join(base, 'index.ts')];
      const target = candidates.find((c) => known.has(c));
      if (target) out.add(target);
    }
  }
  return [...out];
}

/** Strongly connected components with more than one file, or a file importing itself (Tarjan). */
function tangles(graph) {
  let counter = 0;
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const out = [];
  const visit = (v) => {
    index.set(v, counter);
    low.set(v, counter);
    counter += 1;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v)) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
    }
    if (low.get(v) !== index.get(v)) return;
    const scc = [];
    let w;
    do {
      w = stack.pop();
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1 || graph.get(v).includes(v)) out.push(scc.sort());
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return out;
}

/** One shortest cycle through the first file of a component, for the message. */
function cycleThrough(graph, scc) {
  const members = new Set(scc);
  const start = scc[0];
  const previous = new Map([[start, null]]);
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift();
    for (const w of graph.get(v)) {
      if (w === start) {
        const path = [v];
        for (let p = previous.get(v); p !== null; p = previous.get(p)) path.unshift(p);
        return [...path, start];
      }
      if (members.has(w) && !previous.has(w)) {
        previous.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start];
}

const files = sourceFiles(SRC);
const known = new Set(files);
const graph = new Map(files.map((f) => [f, importsOf(f, known)]));
const rel = (f) => relative(ROOT, f);

let failed = false;
for (const scc of tangles(graph)) {
  const key = scc.map(rel).join(' ');
  const cycle = cycleThrough(graph, scc).map(rel).join(' -> ');
  failed = true;
  console.error(`check-cycles: import cycle: ${cycle}`);
  if (scc.length > 2) console.error(`  all files in this tangle: ${key}`);
}
if (failed) process.exit(1);
console.log(`check-cycles: ${files.length} files in src/, no import cycle`);
