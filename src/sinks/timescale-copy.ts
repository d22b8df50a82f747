import type pg from 'pg';
import type { Trade } from '../trades/map.js';
import { copyIn, CopyRows, copyTextField } from './copy-in.js';
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
 * (the primary key; TimescaleDB checks it in compressed chunks too). So, in
 * one round trip: a savepoint, the COPY, and a read of which of the copied
 * ids have a tombstone (of any version). Then:
 *  - if the copy failed for any reason (a replayed batch meets its own rows:
 *    unique_violation), the savepoint is rolled back and the same rows go to
 *    the upsert, which applies the rule row by row (or fails as it would
 *    have without the copy);
 *  - if some ids have a tombstone, the savepoint is rolled back, those rows go
 *    to the upsert and the others are copied again (the same way, once);
 *  - else the rows are written, exactly as the upsert would have.
 * Rows the copy cannot spell as the upsert's casts would (see tradeCopyRow)
 * go to the upsert too. Returns how many rows were copied.
 */
export async function writeHotTrades(
  client: pg.PoolClient,
  sql: Statements,
  hot: readonly HotUpsert[],
): Promise<number> {
  const upsert: HotUpsert[] = [];
  const copy: HotUpsert[] = [];
  const rows = new CopyRows();
  for (const u of hot) {
    if (writeTradeCopyRow(u, rows)) copy.push(u);
    else upsert.push(u);
  }
  const copied =
    copy.length > 0 ? await copyHot(client, sql, copy, rows.finish(), upsert, true) : 0;
  if (upsert.length > 0)
    await client.query(sql.tradeInsert, [JSON.stringify(upsert.map(tradeRow))]);
  return copied;
}

/** Copies `copy` (spelled as `chunks`), or hands rows to `upsert` as writeHotTrades says. */
async function copyHot(
  client: pg.PoolClient,
  sql: Statements,
  copy: HotUpsert[],
  chunks: Buffer[],
  upsert: HotUpsert[],
  again: boolean,
): Promise<number> {
  const ids = copy.map((u) => u.trade.tradeId);
  const message = `SAVEPOINT slotline_copy; ${sql.tradeCopy}; ${sql.tradeTombstonedAmong(ids)}`;
  let tombstoned: (string | null)[][];
  let copied: number;
  try {
    ({ copied, rows: tombstoned } = await copyIn(client, message, chunks));
  } catch (err) {
    // A lost connection fails the rollback too: the write fails and is retried as any is.
    await client.query('ROLLBACK TO SAVEPOINT slotline_copy').catch(() => {
      throw err;
    });
    hotPathCounts.fallbacks++;
    upsert.push(...copy);
    return 0;
  }
  if (tombstoned.length === 0) {
    hotPathCounts.copied += copied;
    return copied;
  }
  await client.query('ROLLBACK TO SAVEPOINT slotline_copy');
  hotPathCounts.fallbacks++;
  if (!again) {
    upsert.push(...copy);
    return 0;
  }
  const dead = new Set(tombstoned.map((r) => r[0]));
  const keep: HotUpsert[] = [];
  // Spelled again (it was spelled once, so it is again): rare, and the first
  // spelling holds no per-row boundaries to pick the survivors from.
  const keepRows = new CopyRows();
  for (const u of copy) {
    if (dead.has(u.trade.tradeId)) upsert.push(u);
    else if (writeTradeCopyRow(u, keepRows)) keep.push(u);
    else upsert.push(u);
  }
  return keep.length > 0 ? copyHot(client, sql, keep, keepRows.finish(), upsert, false) : 0;
}

const DIGITS = /^\d+$/;
/** What a text field must be checked for: COPY's specials, NUL and unpaired surrogates. */
const CHECK = /[\0\\\t\n\r\p{Cs}]/u;
/** Text PostgreSQL refuses: NUL, unpaired surrogates (the u flag pairs the rest). */
const UNSPEAKABLE = /[\0\p{Cs}]/u;
/** Year 10000: toISOString's four-digit years end here. */
const MAX_ISO_SECONDS = 253_402_300_800;

let lastSeconds = '';
let lastIso = '';
let lastMinute = -1;
let minutePrefix = '';
let lastLsn = -1n;
let lastLsnText = '';
/** The end of an ISO time after its minute: seconds, no fraction (unix seconds are whole). */
const SECONDS = Array.from({ length: 60 }, (_, s) => `${String(s).padStart(2, '0')}.000Z`);

/**
 * Unix seconds as timestamptz input, the instant to_timestamp(seconds) gives:
 * toISOString's spelling, its minute computed once per minute (a unix minute
 * is always 60 seconds: no leap seconds).
 */
function isoTime(seconds: string): string | null {
  if (seconds === lastSeconds) return lastIso;
  if (!DIGITS.test(seconds)) return null;
  const n = Number(seconds);
  if (!(n > 0 && n < MAX_ISO_SECONDS)) return null;
  const minute = Math.floor(n / 60);
  if (minute !== lastMinute) {
    minutePrefix = new Date(minute * 60_000).toISOString().slice(0, 17);
    lastMinute = minute;
  }
  lastSeconds = seconds;
  lastIso = minutePrefix + SECONDS[n - minute * 60]!;
  return lastIso;
}

/** A text value as a COPY field; null if PostgreSQL could not hold it. */
function spell(v: string): string | null {
  if (!CHECK.test(v)) return v;
  return UNSPEAKABLE.test(v) ? null : copyTextField(v);
}

/**
 * A trade as one COPY text row of TRADE_COLUMNS, holding the values
 * tradeInsert's casts make of tradeRow: the time as the instant of its unix
 * seconds, volume as price × quantity (whole numbers, exact in bigint, as
 * numeric multiplication is). null when the row is not of that plain shape
 * (the mapper's checks make that rare): the upsert then writes it.
 */
export function tradeCopyRow(u: HotUpsert): string | null {
  const rows = new CopyRows();
  if (!writeTradeCopyRow(u, rows)) return null;
  return Buffer.concat(rows.finish()).toString('utf8');
}

/** tradeCopyRow, appended to `rows`; false (and nothing appended) where it gives null. */
export function writeTradeCopyRow(u: HotUpsert, rows: CopyRows): boolean {
  const t = u.trade;
  const time = isoTime(t.time);
  if (time === null || !DIGITS.test(t.price) || !DIGITS.test(t.quantity)) return false;
  const v = u.version;
  if (v.lsn !== lastLsn) {
    lastLsnText = versionFields(v).l;
    lastLsn = v.lsn;
  }
  rows.begin();
  // Digits, an ISO time and an LSN (hex and '/') need no escaping.
  if (!rows.text(t.tradeId, spell)) return dropped(rows);
  rows.raw(time);
  if (
    !rows.text(t.chainId, spell) ||
    !rows.text(t.poolId, spell) ||
    !rows.text(t.symbol, spell) ||
    !rows.text(t.side, spell)
  )
    return dropped(rows);
  rows.raw(t.price);
  rows.raw(t.quantity);
  rows.raw((BigInt(t.price) * BigInt(t.quantity)).toString());
  if (!rows.text(t.transactionId, spell)) return dropped(rows);
  rows.raw(lastLsnText);
  rows.raw(String(v.gen));
  rows.raw(String(v.seq));
  rows.end();
  return true;
}

function dropped(rows: CopyRows): false {
  rows.drop();
  return false;
}
