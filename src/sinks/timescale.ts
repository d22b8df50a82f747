import pg from 'pg';
import { type Lsn, formatLsn } from '../checkpoint/lsn.js';
import {
  advanceCheckpoint,
  readCheckpoint,
  resetCheckpoint,
  setCheckpointState,
  type Checkpoint,
} from '../checkpoint/store.js';
import { classifyError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Batch } from './batch.js';
import { coalesce, type Segment } from './coalesce.js';
import type { Sink } from './sink.js';
import { quoteIdent } from '../sql.js';

export interface TimescaleSinkOptions {
  url: string;
  /** Schema of analytics_trades and pools (SLOTLINE_SINK_SCHEMA, default public). */
  schema: string;
  slot: string;
  log: Logger;
}

export const TIMESCALE_SINK = 'timescale';

/**
 * Writes batches into TimescaleDB (or plain PostgreSQL): one transaction per
 * batch holding the rows and the checkpoint. Values arrive as text in one JSON
 * parameter per statement and are cast in SQL, so no amount passes through a
 * JS number. Every write is guarded by source_lsn: replaying a change, or
 * applying an older one, never overwrites a newer version of a row.
 */
export class TimescaleSink implements Sink {
  readonly name = TIMESCALE_SINK;
  private pool: pg.Pool | null = null;
  private readonly sql: ReturnType<typeof statements>;

  constructor(private readonly opts: TimescaleSinkOptions) {
    this.sql = statements(quoteIdent(opts.schema));
  }

  async open(): Promise<void> {
    if (this.pool) return;
    this.pool = new pg.Pool({
      connectionString: this.opts.url,
      max: 2,
      application_name: 'slotline-sink',
    });
    // An idle client that loses its connection must not crash the process.
    this.pool.on('error', (err) =>
      this.opts.log.warn({ err: classifyError(err, 'sink') }, 'idle sink connection failed'),
    );
    // A checked-out client whose server goes away emits 'error' too (pg always does on an
    // unexpected end), and the pool only listens to idle ones: without this the process
    // crashed when the sink restarted mid-write. The failed query rejects and is retried.
    this.pool.on('connect', (client) => client.on('error', () => undefined));
  }

  private db(): pg.Pool {
    if (!this.pool) throw new Error('TimescaleSink used before open()');
    return this.pool;
  }

  checkpoint(): Promise<Checkpoint | null> {
    return readCheckpoint(this.db(), this.opts.slot, this.name);
  }

  async write(batch: Batch): Promise<void> {
    const client = await this.db().connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      for (const seg of coalesce(batch.changes)) await this.writeSegment(client, seg);
      if (batch.checkpoint !== null) {
        await advanceCheckpoint(
          client,
          this.opts.slot,
          this.name,
          batch.checkpoint,
          batch.commitTime,
        );
      }
      await client.query('COMMIT');
    } catch (err) {
      broken = err as Error;
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      // A client whose transaction failed for a connection reason is discarded.
      client.release(
        broken !== undefined && classifyError(broken, 'sink').retriable ? broken : undefined,
      );
    }
  }

  private async writeSegment(client: pg.PoolClient, seg: Segment): Promise<void> {
    const slot = this.opts.slot;
    if (seg.poolUpserts.length > 0) {
      await client.query(this.sql.poolUpsert, [
        JSON.stringify(
          seg.poolUpserts.map(({ pool: p, lsn }) => ({
            i: p.id,
            c: p.chainId,
            co: p.coin,
            ob: p.orderBook,
            bc: p.baseCurrency,
            qc: p.quoteCurrency,
            bd: p.baseDecimals,
            qd: p.quoteDecimals,
            v: p.volume,
            vq: p.volumeInQuote,
            pr: p.price,
            t: p.timestamp,
            l: formatLsn(lsn),
          })),
        ),
      ]);
    }
    if (seg.poolDeletes.length > 0) {
      await client.query(this.sql.poolDelete, [
        JSON.stringify(seg.poolDeletes.map((d) => ({ i: d.poolId, l: formatLsn(d.lsn) }))),
      ]);
    }
    if (seg.tradeDeletes.length > 0) {
      await client.query(this.sql.tradeDelete, [
        JSON.stringify(seg.tradeDeletes.map((d) => ({ i: d.tradeId, l: formatLsn(d.lsn) }))),
      ]);
    }
    const replaced = seg.tradeUpserts.filter((u) => u.replace);
    if (replaced.length > 0) {
      await client.query(this.sql.tradeReplace, [
        JSON.stringify(
          replaced.map((u) => ({ i: u.trade.tradeId, t: u.trade.time, l: formatLsn(u.lsn) })),
        ),
      ]);
    }
    if (seg.tradeUpserts.length > 0) {
      await client.query(this.sql.tradeUpsert, [
        JSON.stringify(
          seg.tradeUpserts.map(({ trade: t, lsn }) => ({
            i: t.tradeId,
            t: t.time,
            c: t.chainId,
            p: t.poolId,
            s: t.symbol,
            sd: t.side,
            pr: t.price,
            q: t.quantity,
            x: t.transactionId,
            l: formatLsn(lsn),
          })),
        ),
      ]);
    }
    if (seg.deadLetters.length > 0) {
      await client.query(this.sql.deadLetters, [
        JSON.stringify(
          seg.deadLetters.map(({ letter: d, lsn }) => ({
            tb: d.sourceTable,
            op: d.operation,
            k: d.rowKey,
            l: formatLsn(lsn),
            ct: d.commitTime === null ? null : d.commitTime.toString(),
            raw: d.raw,
            code: d.code,
            reason: d.reason,
          })),
        ),
        slot,
      ]);
    }
    if (seg.truncate) {
      const lsn = formatLsn(seg.truncate.lsn);
      if (seg.truncate.tables.includes('trades')) await client.query(this.sql.tradeTruncate, [lsn]);
      if (seg.truncate.tables.includes('pools')) await client.query(this.sql.poolTruncate, [lsn]);
    }
  }

  async resetTo(lsn: Lsn): Promise<void> {
    await resetCheckpoint(this.db(), this.opts.slot, this.name, lsn);
  }

  async completeSnapshot(lsn: Lsn, copied: boolean): Promise<void> {
    const client = await this.db().connect();
    try {
      await client.query('BEGIN');
      if (copied) {
        // Every row the snapshot copied carries source_lsn = lsn; anything older
        // is a leftover of an earlier slot or an interrupted copy, gone at the source.
        await client.query(this.sql.tradeSweep, [formatLsn(lsn)]);
        await client.query(this.sql.poolSweep, [formatLsn(lsn)]);
      }
      await setCheckpointState(client, this.opts.slot, this.name, 'streaming', lsn, lsn);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    const p = this.pool;
    this.pool = null;
    await p?.end();
  }
}

