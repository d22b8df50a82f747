/**
 * A Ponder deployment switch with the Kafka sink on: the new deployment's rows
 * reach Kafka as read events of the new schema, the stream goes on from the
 * switch's consistent point in both sinks, and the slot is acknowledged no
 * further than both.
 */
import { describe, expect, it } from 'vitest';
import { expectSlotAtCheckpoint, sinkTrades } from '../harness/compare.js';
import { startWithHttp } from '../harness/connector.js';
import { createTestContext } from '../harness/context.js';
import { call, waitReady } from '../harness/http.js';
import { eventCounts, kafkaForTests, kafkaSettings, readTopic } from '../harness/kafka-topic.js';
import { makePool, makeTrade, PonderDeployment, type PonderPool } from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';

const k = kafkaForTests('ponder-follow');
const VIEWS = 'app_views';

describe('following Ponder redeploys with Kafka', () => {
  it('sends the new deployment as read events of its schema, then streams it', async () => {
    await using ctx = await createTestContext('ponder_follow_kafka');
    const pools = Array.from({ length: 3 }, (_, i) => makePool(i));
    const deploy = async (schema: string, n: number, poolsOf: PonderPool[], bump: bigint) => {
      const app = await new PonderDeployment(ctx.source, { schema }).create();
      const trades = Array.from({ length: n }, (_, i) => {
        const t = makeTrade(i, poolsOf[i % 3]!);
        return i % 7 === 0 ? { ...t, price: (BigInt(t.price ?? '0') + bump).toString() } : t;
      });
      await app.backfill(poolsOf, trades);
      await app.markReady();
      await app.startRealtime();
      return app;
    };
    const A = await deploy('app_a', 200, pools, 0n);
    await A.publishViews(VIEWS);
    const { c, port } = await startWithHttp(
      ctx,
      kafkaSettings(ctx, k.broker.brokers, {
        SLOTLINE_PONDER_VIEWS_SCHEMA: VIEWS,
        SLOTLINE_PONDER_POLL_MS: '200',
      }),
    );
    await using _c = c;
    const sinkIs = async (app: PonderDeployment, what: string) => {
      const want = JSON.stringify(await app.trades());
      await waitFor(async () => JSON.stringify(await sinkTrades(ctx.sink)) === want || undefined, {
        timeoutMs: 60_000,
        what,
      });
    };
    await sinkIs(A, 'deployment A in TimescaleDB');
    await A.writeBlock({ trades: [makeTrade(1000, pools[0]!)] });

    const B = await deploy('app_b', 260, pools, 5n);
    await B.publishViews(VIEWS);
    await sinkIs(B, 'deployment B in TimescaleDB');
    await waitReady(port);
    const live = makeTrade(2000, pools[1]!);
    await B.writeBlock({ trades: [live] });
    await sinkIs(B, "B's live change in TimescaleDB");
    await expectSlotAtCheckpoint(ctx);

    const messages = await readTopic(k.kafka, `${ctx.slot}.trades`);
    const ofB = messages.filter((m) => m.value.source.schema === 'app_b');
    const reads = new Set(ofB.filter((m) => m.value.op === 'r').map((m) => m.value.after?.id));
    const history = (await B.trades()).map((t) => t.id).filter((id) => id !== live.id);
    expect(history.every((id) => reads.has(id))).toBe(true);
    const streamed = ofB.filter((m) => m.value.op !== 'r');
    expect(streamed.map((m) => m.value.after?.id)).toEqual([live.id]);
    // Nothing of A after the switch, and no streamed event twice.
    const switchLsn = Math.min(...ofB.map((m) => Number(m.lsn)));
    expect(
      messages.some((m) => m.value.source.schema === 'app_a' && Number(m.lsn) > switchLsn),
    ).toBe(false);
    expect([...eventCounts(messages).values()].every((n) => n === 1)).toBe(true);
    const ck = await ctx.sink.query<{ sink: string; state: string; source_schema: string | null }>(
      `SELECT sink, state, source_schema FROM slotline.checkpoints WHERE slot = $1 ORDER BY sink`,
      [ctx.slot],
    );
    expect(ck.rows.map((r) => [r.sink, r.state])).toEqual([
      ['kafka', 'streaming'],
      ['timescale', 'streaming'],
    ]);
    expect(ck.rows[1]?.source_schema).toBe('app_b');
    expect((await call(port, 'GET', '/status')).body.ponder).toMatchObject({ schema: 'app_b' });
    expect((await c.stop()).code, c.output()).toBe(0);
  });
});
