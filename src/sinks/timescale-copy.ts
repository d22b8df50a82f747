import type pg from 'pg';
import type { Trade } from '../trades/map.js';
import { copyIn, copyTextRow } from './copy-in.js';
import type { statements } from './timescale-sql.js';
import { tradeRow } from './timescale-sql.js';
import { type RowVersion, versionFields } from './version.js';

type Statements = ReturnType<typeof statements>;

/** Rows this process wrote by COPY, and copies that fell back to the upsert (for tests and profiles). */
export const hotPathCounts = { copied: 0, fallbacks: 0 };

/** A streamed insert or a snapshot row: nothing else in its segment touches its id. */
export interface HotUpsert {
  trade: Trade;
  version: RowVersion;
}

/**
 * Writes the hot path's trades (see writeTrades) by COPY when that provably
 * gives what the guarded upsert (tradeInsert) would, else by the upsert.
 *
 * tradeInsert inserts a row unless its id has a newer tombstone, and where
 * the sink holds the same (id, time) it overwrites it if not newer. A plain
 * COPY inserts, and fails on any row the sink already holds at (id, time)
 * (the primary key; TimescaleDB checks it in compressed chunks too). So:
 *  1. rows whose id has any tombstone go to the upsert (one indexed read);
 *  2. the rest are copied inside a savepoint;
 *  3. if the copy fails for any reason (a replayed batch meets its own rows:
 *     unique_violation), the savepoint is rolled back and the same rows go
 *     to the upsert, which applies the rule row by row (or fails as it would
 *     have without the copy).
 * Rows the copy cannot spell as the upsert's casts would (see tradeCopyRow)
 * go to the upsert too. Returns how many rows were copied.
 */
export async function writeHotTrades(
  client: pg.PoolClient,
  sql: Statements,
  hot: readonly HotUpsert[],
): Promise<number> {
  const upsert: HotUpsert[] = [];
  let copy: HotUpsert[] = [];
  let lines: string[] = [];
  for (const u of hot) {
    const line = tradeCopyRow(u);
    if (line === null) upsert.push(u);
    else {
      copy.push(u);
      lines.push(line);
    }
  }
  if (copy.length > 0) {
    const ids = copy.map((u) => u.trade.tradeId);
    const tombs = await client.query<{ i: string }>(sql.tradeTombstoned, [ids]);
    if (tombs.rows.length > 0) {
      const dead = new Set(tombs.rows.map((r) => r.i));
      const keep: HotUpsert[] = [];
      const keepLines: string[] = [];
      copy.forEach((u, k) => {
        if (dead.has(u.trade.tradeId)) upsert.push(u);
        else {
          keep.push(u);
          keepLines.push(lines[k]!);
        }
      });
      copy = keep;
      lines = keepLines;
    }
  }
  let copied = 0;
  if (copy.length > 0) {
    await client.query('SAVEPOINT slotline_copy');
    try {
      copied = await copyIn(client, sql.tradeCopy, lines);
      await client.query('RELEASE SAVEPOINT slotline_copy');
      hotPathCounts.copied += copied;
    } catch (err) {
      // A lost connection fails the rollback too: the write fails and is retried as any is.
      await client.query('ROLLBACK TO SAVEPOINT slotline_copy').catch(() => {
        throw err;
      });
      hotPathCounts.fallbacks++;
      upsert.push(...copy);
    }
  }
  if (upsert.length > 0)
    await client.query(sql.tradeInsert, [JSON.stringify(upsert.map(tradeRow))]);
  return copied;
}

const DIGITS = /^\d+$/;
/** Unpaired surrogates (the u flag pairs the rest) and NUL: text PostgreSQL refuses. */
const UNSPEAKABLE = /[\0\p{Cs}]/u;
/** Year 10000: toISOString's four-digit years end here. */
const MAX_ISO_SECONDS = 253_402_300_800;

let lastSeconds = '';
let lastIso = '';

/** Unix seconds as timestamptz input, the instant to_timestamp(seconds) gives. */
function isoTime(seconds: string): string | null {
  if (seconds === lastSeconds) return lastIso;
  if (!DIGITS.test(seconds)) return null;
  const n = Number(seconds);
  if (!(n > 0 && n < MAX_ISO_SECONDS)) return null;
  lastSeconds = seconds;
  lastIso = new Date(n * 1000).toISOString();
  return lastIso;
}

const speakable = (v: string | null) => v === null || !UNSPEAKABLE.test(v);

/**
 * A trade as one COPY text row of TRADE_COLUMNS, holding the values
 * tradeInsert's casts make of tradeRow: the time as the instant of its unix
 * seconds, volume as price × quantity (whole numbers, exact in bigint, as
 * numeric multiplication is). null when the row is not of that plain shape
 * (the mapper's checks make that rare): the upsert then writes it.
 */
export function tradeCopyRow(u: HotUpsert): string | null {
  const t = u.trade;
  const time = isoTime(t.time);
  if (time === null || !DIGITS.test(t.price) || !DIGITS.test(t.quantity)) return null;
  if (
    !speakable(t.tradeId) ||
    !speakable(t.chainId) ||
    !speakable(t.poolId) ||
    !speakable(t.symbol) ||
    !speakable(t.side) ||
    !speakable(t.transactionId)
  )
    return null;
  const v = versionFields(u.version);
  return copyTextRow([
    t.tradeId,
    time,
    t.chainId,
    t.poolId,
    t.symbol,
    t.side,
    t.price,
    t.quantity,
    (BigInt(t.price) * BigInt(t.quantity)).toString(),
    t.transactionId,
    v.l,
    String(v.g),
    String(v.s),
  ]);
}
