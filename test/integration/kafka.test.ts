/**
 * The Kafka sink against a real KRaft broker: every trade arrives, in order
 * per pool, with the source's exact values; a broker outage and a SIGKILL of
 * the connector lose nothing, and the slot is never acknowledged past what
 * Kafka holds; without SLOTLINE_KAFKA_BROKERS kafkajs is not even loaded.
 */
import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLsn } from '../../src/checkpoint/lsn.js';
import {
  expectSinkEqualsSource,
  expectSlotAtCheckpoint,
  positions,
  sinkCount,
  sourceTrades,
} from '../harness/compare.js';
import { startConnector } from '../harness/connector.js';
import { createTestContext, type TestContext } from '../harness/context.js';
import { startKafka, type KafkaBroker } from '../harness/kafka.js';
import { readTopic as readAll, type Received } from '../harness/kafka-topic.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
  UINT256_MAX,
  type PonderPool,
} from '../harness/ponder.js';
import { FAST } from '../harness/settings.js';
import { kafkaSkip } from '../harness/tools.js';
import { waitFor } from '../harness/wait.js';

const skipped = kafkaSkip('the Kafka sink tests') !== null;
let broker: KafkaBroker;
let kafka: Kafka;

beforeAll(async () => {
  if (skipped) return;
  broker = await startKafka();
  kafka = new Kafka({
    clientId: 'slotline-kafka-test',
    brokers: [broker.brokers],
    logLevel: logLevel.NOTHING,
  });
});

afterAll(async () => {
  await broker?.[Symbol.asyncDispose]();
});

function topicsOf(ctx: TestContext) {
  return { trades: `${ctx.slot}.trades`, pools: `${ctx.slot}.pools` };
}

function kafkaEnv(ctx: TestContext, extra: Record<string, string> = {}): Record<string, string> {
  const t = topicsOf(ctx);
  return ctx.env({
    ...FAST,
    SLOTLINE_KAFKA_BROKERS: broker.brokers,
    SLOTLINE_KAFKA_TOPIC_TRADES: t.trades,
    SLOTLINE_KAFKA_TOPIC_POOLS: t.pools,
    SLOTLINE_KAFKA_TOPIC_PARTITIONS: '3',
    ...extra,
  });
}

const readTopic = (topic: string) => readAll(kafka, topic, 30_000);

async function kafkaCheckpoint(ctx: TestContext): Promise<bigint | null> {
  const r = await ctx.sink.query<{ lsn: string | null }>(
    `SELECT lsn::text FROM slotline.checkpoints WHERE slot = $1 AND sink = 'kafka'`,
    [ctx.slot],
  );
  const lsn = r.rows[0]?.lsn;
  return lsn == null ? null : parseLsn(lsn);
}

async function confirmedFlush(ctx: TestContext): Promise<bigint | null> {
  const r = await ctx.source.query<{ lsn: string | null }>(
    'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
    [ctx.slot],
  );
  const lsn = r.rows[0]?.lsn;
  return lsn == null ? null : parseLsn(lsn);
}

/** Waits until Kafka's stored checkpoint covers every write made so far at the source. */
async function kafkaCaughtUp(ctx: TestContext, timeoutMs = 60_000): Promise<void> {
  const r = await ctx.source.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  const target = parseLsn(r.rows[0]!.lsn);
  await waitFor(async () => ((await kafkaCheckpoint(ctx)) ?? 0n) >= target, {
    timeoutMs,
    what: `the Kafka checkpoint to reach ${r.rows[0]!.lsn}`,
  });
}

/**
 * Drops re-sent copies (same commit LSN and trade id, the first one kept) and
 * checks the rest: one partition per pool key, and within it strictly
 * increasing (commit LSN, position in the transaction), i.e. commit order.
 */
