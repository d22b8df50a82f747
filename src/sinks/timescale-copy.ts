import type pg from 'pg';
import { parseLsn } from '../checkpoint/lsn.js';
import type { Trade } from '../trades/map.js';
import { type CopyInResult, CopyInQuery, CopyRows, copyTextField } from './copy-in.js';
import type { FoldedOpening } from './timescale-opening.js';
import type { statements } from './timescale-sql.js';
import { TOMBSTONE_REFUSED, tradeRow } from './timescale-sql.js';
import { compareVersions, type RowVersion, versionFields } from './version.js';

type Statements = ReturnType<typeof statements>;

/** What COPYs did in one write: rows copied, and copies rolled back to the upsert, by why. */
export interface CopyCounts {
  copied: number;
  /** The COPY failed: the sink held a row at (id, time) (a replay), or another error. */
  conflicts: number;
  /** A copied row's id had a newer tombstone. */
  tombstones: number;
}

export const newCopyCounts = (): CopyCounts => ({ copied: 0, conflicts: 0, tombstones: 0 });

/**
 * This process's totals over committed writes (the sink adds a write's counts
 * once it commits): read by /metrics, tests and profiles.
 */
export const hotPathCounts = {
  ...newCopyCounts(),
  /** Copies rolled back, for either reason. */
  get fallbacks(): number {
    return this.conflicts + this.tombstones;
  },
};

export function addCopyCounts(c: CopyCounts): void {
  hotPathCounts.copied += c.copied;
  hotPathCounts.conflicts += c.conflicts;
  hotPathCounts.tombstones += c.tombstones;
}

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
 * one round trip: a savepoint, the COPY (its rows spelled while the server
 * inserts those sent before), and a read of the tombstones newer than the
 * oldest row (none while streaming forward, so the read costs nothing per
 * row, unlike a lookup of every copied id; a replay meets the later stream's, and past
 * copyTuning.newerTombstonesMax of them the copied ids' own are read). Then:
 *  - if the copy failed for any reason (a replayed batch meets its own rows:
 *    unique_violation), the savepoint is rolled back and the same rows go to
 *    the upsert, which applies the rule row by row (or fails as it would
 *    have without the copy);
 *  - if a copied row's id has a tombstone newer than the row (the one case
 *    where tradeInsert skips it), the savepoint is rolled back, those rows go
 *    to the upsert and the others are copied again (the same way, once);
 *  - else the rows are written, exactly as the upsert would have.
 * Rows the copy cannot spell as the upsert's casts would (see tradeCopyRow)
 * go to the upsert too. Returns how many rows were copied.
 */
export async function writeHotTrades(
  client: pg.PoolClient,
  sql: Statements,
  hot: readonly HotUpsert[],
  counts: CopyCounts = newCopyCounts(),
  opening: FoldedOpening | null = null,
): Promise<number> {
  const upsert: HotUpsert[] = [];
  const copied =
    hot.length > 0 ? await copyHot(client, sql, hot, upsert, counts, true, opening) : 0;
  if (upsert.length > 0)
    await client.query(sql.tradeInsert, [JSON.stringify(upsert.map(tradeRow))]);
  return copied;
}

/**
 * Most tombstones newer than a copy's oldest row read in its message; beyond
 * that (a long replay over many deletes) the copied ids' own are read instead.
 * A setting for tests.
 */
export const copyTuning = { newerTombstonesMax: 1000 };

/** A row the COPY could not spell, in a message that was to commit: it is sent again without the end. */
class Unspelled extends Error {
  constructor() {
    super('slotline: a row needs the upsert; the write ends apart');
  }
}

/** Whether `err` is the server's refusal `code` (slotline.refuse). */
const refused = (err: Error | null, code: string) =>
  (err as { code?: unknown } | null)?.code === code;

/**
 * Copies what of `rows` it can spell, or hands rows to `upsert` as
 * writeHotTrades says. An `opening` heads the message and is settled as soon
 * as its results are back, whatever the COPY did. The rows are spelled as the
 * message is sent, each chunk sent as soon as it is cut: the server inserts
 * while the rest is spelled. So the tombstone read, part of the message sent before, is bounded
 * by the oldest version of all `rows` (a superset of what the copied ones need).
 *
 * Where the opening brings the write's end (FoldedOpening.closeWith), the
 * message also commits: instead of the read, the server checks the epoch and
 * that no tombstone is newer than the oldest row (so none blocks a copied
 * row; if one is, it is read after), then runs the end and the COMMIT. A failed check
 * leaves the transaction at the savepoint's rollback as the client-side
 * checks would, and the write goes on the usual way, ending apart; so does a
 * row the COPY cannot spell, which fails the COPY (it would need the upsert).
 */
