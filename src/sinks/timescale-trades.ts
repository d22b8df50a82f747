import type pg from 'pg';
import type { Segment } from './coalesce.js';
import type { StaleSpan } from './ohlcv-refresh.js';
import { type CopyCounts, writeHotTrades } from './timescale-copy.js';
import type { FoldedOpening } from './timescale-opening.js';
import { tradeRow, type statements } from './timescale-sql.js';
import { versionFields } from './version.js';

type Statements = ReturnType<typeof statements>;

/** A row the sink holds of an id the segment changes (tradeLocate). */
interface Located {
  i: string;
  /** its time, as the server prints it (read back exactly by ::timestamptz) */
  t: string;
  /** the same time in unix seconds */
  e: number;
  g: number;
  l: string;
  s: number;
  /** in a compressed chunk */
  z: boolean;
}

/** A located row to remove if the change that removes it is at least as new. */
export interface Removal {
  i: string;
  t: string;
  /** kept if at this unix time (the upsert that replaces it writes there); null for a delete */
  nt: string | null;
  g: number;
  l: string;
  s: number;
}

/**
 * Writes the trades of one segment under the apply rule, so that TimescaleDB
 * decompresses only the batches that hold the rows a change touches:
 * deletes, and upserts that may replace a row of the same id elsewhere, first
 * locate the id's rows (a read), then remove the older ones by (id, time) —
 * set-based where their chunk is in the rowstore, one constant statement per
 * row where it is in the columnstore — then tombstone the deletes and upsert.
 * Streamed inserts and snapshot rows take the hot path: a COPY when no row of
 * theirs is in the sink yet, else one INSERT … ON CONFLICT, which TimescaleDB
 * checks against compressed batches through the bloom filter (timescale-copy.ts).
 * Every trade time touched goes into `stale` (see ohlcv-refresh.ts), what the
 * COPYs did into `counts`. An `opening` rides in the COPY's message: the
 * caller passes one only where that COPY is the transaction's first statement.
 */
export async function writeTrades(
  client: pg.PoolClient,
  sql: Statements,
  seg: Segment,
  stale: StaleSpan,
  counts: CopyCounts,
  opening: FoldedOpening | null = null,
): Promise<void> {
  const json = (rows: unknown[]) => JSON.stringify(rows);
  const checked = seg.tradeUpserts.filter((u) => u.replace);
  const hot = seg.tradeUpserts.filter((u) => !u.replace);
  const ids = [...seg.tradeDeletes.map((d) => d.tradeId), ...checked.map((u) => u.trade.tradeId)];
  const located =
    ids.length === 0 ? [] : (await client.query<Located>(sql.tradeLocate, [ids])).rows;
  if (located.length > 0) {
    const held = new Map<string, Located[]>();
    for (const row of located) held.set(row.i, [...(held.get(row.i) ?? []), row]);
    const removals: (Removal & { z: boolean })[] = [];
    const remove = (id: string, nt: string | null, version: ReturnType<typeof versionFields>) => {
      for (const row of held.get(id) ?? []) {
        removals.push({ i: id, t: row.t, nt, ...version, z: row.z });
        stale.add(row.e);
      }
    };
    for (const d of seg.tradeDeletes) remove(d.tradeId, null, versionFields(d.version));
    for (const u of checked) remove(u.trade.tradeId, u.trade.time, versionFields(u.version));
    await removeRows(client, sql, removals);
  }
  if (seg.tradeDeletes.length > 0) {
    const rows = seg.tradeDeletes.map((d) => ({ i: d.tradeId, ...versionFields(d.version) }));
    await client.query(sql.tradeTombstone, [json(rows)]);
  }
  const upsertRows = (us: typeof checked) =>
    us.map((u) => {
      stale.add(Number(u.trade.time));
      return tradeRow(u);
    });
  if (checked.length > 0) {
    const newer = located.map(({ i, g, l, s }) => ({ i, g, l, s }));
    await client.query(sql.tradeUpsertChecked, [json(upsertRows(checked)), json(newer)]);
  }
  if (hot.length > 0) {
    for (const u of hot) stale.add(Number(u.trade.time));
    await writeHotTrades(client, sql, hot, counts, opening);
  }
}

/**
 * Removes located rows by (id, time): set-based in the rowstore, one constant
 * statement per row in the columnstore (see writeTrades).
 */
export async function removeRows(
  client: pg.PoolClient,
  sql: Statements,
  removals: readonly (Removal & { z: boolean })[],
): Promise<void> {
  const rowstore = removals.filter((r) => !r.z).map(({ z: _z, ...r }) => r);
  if (rowstore.length > 0) {
    await client.query(sql.tradeRemove, [JSON.stringify(rowstore), rowstore.map((r) => r.t)]);
  }
  for (const r of removals) {
    if (r.z) await client.query(sql.tradeRemoveOne, [r.i, r.t, r.nt, r.g, r.l, r.s]);
  }
}
