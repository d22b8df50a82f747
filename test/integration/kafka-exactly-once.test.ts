/**
 * Exactly-once into Kafka (SLOTLINE_KAFKA_DELIVERY=exactly-once, the default),
 * seen by a `read_committed` consumer: under continuous load, through 20
 * SIGKILLs of the connector, a broker restart (clean and by SIGKILL) and a
 * standby taking over, every change is in Kafka once, in order per pool; and
 * a leader fenced by a takeover cannot commit what it was writing.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel } from 'kafkajs';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatLsn, parseLsn, type Lsn } from '../../src/checkpoint/lsn.js';
import { claimEpoch, setCheckpointState } from '../../src/checkpoint/store.js';
import { SlotlineError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { Batch, type Change } from '../../src/sinks/batch.js';
import { KafkaSink } from '../../src/sinks/kafka.js';
import { readProgress } from '../../src/sinks/kafka-transactions.js';
import { applySinkSchema } from '../../src/sinks/schema.js';
import { expectSinkEqualsSource, expectSlotAtCheckpoint } from '../harness/compare.js';
import { startConnector, type ConnectorProcess } from '../harness/connector.js';
import { createTestContext, type TestContext } from '../harness/context.js';
import { call, freePort } from '../harness/http.js';
import { startKafka, type KafkaBroker } from '../harness/kafka.js';
import { kafkaSettings, readTopic, type Received } from '../harness/kafka-topic.js';
import {
  createPonderTables,
  insertPools,
  makePool,
  makeTrade,
  type PonderPool,
  type PonderTrade,
} from '../harness/ponder.js';
import { FAST } from '../harness/settings.js';
import { waitFor } from '../harness/wait.js';

const KILLS = 20;
const PARTITIONS = 3;

const external = Boolean(process.env.SLOTLINE_TEST_KAFKA_BROKERS);
let broker: KafkaBroker;
let kafka: Kafka;

beforeAll(async () => {
  broker = await startKafka();
  kafka = new Kafka({
    clientId: 'eos-test',
    brokers: [broker.brokers],
    logLevel: logLevel.NOTHING,
  });
});

afterAll(async () => {
  await broker?.[Symbol.asyncDispose]();
});

// ---- the fence ---------------------------------------------------------------------

const TX = { xid: 1, commitTime: 0n };

/** One source transaction of `n` trades committing at `lsn` (ending at lsn + 0x100), as a batch. */
function tradesBatch(from: number, n: number, lsn: Lsn): Batch {
  const b = new Batch(0);
  for (let i = 0; i < n; i++) {
    const change: Change = {
      kind: 'trade_upsert',
      lsn,
      op: 'insert',
      tx: TX,
      seq: i,
      trade: {
        tradeId: `t${from + i}`,
        time: '1700000000',
        chainId: '31337',
        poolId: `pool-${(from + i) % 4}`,
        symbol: 'MWETH/MUSDC',
        side: 'buy',
        price: '2500',
        quantity: '3',
        transactionId: null,
      },
    };
    b.changes.push(change);
  }
  b.checkpoint = lsn + 0x100n;
  b.commits = 1;
  return b;
}

/** A replica's Kafka sink, as the connector makes it, leading once `lead()` has run. */
function replica(ctx: TestContext, holder: string) {
  const sink = new KafkaSink({
    brokers: [broker.brokers],
    clientId: `eos-${holder}`,
    topics: { trades: `${ctx.slot}.trades`, pools: `${ctx.slot}.pools` },
    delivery: 'exactly-once',
    progressTopic: `${ctx.slot}.trades.progress`,
    transactionalId: `slotline.${ctx.slot}`,
    createTopics: true,
    partitions: PARTITIONS,
    replicationFactor: null,
    tombstones: false,
    ssl: false,
    sslCaFile: null,
    sasl: null,
    checkpointUrl: ctx.sinkUrl,
    slot: ctx.slot,
    sourceDb: 'ponder',
    sourceSchema: 'public',
    log: createLogger({ level: 'warn' }).child({ replica: holder }),
    // Small produce requests: a batch of a few thousand records takes many round trips,
    // so the takeover below lands while the old leader's transaction is open.
    maxRequestBytes: 2048,
  });
  return {
    sink,
    /** What a connector does once it holds the leader lock: open, claim the epoch, read where Kafka stands. */
    async lead(): Promise<Lsn | null> {
      await sink.open();
      await claimEpoch(ctx.sink, ctx.slot, { holder, address: null }); // the TimescaleDB sink's claim
      await sink.claimEpoch();
      return (await sink.checkpoint())?.lsn ?? null;
    },
  };
}

