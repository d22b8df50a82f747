import { formatLsn } from '../checkpoint/lsn.js';
import { escapedLiteral, quoteLiteral } from '../sql.js';

/**
 * The TimescaleDB sink's statements: one per kind of change, each over a JSON
 * array of rows (values as text, cast here). Every write is guarded by the row
 * version (source_generation, source_lsn, source_seq), compared as a row:
 * a change applies only if it is at least as new as what the sink holds for its
 * key and newer than the key's tombstone. See "The apply rule" in docs/design.md.
 *
 * A change of a trade known by its id alone (a delete, an update, a re-read)
 * first locates the id's rows, then names each by (id, time) as constants:
 * TimescaleDB picks the compressed batches a DELETE must decompress from
 * constants only, and decompresses every batch of a chunk for a join
 * (docs/timescaledb.md, "Writes that reach the columnstore").
 */
import type { Pool, Trade } from '../trades/map.js';
import type { DeadLetter } from './batch.js';
import { type RowVersion, versionFields } from './version.js';

const QUOTED = /[\\"]/;

/** Strings as the text of a PostgreSQL array of text (every element quoted). */
export function textArray(values: readonly string[]): string {
  // Ids rarely hold a quote or backslash: then one join, no string per element.
  if (!values.some((v) => QUOTED.test(v)))
    return values.length === 0 ? '{}' : `{"${values.join('","')}"}`;
  return `{${values.map((v) => `"${v.replace(/[\\"]/g, '\\$&')}"`).join(',')}}`;
}

/** A table alias's version, as a row value: lexicographic comparison in SQL. */
export const versionSql = (a: string) =>
  `(${a}.source_generation, ${a}.source_lsn, ${a}.source_seq)`;
const v = versionSql;

/** The columns of analytics_trades every trade write sets, in TRADE_ROWS' order. */
export const TRADE_COLUMNS = `trade_id, time, chain_id, pool_id, symbol, side, price, quantity, volume,
              transaction_id, source_lsn, source_generation, source_seq`;
/** The trades of JSON rows `$1` (tradeFields and versionFields), cast as TRADE_COLUMNS. */
export const TRADE_ROWS = `SELECT r.i, to_timestamp(r.t::bigint), r.c::integer, r.p, r.sy, r.sd, r.pr::numeric,
             r.q::numeric, r.pr::numeric * r.q::numeric, r.x, r.l::pg_lsn, r.g, r.s
        FROM json_to_recordset($1::json)
             AS r(i text, t text, c text, p text, sy text, sd text, pr text, q text, x text,
                  g integer, l text, s integer)`;
/** The columns of pools every pool write sets, in POOL_ROWS' order. */
export const POOL_COLUMNS = `id, chain_id, coin, order_book, base_currency, quote_currency, base_decimals,
              quote_decimals, volume, volume_in_quote, price, timestamp, source_lsn, source_generation,
              source_seq`;
/** The pools of JSON rows `$1` (poolFields and versionFields), cast as POOL_COLUMNS. */
export const POOL_ROWS = `SELECT r.i, r.c::integer, r.co, r.ob, r.bc, r.qc, r.bd::integer, r.qd::integer,
             r.v::numeric, r.vq::numeric, r.pr::numeric, r.t::integer, r.l::pg_lsn, r.g, r.s
        FROM json_to_recordset($1::json)
             AS r(i text, c text, co text, ob text, bc text, qc text, bd text, qd text, v text, vq text,
                  pr text, t text, g integer, l text, s integer)`;
/** The incoming version of a JSON row `r` (fields g, l, s). */
const incoming = '(r.g, r.l::pg_lsn, r.s)';

/**
 * `schema` is quoted; `rawSchema` is the same name as a value. With
 * `timescale`, analytics_trades may have compressed chunks (see tradeLocate).
 */
export function statements(schema: string, rawSchema: string, timescale: boolean) {
  return {
    ...tradeStatements(schema, rawSchema, timescale),
    ...poolStatements(schema),
    ...upkeepStatements(schema),
  };
}

const tombstone = (table: string, key: string) => `
      INSERT INTO ${table} AS d (${key}, source_generation, source_lsn, source_seq)`;
const tombstoneConflict = (key: string) => `
      ON CONFLICT (${key}) DO UPDATE
         SET source_generation = EXCLUDED.source_generation, source_lsn = EXCLUDED.source_lsn,
             source_seq = EXCLUDED.source_seq, deleted_at = now()
       WHERE ${v('d')} < ${v('EXCLUDED')}`;

