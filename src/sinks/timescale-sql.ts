/**
 * The TimescaleDB sink's statements: one per kind of change, each over a JSON
 * array of rows (values as text, cast here). Every write is guarded by the row
 * version (source_generation, source_lsn, source_seq), compared as a row:
 * a change applies only if it is at least as new as what the sink holds for its
 * key and newer than the key's tombstone. See "The apply rule" in docs/design.md.
 */

/** A table alias's version, as a row value: lexicographic comparison in SQL. */
const v = (a: string) => `(${a}.source_generation, ${a}.source_lsn, ${a}.source_seq)`;
/** The incoming version of a JSON row `r` (fields g, l, s). */
const incoming = '(r.g, r.l::pg_lsn, r.s)';

export function statements(schema: string) {
  return { ...tradeStatements(schema), ...poolStatements(schema), ...upkeepStatements(schema) };
}

const tombstone = (table: string, key: string) => `
      INSERT INTO ${table} AS d (${key}, source_generation, source_lsn, source_seq)`;
const tombstoneConflict = (key: string) => `
      ON CONFLICT (${key}) DO UPDATE
         SET source_generation = EXCLUDED.source_generation, source_lsn = EXCLUDED.source_lsn,
             source_seq = EXCLUDED.source_seq, deleted_at = now()
       WHERE ${v('d')} < ${v('EXCLUDED')}`;

function tradeStatements(schema: string) {
  const trades = `${schema}.analytics_trades`;
  const tradeTombs = `${schema}.analytics_trades_tombstones`;
  const tradeUpsert = (checked: boolean) => `
      INSERT INTO ${trades} AS t
             (trade_id, time, chain_id, pool_id, symbol, side, price, quantity, volume, transaction_id,
              source_lsn, source_generation, source_seq)
      SELECT r.i, to_timestamp(r.t::bigint), r.c::integer, r.p, r.sy, r.sd, r.pr::numeric, r.q::numeric,
             r.pr::numeric * r.q::numeric, r.x, r.l::pg_lsn, r.g, r.s
        FROM json_to_recordset($1::json)
             AS r(i text, t text, c text, p text, sy text, sd text, pr text, q text, x text,
                  g integer, l text, s integer)
       WHERE NOT EXISTS (SELECT 1 FROM ${tradeTombs} d WHERE d.trade_id = r.i AND ${v('d')} > ${incoming})
       ${checked ? `AND NOT EXISTS (SELECT 1 FROM ${trades} o WHERE o.trade_id = r.i AND ${v('o')} > ${incoming})` : ''}
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
    /** Rows whose id the sink may hold at another time, or newer: checked against every row of the id. */
    tradeUpsertChecked: tradeUpsert(true),
    /** Older versions of a trade id at other times (its time moved): one row per trade id. */
    tradeReplace: `
      DELETE FROM ${trades} t
       USING json_to_recordset($1::json) AS r(i text, t text, g integer, l text, s integer)
       WHERE t.trade_id = r.i AND t.time <> to_timestamp(r.t::bigint) AND ${v('t')} <= ${incoming}`,
    tradeDelete: keyedDelete(trades, tradeTombs, 'trade_id'),
    tradeTruncate: keyedTruncate(trades, tradeTombs, 'trade_id'),
  };
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
      INSERT INTO ${pools} AS p
             (id, chain_id, coin, order_book, base_currency, quote_currency, base_decimals, quote_decimals,
              volume, volume_in_quote, price, timestamp, source_lsn, source_generation, source_seq)
      SELECT r.i, r.c::integer, r.co, r.ob, r.bc, r.qc, r.bd::integer, r.qd::integer,
             r.v::numeric, r.vq::numeric, r.pr::numeric, r.t::integer, r.l::pg_lsn, r.g, r.s
        FROM json_to_recordset($1::json)
             AS r(i text, c text, co text, ob text, bc text, qc text, bd text, qd text, v text, vq text, pr text,
                  t text, g integer, l text, s integer)
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
    sweep: [
      `DELETE FROM ${trades} WHERE source_generation < $1`,
      `DELETE FROM ${pools} WHERE source_generation < $1`,
    ],
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