async function highWatermarks(topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.reduce((n, o) => n + Number(o.high), 0);
  } finally {
    await admin.disconnect();
  }
}

const ids = (messages: Received[]) => messages.map((m) => String(m.value.after?.id)).sort();

describe('exactly-once into Kafka', () => {
  it.skipIf(external)(
    'a leader fenced by a takeover cannot commit: its open transaction is aborted, its next one refused',
    async () => {
      await using ctx = await createTestContext('eos_fence');
      await applySinkSchema({
        url: ctx.sinkUrl,
        schema: 'public',
        columnstoreAfterSeconds: 0,
        log: createLogger({ level: 'warn' }),
      });
      // As after the initial snapshot: both sinks stream from 0/1000.
      for (const sink of ['timescale', 'kafka'])
        await setCheckpointState(ctx.sink, ctx.slot, sink, 'streaming', 0x1000n, 0x1000n);
      const trades = `${ctx.slot}.trades`;

      const a = replica(ctx, 'old-leader');
      const b = replica(ctx, 'new-leader');
      try {
        expect(await a.lead()).toBe(0x1000n);
        const first = tradesBatch(0, 50, 0x2000n);
        await a.sink.write(first);
        const afterFirst = await highWatermarks(trades);

        // The old leader starts a large transaction; once its first records are in the log
        // (uncommitted), the new leader takes over. Large enough (about 15 produce requests)
        // that the takeover lands while it is still open: with 3,000 records (two requests)
        // a quick writer sometimes committed first.
        const second = tradesBatch(50, 20_000, 0x3000n);
        const writing = a.sink.write(second).then(
          () => 'committed' as const,
          (err: unknown) => err,
        );
        await waitFor(async () => (await highWatermarks(trades)) > afterFirst + 20, {
          timeoutMs: 30_000,
          intervalMs: 20,
          what: "the old leader's transaction to be under way",
        });
        // The new leader's first use of the transactional id fences the old producer and
        // reads the position of the last committed transaction.
        expect(formatLsn((await b.lead())!)).toBe(formatLsn(first.checkpoint!));

        const outcome = await writing;
        expect(outcome, 'the old leader committed after the takeover').toBeInstanceOf(
          SlotlineError,
        );
        expect((outcome as SlotlineError).code).toBe('leadership_lost');
        // Nor can it start anew: a deposed leader never starts a producer that would fence back.
        await expect(a.sink.write(tradesBatch(9000, 5, 0x4000n))).rejects.toMatchObject({
          code: 'leadership_lost',
        });

        const committed = await readTopic(kafka, trades, { timeoutMs: 60_000 });
        expect(ids(committed)).toEqual(Array.from({ length: 50 }, (_, i) => `t${i}`).sort());
        const everything = await readTopic(kafka, trades, { isolation: 'read_uncommitted' });
        const aborted = everything.length - committed.length;
        expect(aborted, 'records of the aborted transaction in the log').toBeGreaterThan(0);

        // The new leader writes the same batch: now it is there, once.
        await b.sink.write(second);
        // EndTxn returns before the brokers have written the commit markers, and until they
        // have, a read_committed reader stops at the transaction's start (its last stable
        // offset): read again until the transaction shows, then count.
        let after: Received[] = [];
        await waitFor(async () => (after = await readTopic(kafka, trades)).length >= 20_050, {
          timeoutMs: 60_000,
          intervalMs: 200,
          what: "the new leader's transaction to be readable (its commit markers written)",
        });
        expect(after).toHaveLength(20_050);
        expect(new Set(ids(after)).size).toBe(20_050);
        // The progress record's partition gets its marker the same way.
        let progress: Awaited<ReturnType<typeof readProgress>> = null;
        await waitFor(
          async () => {
            progress = await readProgress(kafka, `${trades}.progress`, ctx.slot, {
              timeoutMs: 60_000,
            });
            return progress?.lsn === second.checkpoint;
          },
          { timeoutMs: 60_000, intervalMs: 200, what: "the new leader's progress record" },
        );
        expect(progress).toEqual({ lsn: second.checkpoint, partial: null });
        console.info(
          `fence: the old leader's transaction aborted with ${aborted} records written, invisible to read_committed; ` +
            `its next write refused (leadership_lost); the new leader resumed at ${formatLsn(first.checkpoint!)}`,
        );
      } finally {
        await a.sink.close();
        await b.sink.close();
      }
    },
  );

  it.skipIf(external)(
    `${KILLS} SIGKILLs under load, a broker restart and a standby takeover: every change once, in order per pool`,
    async () => {
      await using ctx = await createTestContext('eos_faults');
      await createPonderTables(ctx.source);
      const pools = Array.from({ length: 4 }, (_, i) => makePool(i));
      await insertPools(ctx.source, 'public', pools);
      const env = ctx.env({
        ...FAST,
        ...kafkaSettings(ctx, broker.brokers, { SLOTLINE_KAFKA_DELIVERY: 'exactly-once' }),
        // Small batches: kills land between and inside Kafka transactions, and the 300-row
        // source transactions span several of them (a half-sent transaction is resumed).
        SLOTLINE_BATCH_MAX_ROWS: '100',
        SLOTLINE_INFLIGHT_MAX_ROWS: '1000',
        SLOTLINE_STANDBY_POLL_MS: '250',
      });
      const kafkaMoved = kafkaProgressWatch(ctx);

      // First start: the initial snapshot (the pools), then streaming.
      const first = startConnector(env);
      await expectSlotAtCheckpoint(ctx);
      await kafkaMoved.after(null, 'the Kafka sink to stream', first);
      first.kill('SIGKILL');
      await first.exited;

      /** The faults, while the writer writes; returns the replica that leads at the end. */
      const faultsUnderLoad = async (
        writer: { stop(): Promise<void> },
        faults: string[],
        start: (extra?: Record<string, string>) => ConnectorProcess,
      ): Promise<ConnectorProcess> => {
        try {
          for (let k = 0; k < KILLS; k++) {
            const before = await kafkaMoved.now();
            const c = start();
            // Once this life has committed a Kafka transaction, at a random moment after.
            await kafkaMoved.after(before, `a Kafka transaction after start ${k + 1}`, c);
            await sleep(Math.floor(Math.random() * 400));
            c.kill('SIGKILL');
            expect((await c.exited).signal, c.output()).toBe('SIGKILL');
            faults.push('kill');
          }
          const [pa, pb] = [await freePort(), await freePort()];
          const a = start({ SLOTLINE_HTTP_PORT: String(pa) });
          await kafkaMoved.after(await kafkaMoved.now(), 'the leader to stream', a);
          for (const how of ['restart', 'kill'] as const) {
            const before = await kafkaMoved.now();
            if (how === 'restart') await broker.stop();
            else broker.kill();
            await broker.start();
            await kafkaMoved.after(before, `Kafka transactions after the broker ${how}`, a);
            faults.push(`broker ${how}`);
          }
          const b = start({ SLOTLINE_HTTP_PORT: String(pb) });
          await waitFor(
            async () =>
              (await call(pb, 'GET', '/readyz').catch(() => null))?.body.reason === 'standby',
            { timeoutMs: 30_000, what: 'the standby to wait' },
          );
          await kafkaMoved.after(
            await kafkaMoved.now(),
            'the leader to go on beside the standby',
            a,
          );
          a.kill('SIGKILL');
          await waitFor(async () => (await leaderGauge(pb)) === 1, {
            timeoutMs: 30_000,
            what: 'the standby to take over',
          });
          await kafkaMoved.after(await kafkaMoved.now(), 'Kafka transactions of the new leader', b);
          faults.push('standby takeover');
          return b;
        } finally {
          await writer.stop();
        }
      };

      const writer = startWriter(ctx, pools);
      const t0 = Date.now();
      const faults: string[] = [];
      const started: ConnectorProcess[] = [];
      const start = (extra: Record<string, string> = {}) => {
        const c = startConnector({ ...env, ...extra });
        started.push(c);
        return c;
      };
      try {
        const b = await faultsUnderLoad(writer, faults, start);
        const t1 = Date.now();
        await kafkaMoved.reaches(await currentWal(ctx), b);
        const drained = Date.now() - t1;
        await expectSinkEqualsSource(ctx, { timeoutMs: 90_000 });
        const trades = await readTopic(kafka, `${ctx.slot}.trades`);
        const poolEvents = await readTopic(kafka, `${ctx.slot}.pools`);
        const tally = expectEveryChangeOnce(trades, poolEvents, writer.expected, pools);
        expectOrderPerPool(trades);
        const all = await readTopic(kafka, `${ctx.slot}.trades`, {
          isolation: 'read_uncommitted',
        });
        console.info(
          `exactly-once: ${faults.filter((f) => f === 'kill').length} SIGKILLs, ${faults.filter((f) => f !== 'kill').join(', ')} ` +
            `in ${Math.round((t1 - t0) / 1000)} s (the backlog then drained in ${Math.round(drained / 1000)} s); ` +
            `${writer.expected.transactions} source transactions ` +
            `(${tally.inserts} inserts, ${tally.updates} updates, ${tally.deletes} deletes, ${tally.poolUpdates} pool updates); ` +
            `read_committed: ${tally.events} change events, ${tally.missing} missing, ${tally.duplicates} duplicates, per-pool order kept; ` +
            `${all.length - trades.length} trade records of aborted transactions in the log (read_uncommitted)`,
        );
        expect((await b.stop()).code, b.output()).toBe(0);
      } finally {
        await writer.stop();
        for (const c of started) c.kill('SIGKILL');
      }
      expect(faults.filter((f) => f === 'kill')).toHaveLength(KILLS);
    },
  );
});