function tradeStatements(schema: string, rawSchema: string, timescale: boolean) {
  const trades = `${schema}.analytics_trades`;
  const tradeTombs = `${schema}.analytics_trades_tombstones`;
  const tradeUpsert = (checked: boolean) => `
      INSERT INTO ${trades} AS t (${TRADE_COLUMNS})
      ${TRADE_ROWS}
       WHERE NOT EXISTS (SELECT 1 FROM ${tradeTombs} d WHERE d.trade_id = r.i AND ${v('d')} > ${incoming})
       ${checked ? `AND NOT EXISTS (SELECT 1 FROM json_to_recordset($2::json) AS o(i text, g integer, l text, s integer) WHERE o.i = r.i AND (o.g, o.l::pg_lsn, o.s) > ${incoming})` : ''}
      ON CONFLICT (trade_id, time) DO UPDATE
         SET chain_id = EXCLUDED.chain_id, pool_id = EXCLUDED.pool_id, symbol = EXCLUDED.symbol,
             side = EXCLUDED.side, price = EXCLUDED.price, quantity = EXCLUDED.quantity,
             volume = EXCLUDED.volume, transaction_id = EXCLUDED.transaction_id,
             source_lsn = EXCLUDED.source_lsn, source_generation = EXCLUDED.source_generation,
             source_seq = EXCLUDED.source_seq
       WHERE ${v('t')} <= ${v('EXCLUDED')}`;
  return {
    /** Rows nothing else in the batch touched, streamed inserts: the hot path. */
    tradeInsert: tradeUpsert(false),
    /** The hot path's rows as COPY text (timescale-copy.ts): no guard, the caller's checks are it. */
    tradeCopy: `COPY ${trades} (${TRADE_COLUMNS}) FROM STDIN`,
    ...copyTombstoneReads(tradeTombs),
    /**
     * Rows whose id the sink may hold at another time, or newer: applied unless
     * a located row of the id ($2: tradeLocate's rows) is newer.
     */
    tradeUpsertChecked: tradeUpsert(true),
    /**
     * Every row the sink holds of the ids $1, at any time, with its version and
     * whether its chunk is compressed. A read, so TimescaleDB decompresses
     * nothing into the chunk: the bloom filter on trade_id skips the compressed
     * batches that cannot hold an id. Its result names each row by (id, time),
     * which the writes below use as constants.
     */
    tradeLocate: `
      SELECT x.trade_id AS i, x.time::text AS t, extract(epoch FROM x.time)::float8 AS e,
             x.source_generation AS g, x.source_lsn::text AS l, x.source_seq AS s,
             ${inCompressedChunk('x', rawSchema, timescale)} AS z
        FROM ${trades} x
       WHERE x.trade_id = ANY ($1::text[])`,
    /**
     * Removes located rows in uncompressed chunks (JSON rows i, t: the row's id
     * and time; nt: unless at this unix time; g, l, s: the version it must not
     * exceed). $2, the rows' times as constants, lets the planner exclude every
     * other chunk, so a join never reaches a compressed one (TimescaleDB would
     * decompress all of its batches: a join condition cannot pick batches).
     */
    tradeRemove: `
      DELETE FROM ${trades} x
       USING json_to_recordset($1::json) AS r(i text, t text, nt text, g integer, l text, s integer)
       WHERE x.trade_id = r.i AND x.time = r.t::timestamptz AND x.time = ANY ($2::timestamptz[])
         AND (r.nt IS NULL OR x.time <> to_timestamp(r.nt::bigint))
         AND ${v('x')} <= ${incoming}`,
    /**
     * The same for one row in a compressed chunk: with the id and time as
     * constants, TimescaleDB excludes the other chunks and decompresses only the
     * batch that holds the row (time within its min/max, id in its bloom filter).
     */
    tradeRemoveOne: `
      DELETE FROM ${trades} x
       WHERE x.trade_id = $1 AND x.time = $2::timestamptz
         AND ($3::text IS NULL OR x.time <> to_timestamp($3::text::bigint))
         AND ${v('x')} <= ($4::integer, $5::pg_lsn, $6::integer)`,
    /** Tombstones of deleted trade ids (JSON rows i, g, l, s); their rows go by tradeRemove*. */
    tradeTombstone: `
      ${tombstone(tradeTombs, 'trade_id')}
      SELECT r.i, r.g, r.l::pg_lsn, r.s FROM json_to_recordset($1::json) AS r(i text, g integer, l text, s integer)
      ${tombstoneConflict('trade_id')}`,
    tradeTruncate: keyedTruncate(trades, tradeTombs, 'trade_id'),
  };
}

