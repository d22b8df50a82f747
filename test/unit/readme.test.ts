import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configMarkdown } from '../../src/config.js';

describe('README', () => {
  it('documents every setting exactly as src/config.ts defines it (regenerate with `npm run docs`)', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const m = /<!-- config:start -->\n([\s\S]*?)\n<!-- config:end -->/.exec(readme);
    expect(m?.[1]).toBe(configMarkdown());
  });

  it('names the two set-up commands', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    expect(readme).toContain('npm run demo');
    expect(readme).toContain('npm test');
  });
});