// ---- the load ----------------------------------------------------------------------------

interface Expected {
  transactions: number;
  inserts: string[];
  updates: string[];
  deletes: string[];
  /** pool id → number of updates */
  poolUpdates: Map<string, number>;
}

/**
 * Source transactions until stopped: 5 trade inserts (every 25th: 300, more than a
 * batch), now and then an update and a delete of an earlier trade, and a pool update
 * in every other one; what each commits is recorded as the events Kafka must hold.
 */
function startWriter(ctx: TestContext, pools: PonderPool[]) {
  const expected: Expected = {
    transactions: 0,
    inserts: [],
    updates: [],
    deletes: [],
    poolUpdates: new Map(),
  };
  const trade = (k: number): PonderTrade =>
    makeTrade(k, pools[k % pools.length]!, { timestamp: 1_700_000_000 + k * 7 });
  let writing = true;
  let next = 0;
  const done = (async () => {
    const client = await ctx.source.connect();
    try {
      for (let t = 0; writing; t++) {
        const size = t % 25 === 0 ? 300 : 5;
        const rows = Array.from({ length: size }, () => trade(next++));
        const did = await sourceTransaction(client, rows, {
          update: t % 5 === 4 ? trade(next - 20).id : null,
          delete: t % 8 === 7 ? trade(next - 30).id : null,
          pool: t % 2 === 0 ? pools[t % pools.length]!.id : null,
        });
        expected.transactions++;
        expected.inserts.push(...rows.map((r) => r.id));
        if (did.update) expected.updates.push(did.update);
        if (did.delete) expected.deletes.push(did.delete);
        if (did.pool)
          expected.poolUpdates.set(did.pool, (expected.poolUpdates.get(did.pool) ?? 0) + 1);
        await sleep(20);
      }
    } finally {
      client.release();
    }
  })();
  return {
    expected,
    async stop() {
      writing = false;
      await done;
    },
  };
}

