import { describe, expect, it } from 'vitest';
import { InvalidRequest } from '../errors.js';
import {
  alignRange,
  bucketSpans,
  compareBuckets,
  isoSeconds,
  parseVerifyRequest,
  printedReport,
  syncRunAnswer,
  type VerifyReport,
} from './buckets.js';

const H = 3600;

describe('compareBuckets', () => {
  it('finds buckets whose count or hash differ, and buckets only one side has', () => {
    const source = [
      { bucket: 0, rows: 3, hash: '100' },
      { bucket: H, rows: 2, hash: '50' },
      { bucket: 2 * H, rows: 1, hash: '7' },
      { bucket: 4 * H, rows: 1, hash: '9' },
    ];
    const sink = [
      { bucket: 5 * H, rows: 1, hash: '1' }, // sink only
      { bucket: 0, rows: 3, hash: '100' }, // equal, in another order
      { bucket: H, rows: 2, hash: '51' }, // same count, other values
      { bucket: 2 * H, rows: 2, hash: '7' }, // a row too many
    ];
    expect(compareBuckets(source, sink)).toEqual([
      { bucket: H, sourceRows: 2, sinkRows: 2, sourceHash: '50', sinkHash: '51' },
      { bucket: 2 * H, sourceRows: 1, sinkRows: 2, sourceHash: '7', sinkHash: '7' },
      { bucket: 4 * H, sourceRows: 1, sinkRows: 0, sourceHash: '9', sinkHash: '0' },
      { bucket: 5 * H, sourceRows: 0, sinkRows: 1, sourceHash: '0', sinkHash: '1' },
    ]);
  });

  it('is empty for equal sides, and for two empty sides', () => {
    const s = [{ bucket: 0, rows: 1, hash: '123456789012345678901' }];
    expect(compareBuckets(s, [...s])).toEqual([]);
    expect(compareBuckets([], [])).toEqual([]);
  });
});

describe('bucketSpans', () => {
  it('merges adjacent buckets, once each, in time order', () => {
    expect(bucketSpans([5 * H, 0, H, 3 * H, H], H)).toEqual([
      { from: 0, to: 2 * H },
      { from: 3 * H, to: 4 * H },
      { from: 5 * H, to: 6 * H },
    ]);
    expect(bucketSpans([], H)).toEqual([]);
  });
});

describe('alignRange', () => {
  it('widens the range to whole buckets and keeps open ends open', () => {
    expect(alignRange({ from: 3601, to: 7201, bucketSeconds: H })).toEqual({
      from: 3600,
      to: 10800,
      bucketSeconds: H,
    });
    expect(alignRange({ from: null, to: null, bucketSeconds: 60 })).toEqual({
      from: null,
      to: null,
      bucketSeconds: 60,
    });
  });
});

describe('parseVerifyRequest', () => {
  const d = { bucketSeconds: H, lookbackSeconds: 86_400, now: 1_700_003_700, repair: true };

  it('defaults to the lookback window up to the start of the current bucket', () => {
    expect(parseVerifyRequest({}, d)).toEqual({
      from: 1_699_916_400, // now - 1 day, down to its hour
      to: 1_700_002_800,
      bucketSeconds: H,
      repair: true,
    });
    expect(parseVerifyRequest({}, { ...d, lookbackSeconds: 0 }).from).toBeNull();
  });

  it('takes unix seconds or ISO times, a bucket size and repair', () => {
    expect(
      parseVerifyRequest(
        { from: '2023-11-14T22:00:00Z', to: 1_700_000_000, bucketSeconds: 600, repair: false },
        d,
      ),
    ).toEqual({ from: 1_700_000_000 - 800, to: 1_700_000_400, bucketSeconds: 600, repair: false });
  });

  it.each([
    [{ from: 'yesterday' }, /from must be/],
    [{ from: -1 }, /from must be/],
    [{ to: 1.5 }, /to must be/],
    [{ from: 100, to: 100 }, /"to" must be after "from"/],
    [{ bucketSeconds: 59 }, /bucketSeconds/],
    [{ bucketSeconds: '3600' }, /bucketSeconds/],
    [{ repair: 'yes' }, /repair must be a boolean/],
    [{ everything: true }, /unknown field "everything"/],
  ])('refuses %j with a 400', (body, message) => {
    let err: unknown;
    try {
      parseVerifyRequest(body as Record<string, unknown>, d);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidRequest);
    expect((err as InvalidRequest).message).toMatch(message);
  });
});

describe('syncRunAnswer', () => {
  const report = (over: Partial<VerifyReport> = {}): VerifyReport => ({
    range: { from: 0, to: 7200, bucketSeconds: H },
    startedAt: '2024-01-01T00:00:00.000Z',
    durationMs: 1234,
    ok: true,
    buckets: { checked: 2, mismatched: 0, repaired: 0, remaining: 0 },
    rows: { source: 2000, sink: 2000, deadLettered: 0, recopied: 0, deleted: 0 },
    sinkBehind: false,
    mismatches: [],
    error: null,
    ...over,
  });

  it("has the old service's fields", () => {
    const a = syncRunAnswer(report());
    expect(a).toMatchObject({
      success: true,
      processed: 0,
      errors: 0,
      total: 2000,
      duration: 1234,
    });
    expect(a.message).toMatch(/in sync: 2 buckets match/);
  });

  it('counts repaired rows as processed and remaining buckets as errors', () => {
    const repaired = syncRunAnswer(
      report({
        buckets: { checked: 2, mismatched: 1, repaired: 1, remaining: 0 },
        rows: { source: 2000, sink: 1990, deadLettered: 0, recopied: 500, deleted: 3 },
      }),
    );
    expect(repaired).toMatchObject({ success: true, processed: 503, errors: 0 });
    const left = syncRunAnswer(
      report({
        ok: false,
        sinkBehind: true,
        buckets: { checked: 2, mismatched: 2, repaired: 0, remaining: 2 },
      }),
    );
    expect(left).toMatchObject({ success: false, errors: 2 });
    expect(left.message).toMatch(/2 of 2 buckets still differ.*behind/);
  });
});

describe('printedReport', () => {
  it('prints bucket and range times as ISO 8601 UTC, leaving the rest as it is', () => {
    const report: VerifyReport = {
      range: { from: 1_699_999_200, to: null, bucketSeconds: 3600 },
      startedAt: '2023-11-15T00:00:00.000Z',
      durationMs: 5,
      ok: false,
      buckets: { checked: 2, mismatched: 1, repaired: 0, remaining: 1 },
      rows: { source: 3, sink: 2, deadLettered: 0, recopied: 0, deleted: 0 },
      sinkBehind: false,
      mismatches: [
        { bucket: 1_700_002_800, sourceRows: 2, sinkRows: 1, sourceHash: '9', sinkHash: '4' },
      ],
      error: null,
    };
    expect(printedReport(report)).toEqual({
      ...report,
      range: { from: '2023-11-14T22:00:00Z', to: null, bucketSeconds: 3600 },
      mismatches: [
        {
          bucket: '2023-11-14T23:00:00Z',
          sourceRows: 2,
          sinkRows: 1,
          sourceHash: '9',
          sinkHash: '4',
        },
      ],
    });
    expect(isoSeconds(0)).toBe('1970-01-01T00:00:00Z');
  });
});