/** The SQLSTATE of tradeTombstonesRefuse's refusal. */
export const TOMBSTONE_REFUSED = 'SLT01';

/** The COPY path's reads of tombstones (timescale-copy.ts): rows of id, generation, LSN, seq. */
function copyTombstoneReads(tradeTombs: string) {
  const cols = 'd.trade_id, d.source_generation, d.source_lsn::text, d.source_seq';
  const newerThan = (since: RowVersion) =>
    `${v('d')} > (${since.gen}, '${formatLsn(since.lsn)}'::pg_lsn, ${since.seq})`;
  return {
    /**
     * The tombstones newer than `since` (timescale-copy.ts), at most `limit` of
     * them: the only ones that can keep out a row at least as new as `since`
     * (tradeInsert skips a row only for a strictly newer tombstone). While
     * streaming forward there are none; a replay meets the later stream's.
     * Constants inline, so it can share a simple-protocol message with a COPY;
     * the version index makes it a range scan whatever the table's size.
     */
    tradeTombstonesNewer: (since: RowVersion, limit: number) =>
      `SELECT ${cols} FROM ${tradeTombs} d WHERE ${newerThan(since)} LIMIT ${limit}`,
    /**
     * Fails (TOMBSTONE_REFUSED) if any tombstone is newer than `since`: in
     * place of tradeTombstonesNewer for a COPY whose COMMIT follows in the
     * same message, which commits only where that read would find none
     * (streaming forward); the COPY's path reads them after a refusal.
     */
    tradeTombstonesRefuse: (since: RowVersion) =>
      `SELECT slotline.refuse('${TOMBSTONE_REFUSED}', 'a tombstone is newer than the copied trades')
         FROM ${tradeTombs} d WHERE ${newerThan(since)} LIMIT 1`,
    /** The tombstones of `ids`, in the columns of tradeTombstonesNewer: where that one hits its limit. */
    tradeTombstonesOf: (ids: readonly string[]) =>
      `SELECT ${cols} FROM ${tradeTombs} d
        WHERE d.trade_id = ANY (${escapedLiteral(textArray(ids))}::text[])`,
  };
}

/**
 * Whether the row of alias `x` of analytics_trades sits in a compressed chunk
 * (see tradeRemoveOne); the chunk list is read once per statement (an InitPlan).
 * From TimescaleDB's catalog (readable by PUBLIC), not the
 * timescaledb_information.chunks view, which costs tens of milliseconds.
 */
export function inCompressedChunk(x: string, rawSchema: string, timescale: boolean): string {
  if (!timescale) return 'false';
  return `${x}.tableoid = ANY (ARRAY(
               SELECT format('%I.%I', ch.schema_name, ch.table_name)::regclass::oid
                 FROM _timescaledb_catalog.chunk ch
                 JOIN _timescaledb_catalog.hypertable h ON h.id = ch.hypertable_id
                WHERE h.schema_name = ${quoteLiteral(rawSchema)} AND h.table_name = 'analytics_trades'
                  AND ch.compressed_chunk_id IS NOT NULL))`;
}

/** Deletes of keys at their versions (JSON rows i, g, l, s), each leaving a tombstone. */
function keyedDelete(table: string, tombs: string, key: string): string {
  return `
      WITH r AS (SELECT * FROM json_to_recordset($1::json) AS r(i text, g integer, l text, s integer)),
           gone AS (DELETE FROM ${table} x USING r WHERE x.${key} = r.i AND ${v('x')} <= ${incoming})
      ${tombstone(tombs, key)}
      SELECT r.i, r.g, r.l::pg_lsn, r.s FROM r
      ${tombstoneConflict(key)}`;
}

/** A TRUNCATE at version ($1, $2, $3): every older row goes, each key leaving a tombstone. */
function keyedTruncate(table: string, tombs: string, key: string): string {
  return `
      WITH gone AS (DELETE FROM ${table} x WHERE ${v('x')} <= ($1::integer, $2::pg_lsn, $3::integer)
                    RETURNING x.${key})
      ${tombstone(tombs, key)}
      SELECT DISTINCT ${key}, $1::integer, $2::pg_lsn, $3::integer FROM gone
      ${tombstoneConflict(key)}`;
}