async function sourceTransaction(
  client: pg.PoolClient,
  rows: PonderTrade[],
  also: { update: string | null; delete: string | null; pool: string | null },
): Promise<{ update: string | null; delete: string | null; pool: string | null }> {
  await client.query('BEGIN');
  await client.query(
    `INSERT INTO order_book_trades (id, chain_id, price, quantity, timestamp, transaction_id, side, pool_id)
     SELECT * FROM json_to_recordset($1::json) AS r(id text, chain_id int, price numeric, quantity numeric,
            timestamp int, transaction_id text, side text, pool_id text)`,
    [JSON.stringify(rows)],
  );
  // An id updated or deleted once at most (each is a trade 20 or 30 back); a row already
  // deleted is not updated, so each statement that runs is one change.
  const updated = also.update
    ? ((
        await client.query(
          `UPDATE order_book_trades SET price = price + 1, side = 'SELL' WHERE id = $1`,
          [also.update],
        )
      ).rowCount ?? 0)
    : 0;
  const deleted = also.delete
    ? ((await client.query('DELETE FROM order_book_trades WHERE id = $1', [also.delete]))
        .rowCount ?? 0)
    : 0;
  if (also.pool)
    await client.query('UPDATE pools SET volume = volume + 1 WHERE id = $1', [also.pool]);
  await client.query('COMMIT');
  return {
    update: updated > 0 ? also.update : null,
    delete: deleted > 0 ? also.delete : null,
    pool: also.pool,
  };
}

