/**
 * The lifecycle with both sinks, TimescaleDB and a real Kafka broker: an LSN
 * reset under continuous traffic and frequent acknowledgements replays
 * exactly from its target into both sinks, and forced reconnects under load
 * never send the uncommitted tail of a transaction.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { formatLsn, parseLsn } from '../../src/checkpoint/lsn.js';
import {
  expectSinkEqualsSource,
  expectSlotAtCheckpoint,
  positions,
  sinkCount,
  sourceTrades,
} from '../harness/compare.js';
import { ADMIN_TOKEN, startWithHttp } from '../harness/connector.js';
import { createTestContext, type TestContext } from '../harness/context.js';
import { call } from '../harness/http.js';
import { eventCounts, kafkaForTests, kafkaSettings, readTopic } from '../harness/kafka-topic.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
  type PonderPool,
} from '../harness/ponder.js';
import { kafkaSkip } from '../harness/tools.js';
import { waitFor } from '../harness/wait.js';

const RECONNECTS = 20;
const skipped = kafkaSkip('the lifecycle tests with Kafka') !== null;
const k = kafkaForTests('lifecycle', { skipped });

function kafkaEnv(ctx: TestContext, extra: Record<string, string> = {}): Record<string, string> {
  return kafkaSettings(ctx, k.broker.brokers, extra);
}

async function ponder(ctx: TestContext): Promise<PonderPool[]> {
  await createPonderTables(ctx.source);
  const pools = Array.from({ length: 3 }, (_, i) => makePool(i));
  await insertPools(ctx.source, 'public', pools);
  return pools;
}

/** Inserts small transactions of trades until stopped. */
function tradeWriter(ctx: TestContext, pools: PonderPool[], size = 10) {
  let writing = true;
  let next = 0;
  const done = (async () => {
    while (writing) {
      const rows = Array.from({ length: size }, () => makeTrade(next, pools[next++ % 3]!));
      await insertTrades(ctx.source, 'public', rows);
      await sleep(5);
    }
  })();
  return {
    async stop() {
      writing = false;
      await done;
    },
  };
}

async function activePid(ctx: TestContext): Promise<number | null> {
  const r = await ctx.source.query<{ pid: number | null }>(
    'SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1',
    [ctx.slot],
  );
  return r.rows[0]?.pid ?? null;
}

async function rowsWritten(port: number, sink: string): Promise<number> {
  const text = (await call(port, 'GET', '/metrics')).text;
  const m = new RegExp(`slotline_sink_rows_written_total\\{sink="${sink}"\\} (\\d+)`).exec(text);
  return Number(m?.[1] ?? 0);
}