function statements(s: string) {
  const trades = `${s}.analytics_trades`;
  const pools = `${s}.pools`;
  return {
    tradeUpsert: `
      INSERT INTO ${trades} AS t
             (trade_id, time, chain_id, pool_id, symbol, side, price, quantity, volume, transaction_id, source_lsn)
      SELECT r.i, to_timestamp(r.t::bigint), r.c::integer, r.p, r.s, r.sd, r.pr::numeric, r.q::numeric, r.pr::numeric * r.q::numeric,
             r.x, r.l::pg_lsn
        FROM json_to_recordset($1::json)
             AS r(i text, t text, c text, p text, s text, sd text, pr text, q text, x text, l text)
      ON CONFLICT (trade_id, time) DO UPDATE
         SET chain_id = EXCLUDED.chain_id, pool_id = EXCLUDED.pool_id, symbol = EXCLUDED.symbol,
             side = EXCLUDED.side, price = EXCLUDED.price, quantity = EXCLUDED.quantity,
             volume = EXCLUDED.volume, transaction_id = EXCLUDED.transaction_id, source_lsn = EXCLUDED.source_lsn
       WHERE t.source_lsn <= EXCLUDED.source_lsn`,
    tradeReplace: `
      DELETE FROM ${trades} t
       USING json_to_recordset($1::json) AS r(i text, t text, l text)
       WHERE t.trade_id = r.i AND t.time <> to_timestamp(r.t::bigint) AND t.source_lsn <= r.l::pg_lsn`,
    tradeDelete: `
      DELETE FROM ${trades} t
       USING json_to_recordset($1::json) AS r(i text, l text)
       WHERE t.trade_id = r.i AND t.source_lsn <= r.l::pg_lsn`,
    tradeTruncate: `DELETE FROM ${trades} WHERE source_lsn <= $1::pg_lsn`,
    tradeSweep: `DELETE FROM ${trades} WHERE source_lsn < $1::pg_lsn`,
    poolUpsert: `
      INSERT INTO ${pools} AS p
             (id, chain_id, coin, order_book, base_currency, quote_currency, base_decimals, quote_decimals,
              volume, volume_in_quote, price, timestamp, source_lsn)
      SELECT r.i, r.c::integer, r.co, r.ob, r.bc, r.qc, r.bd::integer, r.qd::integer,
             r.v::numeric, r.vq::numeric, r.pr::numeric, r.t::integer, r.l::pg_lsn
        FROM json_to_recordset($1::json)
             AS r(i text, c text, co text, ob text, bc text, qc text, bd text, qd text, v text, vq text, pr text,
                  t text, l text)
      ON CONFLICT (id) DO UPDATE
         SET chain_id = EXCLUDED.chain_id, coin = EXCLUDED.coin, order_book = EXCLUDED.order_book,
             base_currency = EXCLUDED.base_currency, quote_currency = EXCLUDED.quote_currency,
             base_decimals = EXCLUDED.base_decimals, quote_decimals = EXCLUDED.quote_decimals,
             volume = EXCLUDED.volume, volume_in_quote = EXCLUDED.volume_in_quote, price = EXCLUDED.price,
             timestamp = EXCLUDED.timestamp, source_lsn = EXCLUDED.source_lsn
       WHERE p.source_lsn <= EXCLUDED.source_lsn`,
    poolDelete: `
      DELETE FROM ${pools} p
       USING json_to_recordset($1::json) AS r(i text, l text)
       WHERE p.id = r.i AND p.source_lsn <= r.l::pg_lsn`,
    poolTruncate: `DELETE FROM ${pools} WHERE source_lsn <= $1::pg_lsn`,
    poolSweep: `DELETE FROM ${pools} WHERE source_lsn < $1::pg_lsn`,
    deadLetters: `
      INSERT INTO slotline.dead_letters
             (slot, source_table, operation, row_key, lsn, commit_time, raw, reason_code, reason)
      SELECT $2, r.tb, r.op, r.k, r.l::pg_lsn,
             timestamptz '2000-01-01 00:00:00+00' + r.ct::bigint * interval '1 microsecond',
             r.raw, r.code, r.reason
        FROM json_to_recordset($1::json)
             AS r(tb text, op text, k text, l text, ct text, raw jsonb, code text, reason text)
      ON CONFLICT (slot, source_table, row_key, lsn) DO UPDATE
         SET raw = EXCLUDED.raw, reason_code = EXCLUDED.reason_code, reason = EXCLUDED.reason,
             last_seen = now()`,
  };
}