async function copyHot(
  client: pg.PoolClient,
  sql: Statements,
  rows: readonly HotUpsert[],
  upsert: HotUpsert[],
  counts: CopyCounts,
  again: boolean,
  opening: FoldedOpening | null = null,
): Promise<number> {
  let oldest = rows[0]!.version;
  for (const u of rows) if (compareVersions(u.version, oldest) < 0) oldest = u.version;
  const max = copyTuning.newerTombstonesMax;
  const end = opening?.end() ?? null;
  const head = opening === null ? '' : `${opening.text}; `;
  // A message that commits has the server refuse any newer tombstone (read only if there is one).
  const checks =
    end === null
      ? [sql.tradeTombstonesNewer(oldest, max + 1)]
      : [opening!.expectText, sql.tradeTombstonesRefuse(oldest), ...end, 'COMMIT'];
  const message = `${head}SAVEPOINT slotline_copy; ${sql.tradeCopy}; ${checks.join('; ')}`;
  const { result, copy, unspelled, failure } = await sendCopy(client, message, rows, end !== null);
  // Before anything else: nothing may follow an opening its lock did not vouch for.
  opening?.settle(result.before, failure);
  const copied = result.copied;
  if (end !== null && failure === null) {
    opening!.noteCommitted();
    counts.copied += copied;
    return copied;
  }
  // A message that was to commit refused a newer tombstone: its copy is rolled back, then read.
  const undone = refused(failure, TOMBSTONE_REFUSED);
  if (failure !== null && !undone) {
    const err = failure;
    // What ended the write failed (or a check the client's own passed): the write fails.
    if (end !== null && result.copyComplete) throw err;
    // A lost connection fails the rollback too: the write fails and is retried as any is.
    await client.query('ROLLBACK TO SAVEPOINT slotline_copy').catch(() => {
      throw err;
    });
    if (err instanceof Unspelled) return copyHot(client, sql, rows, upsert, counts, again);
    counts.conflicts++;
    upsert.push(...rows);
    return 0;
  }
  // The copy stands unless a tombstone blocks one of its rows.
  let newer = result.rows;
  if (undone) {
    await client.query('ROLLBACK TO SAVEPOINT slotline_copy');
    newer = await tombstoneRows(client, sql.tradeTombstonesNewer(oldest, max + 1));
  }
  upsert.push(...unspelled);
  if (newer.length > max && copy.length > 0) {
    newer = await tombstoneRows(client, sql.tradeTombstonesOf(copy.map((u) => u.trade.tradeId)));
  }
  const blocked = blockedIds(copy, newer);
  if (blocked.size === 0 && !undone) {
    counts.copied += copied;
    return copied;
  }
  if (!undone) await client.query('ROLLBACK TO SAVEPOINT slotline_copy');
  counts.tombstones++;
  if (!again) {
    upsert.push(...copy);
    return 0;
  }
  const keep: HotUpsert[] = [];
  for (const u of copy) (blocked.has(u.trade.tradeId) ? upsert : keep).push(u);
  // Spelled again (rare): the survivors, copied the same way, once more.
  return keep.length > 0 ? copyHot(client, sql, keep, upsert, counts, false) : 0;
}

/** The rows of a tombstone read (id, generation, LSN, seq). */
async function tombstoneRows(client: pg.PoolClient, text: string): Promise<(string | null)[][]> {
  return (await client.query<(string | null)[]>({ text, rowMode: 'array' })).rows;
}

/**
 * Sends `message` (one COPY of `rows` among its statements), spelling the rows
 * as the server takes them: those it cannot spell are left out, or with
 * `strict` fail the COPY (Unspelled). Returns what the message did.
 */
async function sendCopy(
  client: pg.PoolClient,
  message: string,
  rows: readonly HotUpsert[],
  strict: boolean,
): Promise<{
  result: Readonly<CopyInResult>;
  copy: HotUpsert[];
  unspelled: HotUpsert[];
  failure: Error | null;
}> {
  const copy: HotUpsert[] = [];
  const unspelled: HotUpsert[] = [];
  const q = new CopyInQuery(message, (send) => {
    const out = new CopyRows(send);
    for (const u of rows) {
      if (writeTradeCopyRow(u, out)) copy.push(u);
      else if (strict) throw new Unspelled();
      else unspelled.push(u);
    }
    out.finish();
  });
  void client.query(q);
  let failure: Error | null = null;
  try {
    await q.done;
  } catch (err) {
    failure = err as Error;
  }
  return { result: q.soFar, copy, unspelled, failure };
}

/**
 * The ids of `copy` that a tombstone among `tombstones` (rows of id,
 * generation, LSN, seq) keeps out: one strictly newer than the row, the
 * condition under which tradeInsert would skip it.
 */
export function blockedIds(
  copy: readonly HotUpsert[],
  tombstones: readonly (string | null)[][],
): Set<string> {
  const blocked = new Set<string>();
  if (tombstones.length === 0) return blocked;
  const newest = new Map<string, RowVersion>();
  for (const [id, gen, lsn, seq] of tombstones) {
    if (id === null || id === undefined) continue;
    newest.set(id, { gen: Number(gen), lsn: parseLsn(lsn as string), seq: Number(seq) });
  }
  for (const u of copy) {
    const t = newest.get(u.trade.tradeId);
    if (t && compareVersions(t, u.version) > 0) blocked.add(u.trade.tradeId);
  }
  return blocked;
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