function dedupeAndCheckOrder(messages: Received[]): { unique: Received[]; duplicates: Received[] } {
  const seen = new Set<string>();
  const unique: Received[] = [];
  const duplicates: Received[] = [];
  const ordered = [...messages].sort((a, b) => a.partition - b.partition || a.offset - b.offset);
  for (const m of ordered) {
    const id = `${m.lsn}/${String(m.value.after?.id ?? m.value.before?.id)}`;
    if (seen.has(id)) duplicates.push(m);
    else {
      seen.add(id);
      unique.push(m);
    }
  }
  const byKey = new Map<string, Received[]>();
  for (const m of unique) {
    const k = JSON.stringify(m.key);
    byKey.set(k, [...(byKey.get(k) ?? []), m]);
  }
  for (const [key, list] of byKey) {
    expect(new Set(list.map((m) => m.partition)).size, `partitions of key ${key}`).toBe(1);
    for (let i = 1; i < list.length; i++) {
      const a = list[i - 1]!;
      const b = list[i]!;
      const inOrder = a.lsn < b.lsn || (a.lsn === b.lsn && (a.seq < b.seq || a.seq === -1));
      expect(inOrder, `key ${key}: (${a.lsn}, ${a.seq}) then (${b.lsn}, ${b.seq})`).toBe(true);
    }
  }
  return { unique, duplicates };
}

/** Every source trade is in Kafka once (after dropping re-sent copies), with the source's exact values. */
async function expectKafkaEqualsSource(ctx: TestContext, pools: PonderPool[], unique: Received[]) {
  const source = await sourceTrades(ctx.source);
  const coin = new Map(pools.map((p) => [p.order_book, p.coin]));
  const got = unique
    .map((m) => m.value.after as Record<string, unknown>)
    .sort((a, b) => (String(a.id) < String(b.id) ? -1 : 1));
  expect(got.length).toBe(source.length);
  expect(
    got.map((a) => ({
      id: a.id,
      price: a.price,
      quantity: a.quantity,
      ts: String(a.timestamp),
      side: a.side,
      pool_id: a.pool_id,
      transaction_id: a.transaction_id,
    })),
  ).toEqual(source);
  for (const a of got) {
    expect(a.volume).toBe((BigInt(a.price as string) * BigInt(a.quantity as string)).toString());
    expect(a.symbol).toBe(coin.get(a.pool_id as string));
  }
  for (const m of unique) expect(m.key).toEqual({ pool_id: m.value.after?.pool_id });
}

/** Inserts trades in transactions of `sizeOf(n)` rows (default 5) until stopped. */
function startWriter(
  ctx: TestContext,
  pools: PonderPool[],
  opts: { from: number; sizeOf?: (n: number) => number; pauseMs?: number },
) {
  let writing = true;
  let next = opts.from;
  let n = 0;
  const done = (async () => {
    while (writing) {
      const size = opts.sizeOf?.(n++) ?? 5;
      const rows = Array.from({ length: size }, () => {
        const k = next++;
        return makeTrade(k, pools[k % pools.length]!);
      });
      await insertTrades(ctx.source, 'public', rows);
      if (opts.pauseMs) await sleep(opts.pauseMs);
    }
  })();
  return {
    get written() {
      return next - opts.from;
    },
    async stop() {
      writing = false;
      await done;
    },
  };
}

