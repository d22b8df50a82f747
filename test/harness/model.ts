/**
 * The model-based test of every write path (DESIGN.md rule 8): sequences of source changes
 * (inserts, updates that move price and time, deletes, id changes, reorgs, trades of pools that
 * do not exist yet, rows with a NULL price and their fixes, pool arrivals and removals) mixed
 * with operator and fault actions (dead-letter retries, SIGKILL and restart, LSN resets,
 * backfills), all against real PostgreSQL with the connector running. The model is the source
 * itself: at the end the sink must hold exactly the source trades that map now (their pool
 * exists, their price is set), once each, and every pending dead letter must be a row that is
 * bad at the source now.
 *
 * With TimescaleDB, the sink's chunks are compressed halfway through each sequence, at every
 * restart after a kill and before every backfill, so the changes that follow reach the
 * columnstore (issue 15).
 *
 * test/integration/model.test.ts replays the known cases (`npm test`);
 * test/integration/model-soak.test.ts generates sequences with fast-check (`npm run
 * test:heavy`, and `scripts/soak-model.sh N`).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { expect, inject } from 'vitest';
import { sinkDuplicates, sinkTrades, sourceTrades, type TradeRow } from '../harness/compare.js';
import { ADMIN_TOKEN, startWithHttp, type ConnectorProcess } from '../harness/connector.js';
import { createTestContext, type TestContext } from '../harness/context.js';
import { call } from '../harness/http.js';
import {
  createPonderTables,
  insertPools,
  insertTrades,
  makePool,
  makeTrade,
  type PonderPool,
} from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';

const POOLS = 6;
/** Pools 0..2 exist from the start; 3..5 arrive (or not) during the sequence. */
const INITIAL_POOLS = 3;
const WEI = 10n ** 18n;

export type Op =
  | { k: 'insert'; n: number; pool: number; nullPrice: boolean }
  | { k: 'update'; pick: number; waiting: boolean; price: bigint; moveTime: boolean }
  | { k: 'delete'; pick: number; waiting: boolean }
  | { k: 'rekey'; pick: number }
  | { k: 'reorg'; pick: number; n: number }
  | { k: 'fixPrices' }
  | { k: 'addPool'; pool: number }
  | { k: 'dropPool'; pool: number }
  | { k: 'retry' }
  | { k: 'kill' }
  | { k: 'reset' }
  | { k: 'backfill' };

