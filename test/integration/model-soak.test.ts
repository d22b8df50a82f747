/**
 * The model-based test (test/harness/model.ts) on sequences fast-check generates: random
 * changes, faults and operator actions, each ending with the sink equal to the source trades
 * that map now, once each. `npm run test:heavy` runs SLOTLINE_MODEL_RUNS sequences (default 3)
 * of a fixed seed, so that CI is a regression test, not a lottery; `scripts/soak-model.sh N`
 * runs N of a new seed, and fast-check prints the seed of any failure to replay it with
 * SLOTLINE_MODEL_SEED. The known cases run in `npm test` (model.test.ts).
 */
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { op, runSequence } from '../harness/model.js';

const RUNS = Number(process.env.SLOTLINE_MODEL_RUNS ?? '3');
const SEED = Number(
  process.env.SLOTLINE_MODEL_SEED ?? (process.env.SLOTLINE_MODEL_RUNS ? Date.now() : 20261127),
);

describe('model-based: every write path keeps the sink equal to the source', () => {
  it(
    `${RUNS} random sequences of changes, faults and operator actions`,
    async () => {
      let run = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 8, maxLength: 30 }), async (ops) => {
          run++;
          await runSequence(`model_${run}`, ops);
        }),
        { numRuns: RUNS, seed: SEED, endOnFailure: true, verbose: 1 },
      );
    },
    RUNS * 180_000,
  );
});