// ---- what Kafka holds --------------------------------------------------------------------

/**
 * Each source change is one event, identified by (commit LSN, position): once in
 * its pool's partition, or, for a delete whose pool the connector did not know
 * (a trade sent before a restart), once in each partition. Every event the writer
 * committed is there; nothing else is.
 */
function expectEveryChangeOnce(
  trades: Received[],
  poolEvents: Received[],
  want: Expected,
  pools: PonderPool[],
) {
  let duplicates = 0;
  const events = (messages: Received[]) => {
    const byEvent = new Map<string, Received[]>();
    for (const m of messages) {
      const k = `${m.lsn}/${m.seq}`;
      byEvent.set(k, [...(byEvent.get(k) ?? []), m]);
    }
    const out: Received[] = [];
    for (const [k, copies] of byEvent) {
      const everywhere = copies[0]!.key !== null && 'id' in (copies[0]!.key as object);
      const partitions = new Set(copies.map((c) => c.partition));
      const expectedCopies = everywhere && copies[0]!.value.op === 'd' ? PARTITIONS : 1;
      if (copies.length !== expectedCopies || partitions.size !== copies.length) {
        duplicates += copies.length - expectedCopies;
        expect.soft(copies.length, `copies of event ${k}`).toBe(expectedCopies);
      }
      out.push(copies[0]!);
    }
    return out;
  };
  const tradeEvents = events(trades.filter((m) => m.seq >= 0));
  const ofOp = (op: string) =>
    tradeEvents
      .filter((m) => m.value.op === op)
      .map((m) => String((m.value.after ?? m.value.before)?.id))
      .sort();
  const poolStream = events(poolEvents.filter((m) => m.seq >= 0));
  const got = { c: ofOp('c'), u: ofOp('u'), d: ofOp('d') };
  const missing =
    countMissing(want.inserts, got.c) +
    countMissing(want.updates, got.u) +
    countMissing(want.deletes, got.d);
  expect(got.c, 'insert events').toEqual([...want.inserts].sort());
  expect(got.u, 'update events').toEqual([...want.updates].sort());
  expect(got.d, 'delete events').toEqual([...want.deletes].sort());
  expect(tradeEvents).toHaveLength(want.inserts.length + want.updates.length + want.deletes.length);
  const poolCounts = new Map<string, number>();
  for (const m of poolStream) {
    expect(m.value.op).toBe('u');
    const id = String(m.value.after?.id);
    poolCounts.set(id, (poolCounts.get(id) ?? 0) + 1);
  }
  for (const p of pools)
    expect(poolCounts.get(p.id) ?? 0, `updates of pool ${p.id}`).toBe(
      want.poolUpdates.get(p.id) ?? 0,
    );
  expect(duplicates, 'duplicate events').toBe(0);
  expect(missing, 'missing events').toBe(0);
  return {
    events: tradeEvents.length + poolStream.length,
    inserts: got.c.length,
    updates: got.u.length,
    deletes: got.d.length,
    poolUpdates: poolStream.length,
    missing,
    duplicates,
  };
}