describe.skipIf(skipped)('lifecycle with Kafka', () => {
  it('an LSN reset under continuous traffic and frequent acks replays exactly from its target, in both sinks', async () => {
    await using ctx = await createTestContext('reset_exact');
    const pools = await ponder(ctx);
    const { c, port } = await startWithHttp(
      ctx,
      kafkaEnv(ctx, { SLOTLINE_ACK_INTERVAL_MS: '10', SLOTLINE_STATUS_INTERVAL_MS: '100' }),
    );
    const w = tradeWriter(ctx, pools);
    let target = 0n;
    let answer: Record<string, unknown> = {};
    try {
      await waitFor(async () => (await sinkCount(ctx.sink)) > 300, {
        timeoutMs: 30_000,
        what: 'trades to stream',
      });
      // The confirmed flush moves every few ms: a target read a moment ago may
      // have closed by the time the stream stops (409, nothing changes); try again.
      for (let attempt = 0; attempt < 20; attempt++) {
        const p = await positions(ctx);
        target = parseLsn(p.confirmedFlush!);
        const a = await call(port, 'POST', '/admin/lsn-reset', {
          token: ADMIN_TOKEN,
          json: { lsn: formatLsn(target) },
        });
        if (a.status === 200 && a.body.mode === 'replay') {
          answer = a.body;
          break;
        }
        expect([200, 409], a.text).toContain(a.status);
      }
      expect(answer.mode, 'no reset was accepted in 20 attempts').toBe('replay');
      await sleep(1000);
    } finally {
      await w.stop();
    }
    const resetFrom = parseLsn(String(answer.from));
    await expectSinkEqualsSource(ctx);
    await expectSlotAtCheckpoint(ctx);
    // Kafka: every event that committed in [target, the checkpoint the reset moved back from)
    // is there twice (once before the reset, once replayed); nothing before the target is.
    const counts = eventCounts(await readTopic(k.kafka, `${ctx.slot}.trades`));
    let replayed = 0;
    for (const [key, n] of counts) {
      const lsn = BigInt(key.split('/')[0]!);
      if (lsn < target) expect(n, `event ${key} before the target`).toBe(1);
      else if (lsn < resetFrom) {
        expect(n, `event ${key} in the replayed range`).toBe(2);
        replayed++;
      } else expect(n, `event ${key} after the range`).toBe(1);
    }
    expect(replayed).toBeGreaterThan(0);
    // TimescaleDB wrote the replayed range again (its content is unchanged: idempotent).
    const sinkRows = await ctx.sink.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM analytics_trades WHERE source_lsn >= $1::pg_lsn AND source_lsn < $2::pg_lsn`,
      [formatLsn(target), formatLsn(resetFrom)],
    );
    const total = (await sourceTrades(ctx.source)).length;
    expect(await rowsWritten(port, 'timescale')).toBeGreaterThanOrEqual(
      total + Number(sinkRows.rows[0]!.n),
    );
    expect((await c.stop()).code).toBe(0);
    console.info(
      `LSN reset to ${formatLsn(target)} from ${String(answer.from)}: ${replayed} Kafka events replayed exactly once more`,
    );
  });

  it(`${RECONNECTS} forced reconnects under load send no uncommitted tail to Kafka`, async () => {
    await using ctx = await createTestContext('reconnects');
    const pools = await ponder(ctx);
    const { c } = await startWithHttp(
      ctx,
      kafkaEnv(ctx, { SLOTLINE_BATCH_MAX_ROWS: '100', SLOTLINE_INFLIGHT_MAX_ROWS: '1000' }),
    );
    const w = tradeWriter(ctx, pools, 25);
    let done = 0;
    try {
      while (done < RECONNECTS) {
        const before = (await positions(ctx)).checkpoint;
        await waitFor(
          async () =>
            (await positions(ctx)).checkpoint !== before && (await activePid(ctx)) !== null,
          { timeoutMs: 60_000, what: `streaming again before reconnect ${done + 1}` },
        );
        await sleep(Math.floor(Math.random() * 200));
        // The server ends the walsender: the connector's stream fails mid-transaction. (It may
        // have reconnected in between: then nothing is terminated and the round is tried again.)
        const r = await ctx.source.query(
          `SELECT pg_terminate_backend(active_pid) AS ok FROM pg_replication_slots
            WHERE slot_name = $1 AND active_pid IS NOT NULL`,
          [ctx.slot],
        );
        if (r.rowCount) done++;
      }
    } finally {
      await w.stop();
    }
    await expectSinkEqualsSource(ctx, { timeoutMs: 90_000 });
    await expectSlotAtCheckpoint(ctx);
    const messages = await readTopic(k.kafka, `${ctx.slot}.trades`);
    const counts = eventCounts(messages);
    const duplicates = [...counts.values()].filter((n) => n > 1).length;
    const ids = new Set(messages.map((m) => String(m.value.after?.id)));
    expect(ids.size).toBe((await sourceTrades(ctx.source)).length);
    // Transactions are far smaller than a batch, so every batch ends at a commit and every
    // reconnect flushes only what committed: no event reaches Kafka twice.
    expect(duplicates).toBe(0);
    expect(done).toBe(RECONNECTS);
    expect((await c.stop()).code).toBe(0);
    console.info(
      `${done} forced reconnects: ${messages.length} Kafka messages, ${ids.size} trades, ${duplicates} duplicates`,
    );
  });
});