const amount = fc.bigInt({ min: 1n, max: (1n << 256n) - 1n });
/** One step of a sequence, as fast-check generates them. */
export const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant('insert' as const),
      n: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 200, max: 600 })),
      pool: fc.integer({ min: 0, max: POOLS - 1 }),
      nullPrice: fc.integer({ min: 0, max: 6 }).map((x) => x === 0),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant('update' as const),
      pick: fc.nat(),
      waiting: fc.boolean(),
      price: amount,
      moveTime: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('delete' as const),
      pick: fc.nat(),
      waiting: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('rekey' as const), pick: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('reorg' as const),
      pick: fc.nat(),
      n: fc.integer({ min: 1, max: 10 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ k: 'fixPrices' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('addPool' as const),
      pool: fc.integer({ min: INITIAL_POOLS, max: POOLS - 1 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('dropPool' as const),
      pool: fc.integer({ min: 0, max: POOLS - 1 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ k: 'retry' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'kill' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'reset' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'backfill' as const }) },
);

/** The source side of a sequence: Ponder-shaped tables and the rows it changes. */
class Source {
  readonly pools: PonderPool[] = Array.from({ length: POOLS }, (_, i) => makePool(i));
  private next = 0;
  private rekeys = 0;

  constructor(private readonly ctx: TestContext) {}

  async ids(): Promise<string[]> {
    const r = await this.ctx.source.query<{ id: string }>(
      'SELECT id FROM order_book_trades ORDER BY id COLLATE "C"',
    );
    return r.rows.map((x) => x.id);
  }

  /** A trade; with `waiting`, one whose pool does not exist (so it waits as a dead letter). */
  async pick(n: number, waiting = false): Promise<string | null> {
    const ids = waiting ? await this.waitingIds() : await this.ids();
    if (ids.length === 0) return waiting ? this.pick(n) : null;
    return ids[n % ids.length]!;
  }

  private async waitingIds(): Promise<string[]> {
    const r = await this.ctx.source.query<{ id: string }>(
      `SELECT id FROM order_book_trades t
        WHERE NOT EXISTS (SELECT 1 FROM pools p WHERE p.order_book = t.pool_id) ORDER BY id COLLATE "C"`,
    );
    return r.rows.map((x) => x.id);
  }

  async insert(n: number, pool: number, nullPrice: boolean): Promise<void> {
    const p = this.pools[pool]!;
    const rows = Array.from({ length: n }, () => {
      const t = makeTrade(this.next, p, { timestamp: 1_700_000_000 + this.next * 5 });
      this.next++;
      return nullPrice ? { ...t, price: null } : t;
    });
    await insertTrades(this.ctx.source, 'public', rows);
  }

  async update(id: string, price: bigint, moveTime: boolean): Promise<void> {
    await this.ctx.source.query(
      `UPDATE order_book_trades SET price = $2::numeric, side = CASE side WHEN 'buy' THEN 'sell' ELSE 'buy' END,
              timestamp = CASE WHEN $3 THEN timestamp + 86400 ELSE timestamp END WHERE id = $1`,
      [id, price.toString(), moveTime],
    );
  }

  async delete(id: string): Promise<void> {
    await this.ctx.source.query('DELETE FROM order_book_trades WHERE id = $1', [id]);
  }

  async rekey(id: string): Promise<void> {
    await this.ctx.source.query('UPDATE order_book_trades SET id = $2 WHERE id = $1', [
      id,
      `${id}-r${this.rekeys++}`,
    ]);
  }

  /** A reorg the way Ponder undoes blocks: delete, then re-insert some with new values, one transaction. */
  async reorg(from: number, n: number): Promise<void> {
    const all = await this.ids();
    const ids = all.slice(from % Math.max(1, all.length)).slice(0, n);
    if (ids.length === 0) return;
    const c = await this.ctx.source.connect();
    try {
      await c.query('BEGIN');
      const { rows } = await c.query<Record<string, unknown>>(
        'DELETE FROM order_book_trades WHERE id = ANY($1) RETURNING *',
        [ids],
      );
      const back = rows.filter((_, i) => i % 2 === 0);
      for (const r of back)
        await c.query(
          `INSERT INTO order_book_trades (id, chain_id, price, quantity, timestamp, transaction_id, side, pool_id)
           VALUES ($1, $2, $3::numeric + 7, $4, $5, $6, $7, $8)`,
          [
            r.id,
            r.chain_id,
            r.price ?? '1',
            r.quantity,
            r.timestamp,
            r.transaction_id,
            r.side,
            r.pool_id,
          ],
        );
      await c.query('COMMIT');
    } finally {
      c.release();
    }
  }

  async fixPrices(): Promise<void> {
    await this.ctx.source.query(
      `UPDATE order_book_trades SET price = '${1000n * WEI}'::numeric WHERE price IS NULL`,
    );
  }

  async addPool(i: number): Promise<void> {
    await this.ctx.source.query('DELETE FROM pools WHERE id = $1', [this.pools[i]!.id]);
    await insertPools(this.ctx.source, 'public', [this.pools[i]!]);
  }

  /** Only a pool no trade refers to: a trade keeps the symbol it was stored with. */
  async dropPool(i: number): Promise<void> {
    await this.ctx.source.query(
      `DELETE FROM pools p WHERE p.id = $1
          AND NOT EXISTS (SELECT 1 FROM order_book_trades t WHERE t.pool_id = p.order_book)`,
      [this.pools[i]!.id],
    );
  }

  /** What the sink must hold: the trades that map now. */
  expected(): Promise<TradeRow[]> {
    return sourceTrades(
      this.ctx.source,
      `price IS NOT NULL AND EXISTS (SELECT 1 FROM pools p WHERE p.order_book = order_book_trades.pool_id)`,
    );
  }
}

/** The connector as an operator runs it, restarted after every kill. */
class Operator {
  c!: ConnectorProcess;
  port = 0;

  constructor(private readonly ctx: TestContext) {}

  async start(): Promise<void> {
    const r = await startWithHttp(this.ctx, {
      SLOTLINE_BATCH_MAX_ROWS: '20',
      SLOTLINE_INFLIGHT_MAX_ROWS: '200',
      // The columnstore settings, with an age that leaves compressing to compress().
      ...(inject('timescale')
        ? { SLOTLINE_COLUMNSTORE_AFTER_SECONDS: String(50 * 366 * 86_400) }
        : {}),
    });
    this.c = r.c;
    this.port = r.port;
  }

  async kill(): Promise<void> {
    this.c.kill('SIGKILL');
    await this.c.exited;
    await this.compress();
    await this.start();
  }

  /** Moves every chunk of the sink's trades to the columnstore (TimescaleDB only). */
  async compress(): Promise<void> {
    if (!inject('timescale')) return;
    await this.ctx.sink.query(
      `SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('analytics_trades') c`,
    );
  }

  async retry(): Promise<void> {
    const a = await call(this.port, 'POST', '/admin/dead-letters/retry', {
      token: ADMIN_TOKEN,
      json: {},
    });
    expect([200, 409], a.text).toContain(a.status);
  }

  async reset(): Promise<void> {
    const s = await this.ctx.source.query<{ lsn: string }>(
      'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
      [this.ctx.slot],
    );
    const a = await call(this.port, 'POST', '/admin/lsn-reset', {
      token: ADMIN_TOKEN,
      json: { lsn: s.rows[0]!.lsn },
    });
    expect([200, 409], a.text).toContain(a.status);
  }

  async backfill(): Promise<void> {
    await this.compress();
    const a = await call(this.port, 'POST', '/admin/backfill', {
      token: ADMIN_TOKEN,
      json: { from: 0, chunkSize: 50 },
    });
    expect([202, 409], a.text).toContain(a.status);
    if (a.status !== 202) return;
    await waitFor(
      async () => {
        const s = await call(this.port, 'GET', '/status');
        const b = s.body.backfill as { state: string } | null;
        return b !== null && b.state !== 'running';
      },
      { timeoutMs: 60_000, what: 'the backfill to finish' },
    );
  }
}

async function apply(o: Op, src: Source, op: Operator): Promise<void> {
  switch (o.k) {
    case 'insert':
      return src.insert(o.n, o.pool, o.nullPrice);
    case 'update': {
      const id = await src.pick(o.pick, o.waiting);
      if (id) await src.update(id, o.price, o.moveTime);
      return;
    }
    case 'delete': {
      const id = await src.pick(o.pick, o.waiting);
      if (id) await src.delete(id);
      return;
    }
    case 'rekey': {
      const id = await src.pick(o.pick);
      if (id) await src.rekey(id);
      return;
    }
    case 'reorg':
      return src.reorg(o.pick, o.n);
    case 'fixPrices':
      return src.fixPrices();
    case 'addPool':
      return src.addPool(o.pool);
    case 'dropPool':
      return src.dropPool(o.pool);
    case 'retry':
      return op.retry();
    case 'kill':
      return op.kill();
    case 'reset':
      return op.reset();
    case 'backfill':
      return op.backfill();
  }
}

/** Waits until the connector has applied everything the source wrote so far. */
async function caughtUp(ctx: TestContext): Promise<void> {
  const { rows } = await ctx.source.query<{ lsn: string }>(
    `SELECT pg_logical_emit_message(true, 'model_test', 'caught up?')::text AS lsn`,
  );
  const mark = rows[0]!.lsn;
  await waitFor(
    async () => {
      const r = await ctx.sink.query<{ ok: boolean }>(
        `SELECT lsn >= $2::pg_lsn AS ok FROM slotline.checkpoints WHERE slot = $1 AND sink = 'timescale'`,
        [ctx.slot, mark],
      );
      return r.rows[0]?.ok === true;
    },
    { timeoutMs: 90_000, intervalMs: 100, what: `the sink checkpoint to pass ${mark}` },
  );
}

/** Letters still waiting for an operator whose rows map at the source now (should be none). */
async function lettersThatMap(ctx: TestContext, want: TradeRow[]): Promise<string[]> {
  const { rows } = await ctx.sink.query<{ row_key: string; reason_code: string }>(
    `SELECT row_key, reason_code FROM slotline.dead_letters
      WHERE slot = $1 AND state IN ('pending', 'retried') AND source_table LIKE '%order_book_trades'`,
    [ctx.slot],
  );
  const mappable = new Set(want.map((t) => t.id));
  return rows.filter((r) => mappable.has(r.row_key)).map((r) => `${r.row_key} (${r.reason_code})`);
}

async function check(ctx: TestContext, src: Source): Promise<void> {
  await caughtUp(ctx);
  // Dead-letter retries run after what triggered them is durable, each through its own
  // watermark window: the event that says they are done is the outcome itself (the sink
  // equals the source and no letter of a mappable row waits). Then the final look, after
  // everything written so far is applied, catches any late write that undoes it.
  await waitFor(
    async () => {
      const want = await src.expected();
      const same = JSON.stringify(await sinkTrades(ctx.sink)) === JSON.stringify(want);
      return same && (await lettersThatMap(ctx, want)).length === 0;
    },
    { timeoutMs: 120_000, intervalMs: 250, what: 'the sink to equal the mappable source trades' },
  ).catch(() => undefined);
  await caughtUp(ctx);
  const want = await src.expected();
  expect(await sinkTrades(ctx.sink)).toEqual(want);
  expect(await sinkDuplicates(ctx.sink)).toBe(0);
  // Every letter still waiting for an operator is a row that is bad at the source now.
  expect(await lettersThatMap(ctx, want)).toEqual([]);
}

/** The cases issue #11 names. */
export const KNOWN: [Op[]][] = [
  // dead-lettered for an unknown pool, deleted at the source, then the pool arrives
  [
    [
      { k: 'insert', n: 3, pool: 4, nullPrice: false },
      { k: 'delete', pick: 1, waiting: true },
      { k: 'addPool', pool: 4 },
    ],
  ],
  // dead-lettered, then updated (new price, new time), then the pool arrives
  [
    [
      { k: 'insert', n: 3, pool: 4, nullPrice: false },
      { k: 'update', pick: 0, waiting: true, price: 424242n, moveTime: true },
      { k: 'addPool', pool: 4 },
    ],
  ],
  // many trades of a new pool, the pool in the next transaction, letters still in flight
  [
    [
      { k: 'insert', n: 600, pool: 3, nullPrice: false },
      { k: 'addPool', pool: 3 },
    ],
  ],
  // a NULL price fixed at the source, then an operator's retry of everything
  [
    [
      { k: 'insert', n: 5, pool: 0, nullPrice: true },
      { k: 'fixPrices' },
      { k: 'retry' },
      { k: 'kill' },
    ],
  ],
];

/**
 * Runs one sequence in a fresh test context with the connector streaming, then checks the
 * outcome: the sink equals the source trades that map now, once each, and no pending dead
 * letter maps.
 */
export async function runSequence(name: string, ops: readonly Op[]): Promise<void> {
  await using ctx = await createTestContext(name);
  await createPonderTables(ctx.source);
  const src = new Source(ctx);
  await insertPools(ctx.source, 'public', src.pools.slice(0, INITIAL_POOLS));
  const operator = new Operator(ctx);
  await operator.start();
  try {
    for (const [i, o] of ops.entries()) {
      // Halfway, the history so far moves to the columnstore: what follows reaches it.
      if (i === Math.floor(ops.length / 2) && inject('timescale')) {
        await caughtUp(ctx);
        await operator.compress();
      }
      await apply(o, src, operator);
      await sleep(20);
    }
    await check(ctx, src);
  } finally {
    operator.c.kill('SIGKILL');
    await operator.c.exited;
  }
}
