/**
 * The model-based test (test/harness/model.ts) on the cases issue 11 names, in `npm test`:
 * each sequence of changes, faults and operator actions ends with the sink equal to the
 * source trades that map now, once each, and no pending dead letter that maps.
 * model-soak.test.ts (`npm run test:heavy`) runs generated sequences.
 */
import { describe, it } from 'vitest';
import { KNOWN, runSequence, type Op } from '../harness/model.js';

const describeOps = (ops: readonly Op[]) => ops.map((o) => o.k).join(', ');

describe('model-based: the known cases keep the sink equal to the source', () => {
  it.each(KNOWN.map(([ops], i) => [i + 1, describeOps(ops), ops] as const))(
    'case %i: %s',
    async (i, _, ops) => {
      await runSequence(`model_known_${i}`, ops);
    },
    180_000,
  );
});
