// Regenerates the documentation's generated parts (the source contract, the commands, the
// configuration table) from the code: `npm run docs`. test/unit/readme.test.ts checks them.
import { readFileSync, writeFileSync } from 'node:fs';
import { URL } from 'node:url';
import { GENERATED_BLOCKS, withBlock } from '../dist/docs.js';

for (const block of GENERATED_BLOCKS) {
  const path = new URL(`../${block.file}`, import.meta.url);
  const text = readFileSync(path, 'utf8');
  try {
    writeFileSync(path, withBlock(text, block.name, block.generate()));
  } catch (err) {
    throw new Error(`${block.file}: ${err.message}`, { cause: err });
  }
}
