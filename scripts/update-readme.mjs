// Regenerates the configuration table in README.md from src/config.ts (run `npm run docs`).
import { readFileSync, writeFileSync } from 'node:fs';
import { URL } from 'node:url';
import { configMarkdown } from '../dist/config.js';

const path = new URL('../README.md', import.meta.url);
const text = readFileSync(path, 'utf8');
const start = '<!-- config:start -->';
const end = '<!-- config:end -->';
const a = text.indexOf(start);
const b = text.indexOf(end);
if (a < 0 || b < a) throw new Error('README.md lacks the config markers');
writeFileSync(path, `${text.slice(0, a + start.length)}\n${configMarkdown()}\n${text.slice(b)}`);