function countMissing(want: string[], got: string[]): number {
  const have = new Set(got);
  return want.filter((id) => !have.has(id)).length;
}

/** Per pool key: one partition, and (commit LSN, position) strictly increasing in offset order. */
function expectOrderPerPool(trades: Received[]) {
  const byKey = new Map<string, Received[]>();
  for (const m of trades) {
    const key = JSON.stringify(m.key);
    if (!key.includes('pool_id')) continue;
    byKey.set(key, [...(byKey.get(key) ?? []), m]);
  }
  expect(byKey.size).toBeGreaterThan(0);
  for (const [key, list] of byKey) {
    expect(new Set(list.map((m) => m.partition)).size, `partitions of ${key}`).toBe(1);
    for (let i = 1; i < list.length; i++) {
      const a = list[i - 1]!;
      const b = list[i]!;
      const inOrder = a.lsn < b.lsn || (a.lsn === b.lsn && a.seq < b.seq);
      if (!inOrder) expect.fail(`${key}: (${a.lsn}, ${a.seq}) then (${b.lsn}, ${b.seq})`);
    }
  }
}

// ---- positions ---------------------------------------------------------------------------

/** The Kafka sink's position as its row in slotline.checkpoints shows it (written after each commit). */
function kafkaProgressWatch(ctx: TestContext) {
  const now = async (): Promise<Lsn | null> => {
    const r = await ctx.sink.query<{ lsn: string | null }>(
      `SELECT lsn::text FROM slotline.checkpoints WHERE slot = $1 AND sink = 'kafka'`,
      [ctx.slot],
    );
    const lsn = r.rows[0]?.lsn;
    return lsn == null ? null : parseLsn(lsn);
  };
  const until = async (
    ok: (lsn: Lsn) => boolean,
    what: string,
    c: ConnectorProcess | null,
    timeoutMs = 90_000,
  ) => {
    await waitFor(
      async () => {
        const lsn = await now().catch(() => null);
        return lsn !== null && ok(lsn);
      },
      { timeoutMs, intervalMs: 20, what },
    ).catch(async (err: unknown) => {
      const at = await now().catch(() => null);
      const where = `; the Kafka position is ${at === null ? 'unknown' : formatLsn(at)}`;
      throw new Error(`${(err as Error).message}${where}\n${c?.output().slice(-4000) ?? ''}`, {
        cause: err,
      });
    });
  };
  return {
    now,
    after: (before: Lsn | null, what: string, c: ConnectorProcess) =>
      until((lsn) => before === null || lsn > before, what, c),
    /** The backlog the faults left, drained: a longer deadline on a busy machine. */
    reaches: (target: Lsn, c: ConnectorProcess | null) =>
      until((lsn) => lsn >= target, `the Kafka position to reach ${formatLsn(target)}`, c, 300_000),
  };
}

async function currentWal(ctx: TestContext): Promise<Lsn> {
  const r = await ctx.source.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  return parseLsn(r.rows[0]!.lsn);
}

async function leaderGauge(port: number): Promise<number> {
  const text = (await call(port, 'GET', '/metrics').catch(() => null))?.text ?? '';
  return Number(/^slotline_leader (\d+)/m.exec(text)?.[1] ?? 0);
}
