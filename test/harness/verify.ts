/**
 * The end of every fault test: `slotline verify` (the function the command
 * runs) finds no bucket that differs between source and sink.
 */
import { expect } from 'vitest';
import { parseVerifyRequest, type VerifyReport } from '../../src/verify/buckets.js';
import { runVerify } from '../../src/verify/verify.js';
import { createLogger } from '../../src/log.js';
import type { TestContext } from './context.js';

type Where = Pick<TestContext, 'sourceUrl' | 'sinkUrl' | 'slot'>;

export async function verify(
  ctx: Where,
  opts: { sourceSchema?: string; bucketSeconds?: number } = {},
): Promise<VerifyReport> {
  return runVerify({
    sourceUrl: ctx.sourceUrl,
    sinkUrl: ctx.sinkUrl,
    sourceSchema: opts.sourceSchema ?? 'public',
    sinkSchema: 'public',
    slot: ctx.slot,
    request: parseVerifyRequest(
      { to: 4_102_444_800 },
      {
        bucketSeconds: opts.bucketSeconds ?? 3600,
        lookbackSeconds: 0,
        now: Math.floor(Date.now() / 1000),
        repair: false,
      },
    ),
    log: createLogger({ level: 'silent' }),
  });
}

/** Verify reports zero mismatched buckets, and has compared every source trade. */
export async function expectVerifyClean(
  ctx: Where,
  opts: { sourceSchema?: string; minRows?: number } = {},
): Promise<VerifyReport> {
  const r = await verify(ctx, opts);
  expect(r.mismatches, JSON.stringify(r.mismatches.slice(0, 5))).toEqual([]);
  expect(r.buckets.mismatched).toBe(0);
  expect(r.ok).toBe(true);
  expect(r.rows.sink).toBe(r.rows.source);
  if (opts.minRows !== undefined) expect(r.rows.source).toBeGreaterThanOrEqual(opts.minRows);
  return r;
}
