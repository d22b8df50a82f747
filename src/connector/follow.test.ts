import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../admin/metrics.js';
import { createLogger } from '../log.js';
import { DeploymentFollower } from './follow.js';
import type { SwitchOutcome } from './switch.js';

/** A source whose views point at `views.schema`, ready or not (two catalog queries). */
function fakeSource(views: { schema: string | null; ready: boolean }): pg.Pool {
  return {
    query: async (text: string) => {
      if (text.includes('pg_rewrite'))
        return {
          rows:
            views.schema === null
              ? []
              : ['order_book_trades', 'pools'].map((t) => ({
                  view: t,
                  schema: views.schema,
                  tbl: t,
                })),
        };
      return { rows: [{ ready: views.ready ? '1' : '0' }] };
    },
  } as unknown as pg.Pool;
}

function follower(views: { schema: string | null; ready: boolean }, now: { t: number }) {
  const metrics = createMetrics({ version: 'test', defaultMetrics: false });
  const f = new DeploymentFollower({
    source: fakeSource(views),
    viewsSchema: 'app',
    pollMs: 1000,
    backoff: { initialMs: 1000, maxMs: 8000 },
    metrics,
    log: createLogger({ level: 'silent' }),
    now: () => now.t,
  });
  return { f, metrics };
}

const outcome = (from: string, to: string): SwitchOutcome =>
  ({
    from,
    to,
    lsn: 100n,
    generation: 2,
    copied: { pools: 1, order_book_trades: 10 },
    counts: {
      tradesWritten: 3,
      tradesRemoved: 1,
      tradesKept: 7,
      poolsRemoved: 0,
      poolsWritten: 1,
      lettersResolved: 0,
    },
    ms: 1500,
  }) as unknown as SwitchOutcome;

describe('DeploymentFollower', () => {
  it('wants a switch only once the views point at another deployment that is ready', async () => {
    const views = { schema: 'app_a' as string | null, ready: true };
    const now = { t: 0 };
    const { f, metrics } = follower(views, now);
    f.streaming('app_a');
    await f.check();
    expect(f.due()).toBeNull();
    expect(
      (await metrics.registry.getSingleMetricAsString('slotline_ponder_views_mismatch')).trim(),
    ).toMatch(/ 0$/);

    views.schema = 'app_b';
    views.ready = false;
    await f.check();
    expect(f.due()).toBeNull();
    expect(f.status()).toMatchObject({ schema: 'app_a', viewsPointAt: 'app_b', ready: false });
    expect(
      (await metrics.registry.getSingleMetricAsString('slotline_ponder_views_mismatch')).trim(),
    ).toMatch(/ 1$/);

    views.ready = true;
    let woken = false;
    void f.wanted().then(() => (woken = true));
    await f.check();
    await Promise.resolve();
    expect(woken).toBe(true);
    expect(f.due()).toBe('app_b');

    f.switched(outcome('app_a', 'app_b'));
    expect(f.due()).toBeNull();
    expect(f.status()).toMatchObject({
      schema: 'app_b',
      lastSwitch: { from: 'app_a', to: 'app_b', durationMs: 1500 },
    });
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/slotline_ponder_deployment_info\{schema="app_b"\} 1/);
    expect(text).not.toMatch(/schema="app_a"/);
    expect(text).toMatch(/slotline_ponder_views_mismatch 0/);
    expect(text).toMatch(/slotline_ponder_switches_total 1/);
  });

  it('after a failed switch waits out a backoff, and then copies even the same deployment again', async () => {
    const views = { schema: 'app_b' as string | null, ready: true };
    const now = { t: 10_000 };
    const { f } = follower(views, now);
    f.streaming('app_a');
    await f.check();
    expect(f.due()).toBe('app_b');
    f.failed('permission denied');
    expect(f.due()).toBeNull();
    expect(f.status().problem).toBe('permission denied');
    now.t += 8_001;
    expect(f.due()).toBe('app_b');
    // The views went back to the deployment streamed; the publication may have moved meanwhile.
    views.schema = 'app_a';
    await f.check();
    expect(f.due()).toBe('app_a');
    f.switched(outcome('app_a', 'app_a'));
    expect(f.due()).toBeNull();
  });

  it('says why views that cannot be resolved are not followed', async () => {
    const { f } = follower({ schema: null, ready: false }, { t: 0 });
    f.streaming('app_a');
    await f.check();
    expect(f.due()).toBeNull();
    expect(f.status().problem).toMatch(/has no order_book_trades view/);
  });
});