describe.skipIf(skipped)('Kafka sink', () => {
  it('sends N trades as N messages: snapshot and stream, per-pool order, exact values', async () => {
    await using ctx = await createTestContext('kafka_exact');
    await createPonderTables(ctx.source);
    const pools = Array.from({ length: 4 }, (_, i) => makePool(i));
    await insertPools(ctx.source, 'public', pools);
    // 200 trades before the first start: the initial snapshot sends them as op 'r'.
    await insertTrades(
      ctx.source,
      'public',
      Array.from({ length: 200 }, (_, k) => makeTrade(k, pools[k % 4]!, { uint256: k % 10 === 0 })),
    );
    // At info: the test reads which produce encoding kafkajs was loaded with.
    await using c = startConnector({ ...kafkaEnv(ctx), SLOTLINE_LOG_LEVEL: 'info' });
    // The snapshot is done once the Kafka sink streams; what follows is streamed.
    await waitFor(async () => (await kafkaCheckpoint(ctx).catch(() => null)) !== null, {
      timeoutMs: 30_000,
      what: 'the initial snapshot',
    });

    // 1,365 in transactions of 7 from 3 concurrent writers, then the other 435 in one transaction.
    let k = 200;
    const writer = async () => {
      for (let t = 0; t < 65; t++) {
        const rows = Array.from({ length: 7 }, () => k++).map((i) =>
          makeTrade(i, pools[i % 4]!, { uint256: i % 10 === 0 }),
        );
        await insertTrades(ctx.source, 'public', rows);
      }
    };
    await Promise.all([writer(), writer(), writer()]);
    const streamed = k - 200;
    await ctx.source.query(
      `INSERT INTO order_book_trades (id, chain_id, price, quantity, timestamp, transaction_id, side, pool_id)
       SELECT 'big-' || g, 31337, ($1::numeric - g), g::numeric * 1000000000000000, 1700000000 + g,
              '0xbig', CASE WHEN g % 2 = 0 THEN 'buy' ELSE 'sell' END, ($2::text[])[1 + g % 4]
         FROM generate_series(1, $3::int) g`,
      [UINT256_MAX, pools.map((p) => p.order_book), 2000 - 200 - streamed],
    );
    expect(await ctx.source.query('SELECT 1 FROM order_book_trades')).toHaveProperty(
      'rowCount',
      2000,
    );

    await kafkaCaughtUp(ctx);
    const messages = await readTopic(topicsOf(ctx).trades);
    expect(messages).toHaveLength(2000);
    const { unique, duplicates } = dedupeAndCheckOrder(messages);
    expect(duplicates).toEqual([]);
    await expectKafkaEqualsSource(ctx, pools, unique);
    // Written by slotline's own produce encoding (kafka-produce.ts), which the broker accepted.
    expect(c.output()).toContain("kafkajs loaded with slotline's produce request encoding");
    expect(messages.filter((m) => m.value.op === 'r')).toHaveLength(200);
    expect(messages.filter((m) => m.value.op === 'c')).toHaveLength(1800);
    const big = messages.filter((m) => String(m.value.after?.id).startsWith('big-'));
    expect(new Set(big.map((m) => m.lsn)).size).toBe(1); // one transaction …
    expect(new Set(big.map((m) => m.seq)).size).toBe(big.length); // … with distinct positions
    expect(big[0]?.value.source).toMatchObject({
      connector: 'slotline',
      table: 'order_book_trades',
      schema: 'public',
      snapshot: 'false',
      lsn: Number(big[0]!.lsn),
    });
    expect(typeof big[0]?.value.source.txId).toBe('number');

    const poolMessages = await readTopic(topicsOf(ctx).pools);
    expect(poolMessages.map((m) => m.value.op)).toEqual(['r', 'r', 'r', 'r']);
    expect(new Set(poolMessages.map((m) => m.value.after?.id))).toEqual(
      new Set(pools.map((p) => p.id)),
    );

    // TimescaleDB is as exact as ever, and once idle all three positions agree.
    await expectSinkEqualsSource(ctx);
    await expectSlotAtCheckpoint(ctx);
    // Idle acknowledgements keep moving both, so compare them as they are now.
    await waitFor(
      async () => (await kafkaCheckpoint(ctx)) === parseLsn((await positions(ctx)).checkpoint!),
      { timeoutMs: 60_000, what: 'the Kafka checkpoint to equal the TimescaleDB checkpoint' },
    );
    expect((await c.stop()).code, c.output()).toBe(0);
  });

  it.skipIf(Boolean(process.env.SLOTLINE_TEST_KAFKA_BROKERS))(
    'rides out a broker outage: nothing missing, the slot never acked past Kafka, TimescaleDB keeps going',
    async () => {
      await using ctx = await createTestContext('kafka_outage');
      await createPonderTables(ctx.source);
      const pools = Array.from({ length: 4 }, (_, i) => makePool(i));
      await insertPools(ctx.source, 'public', pools);
      await using c = startConnector(kafkaEnv(ctx));
      const writer = startWriter(ctx, pools, { from: 0, pauseMs: 20 });

      // The invariant, sampled every 100 ms from before the outage until the end:
      // the slot's confirmed flush never passes what Kafka has stored.
      const samples: { slot: bigint; kafka: bigint }[] = [];
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          // Slot first: the Kafka checkpoint only grows, so reading it second is the safe order.
          const slot = await confirmedFlush(ctx).catch(() => null);
          const k = await kafkaCheckpoint(ctx).catch(() => null); // before set-up: no table yet
          if (slot !== null && k !== null) samples.push({ slot, kafka: k });
          await sleep(100);
        }
      })();
      try {
        await waitFor(async () => writer.written > 300 && (await kafkaCheckpoint(ctx)) !== null, {
          timeoutMs: 30_000,
          what: 'streaming into Kafka',
        });
        await kafkaCaughtUp(ctx);

        await broker.stop();
        await sleep(1_000);
        const frozen = await kafkaCheckpoint(ctx);
        const timescaleBefore = await sinkCount(ctx.sink);
        await sleep(3_000);
        // Down: Kafka's checkpoint stands still, TimescaleDB goes on receiving.
        expect(await kafkaCheckpoint(ctx)).toBe(frozen);
        expect(await sinkCount(ctx.sink)).toBeGreaterThan(timescaleBefore);
        expect((await confirmedFlush(ctx))!).toBeLessThanOrEqual(frozen!);

        await broker.start();
        await sleep(1_000);
        await writer.stop();
        await kafkaCaughtUp(ctx);
      } finally {
        sampling = false;
        await sampler;
        await writer.stop();
      }
      expect(samples.length).toBeGreaterThan(40);
      const passed = samples.filter((s) => s.slot > s.kafka);
      expect(passed, 'samples where the slot was acked past Kafka').toEqual([]);

      const { unique, duplicates } = dedupeAndCheckOrder(await readTopic(topicsOf(ctx).trades));
      await expectKafkaEqualsSource(ctx, pools, unique);
      console.info(
        `broker outage: ${unique.length} trades in Kafka, ${duplicates.length} re-sent copies`,
      );
      await expectSinkEqualsSource(ctx);
      await expectSlotAtCheckpoint(ctx);
      expect(c.output()).toMatch(/write failed: kafka: /);
      expect((await c.stop()).code, c.output()).toBe(0);
    },
  );

  it('at-least-once, survives SIGKILL under load: every trade in Kafka, re-sent copies only after the stored checkpoint', async () => {
    await using ctx = await createTestContext('kafka_kill9');
    await createPonderTables(ctx.source);
    const pools = Array.from({ length: 4 }, (_, i) => makePool(i));
    await insertPools(ctx.source, 'public', pools);
    const env = kafkaEnv(ctx, {
      SLOTLINE_KAFKA_DELIVERY: 'at-least-once',
      SLOTLINE_BATCH_MAX_ROWS: '200',
      SLOTLINE_INFLIGHT_MAX_ROWS: '2000',
    });
    const writer = startWriter(ctx, pools, {
      from: 0,
      sizeOf: (n) => (n % 7 === 0 ? 200 : 5),
      pauseMs: 5,
    });
    let before: bigint;
    try {
      const first = startConnector(env);
      await waitFor(
        async () => ((await kafkaCheckpoint(ctx)) ?? 0n) > 0n && writer.written > 1_000,
        {
          timeoutMs: 30_000,
          what: 'streaming into Kafka under load',
        },
      );
      await sleep(300);
      before = (await kafkaCheckpoint(ctx))!;
      first.kill('SIGKILL');
      expect((await first.exited).signal, first.output()).toBe('SIGKILL');
      await sleep(500);
    } finally {
      await writer.stop();
    }
    await using second = startConnector(env);
    await kafkaCaughtUp(ctx);

    const { unique, duplicates } = dedupeAndCheckOrder(await readTopic(topicsOf(ctx).trades));
    await expectKafkaEqualsSource(ctx, pools, unique);
    console.info(
      `SIGKILL: ${unique.length} trades in Kafka, ${duplicates.length} re-sent copies, all after ${before}`,
    );
    const early = duplicates.filter((d) => d.lsn <= before);
    expect(early, 'copies of changes covered by the stored checkpoint').toEqual([]);
    await expectSinkEqualsSource(ctx);
    await expectSlotAtCheckpoint(ctx);
    expect((await second.stop()).code, second.output()).toBe(0);
  });

  it('a Kafka sink enabled on a running slot starts from there, and says so', async () => {
    await using ctx = await createTestContext('kafka_late');
    await createPonderTables(ctx.source);
    const pools = [makePool(0), makePool(1)];
    await insertPools(ctx.source, 'public', pools);
    const plain = startConnector(ctx.env(FAST));
    await insertTrades(
      ctx.source,
      'public',
      [0, 1, 2].map((k) => makeTrade(k, pools[k % 2]!)),
    );
    await expectSinkEqualsSource(ctx);
    expect((await plain.stop()).code, plain.output()).toBe(0);

    await using c = startConnector(kafkaEnv(ctx));
    const later = [10, 11, 12, 13].map((k) => makeTrade(k, pools[k % 2]!));
    await waitFor(async () => (await kafkaCheckpoint(ctx)) !== null, {
      timeoutMs: 30_000,
      what: 'the Kafka checkpoint row',
    });
    await insertTrades(ctx.source, 'public', later);
    await kafkaCaughtUp(ctx);
    const got = await readTopic(topicsOf(ctx).trades);
    expect(got.map((m) => m.value.after?.id).sort()).toEqual(later.map((t) => t.id).sort());
    expect(c.output()).toContain('Kafka sink newly enabled');
    await expectSinkEqualsSource(ctx);
    expect((await c.stop()).code, c.output()).toBe(0);
  });
});