function poolStatements(schema: string) {
  const pools = `${schema}.pools`;
  const poolTombs = `${schema}.pools_tombstones`;
  return {
    poolUpsert: `
      INSERT INTO ${pools} AS p (${POOL_COLUMNS})
      ${POOL_ROWS}
       WHERE NOT EXISTS (SELECT 1 FROM ${poolTombs} d WHERE d.id = r.i AND ${v('d')} > ${incoming})
      ON CONFLICT (id) DO UPDATE
         SET chain_id = EXCLUDED.chain_id, coin = EXCLUDED.coin, order_book = EXCLUDED.order_book,
             base_currency = EXCLUDED.base_currency, quote_currency = EXCLUDED.quote_currency,
             base_decimals = EXCLUDED.base_decimals, quote_decimals = EXCLUDED.quote_decimals,
             volume = EXCLUDED.volume, volume_in_quote = EXCLUDED.volume_in_quote, price = EXCLUDED.price,
             timestamp = EXCLUDED.timestamp, source_lsn = EXCLUDED.source_lsn,
             source_generation = EXCLUDED.source_generation, source_seq = EXCLUDED.source_seq
       WHERE ${v('p')} <= ${v('EXCLUDED')}`,
    poolDelete: keyedDelete(pools, poolTombs, 'id'),
    poolTruncate: keyedTruncate(pools, poolTombs, 'id'),
  };
}

function upkeepStatements(schema: string) {
  const trades = `${schema}.analytics_trades`;
  const pools = `${schema}.pools`;
  const tombs = [
    [`${schema}.analytics_trades_tombstones`, 'trade_id'],
    [`${schema}.pools_tombstones`, 'id'],
  ];
  return {
    /** A new generation is complete: rows (and tombstones) no row of it rewrote are gone at the source. */
    sweep: {
      trades: `DELETE FROM ${trades} WHERE source_generation < $1`,
      pools: `DELETE FROM ${pools} WHERE source_generation < $1`,
    },
    /**
     * Tombstones that can no longer matter: of an older generation (any write
     * of the current one wins anyway), or below every sink's checkpoint (a
     * replay starts after it) with no dead letter of that key still waiting
     * for a retry at its own, older, version.
     */
    purge: tombs.map(
      ([table, key]) => `
      DELETE FROM ${table} d
       WHERE d.source_generation < $1
          OR (d.source_generation = $1
              AND d.source_lsn < (SELECT min(lsn) FROM slotline.checkpoints WHERE slot = $2)
              AND NOT EXISTS (SELECT 1 FROM slotline.dead_letters x
                               WHERE x.slot = $2 AND x.row_key = d.${key}
                                 AND x.state IN ('pending', 'retried')))`,
    ),
    deadLetters: `
      INSERT INTO slotline.dead_letters
             (slot, source_table, operation, row_key, lsn, source_seq, generation, commit_time, raw,
              reason_code, reason)
      SELECT $2, r.tb, r.op, r.k, r.l::pg_lsn, r.s, r.g,
             timestamptz '2000-01-01 00:00:00+00' + r.ct::bigint * interval '1 microsecond',
             r.raw, r.code, r.reason
        FROM json_to_recordset($1::json)
             AS r(tb text, op text, k text, g integer, l text, s integer, ct text, raw jsonb, code text,
                  reason text)
      ON CONFLICT (slot, source_table, row_key, lsn) DO UPDATE
         SET raw = EXCLUDED.raw, reason_code = EXCLUDED.reason_code, reason = EXCLUDED.reason,
             source_seq = EXCLUDED.source_seq, generation = EXCLUDED.generation, last_seen = now()`,
  };
}

/** A trade as the JSON row the statements read (short keys: the batch is one JSON text). */
export function tradeFields(t: Trade) {
  return {
    i: t.tradeId,
    t: t.time,
    c: t.chainId,
    p: t.poolId,
    sy: t.symbol,
    sd: t.side,
    pr: t.price,
    q: t.quantity,
    x: t.transactionId,
  };
}

/** A pool as the JSON row the statements read. */
export function poolFields(p: Pool) {
  return {
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
  };
}

/** A trade upsert as the JSON row the trade statements read. */
export function tradeRow(u: { trade: Trade; version: RowVersion }) {
  return { ...tradeFields(u.trade), ...versionFields(u.version) };
}

/** A pool upsert as the JSON row poolUpsert reads. */
export function poolRow(u: { pool: Pool; version: RowVersion }) {
  return { ...poolFields(u.pool), ...versionFields(u.version) };
}

/** A dead letter as the JSON row deadLetters reads. */
export function letterRow(u: { letter: DeadLetter; version: RowVersion }) {
  const d = u.letter;
  return {
    tb: d.sourceTable,
    op: d.operation,
    k: d.rowKey,
    ...versionFields(u.version),
    ct: d.commitTime === null ? null : d.commitTime.toString(),
    raw: d.raw,
    code: d.code,
    reason: d.reason,
  };
}