describe('without SLOTLINE_KAFKA_BROKERS', () => {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  /** Opens the sinks a config makes, in a fresh node, and reports whether kafkajs got loaded. */
  function probe(env: Record<string, string>): Promise<{ sinks: string[]; kafkajs: boolean }> {
    const script = `
      import { createRequire } from 'node:module';
      import { sep } from 'node:path';
      const require = createRequire(process.cwd() + sep);
      const { loadConfig } = await import('./dist/config.js');
      const { createLogger } = await import('./dist/log.js');
      const { createSinks } = await import('./dist/sinks/index.js');
      const sinks = createSinks(loadConfig(${JSON.stringify(env)}), createLogger({ level: 'silent' }));
      for (const s of sinks) await s.open();
      const kafkajs = Object.keys(require.cache).some((f) => f.includes(sep + 'kafkajs' + sep));
      for (const s of sinks) await s.close();
      console.log(JSON.stringify({ sinks: sinks.map((s) => s.name), kafkajs }));`;
    return new Promise((resolve, reject) =>
      execFile(
        process.execPath,
        ['--input-type=module', '-e', script],
        { cwd: root, env: { PATH: process.env.PATH ?? '' } },
        (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout)),
      ),
    );
  }
  const base = {
    SLOTLINE_SOURCE_URL: 'postgres://u@127.0.0.1:1/source',
    SLOTLINE_SINK_URL: 'postgres://u@127.0.0.1:1/sink',
  };

  it('no Kafka sink is made and kafkajs is never loaded (the probe does see it when brokers are set)', async () => {
    expect(await probe(base)).toEqual({ sinks: ['timescale'], kafkajs: false });
    expect(await probe({ ...base, SLOTLINE_KAFKA_BROKERS: '127.0.0.1:1' })).toEqual({
      sinks: ['timescale', 'kafka'],
      kafkajs: true,
    });
  });
});
