import { type Lsn, formatLsn } from '../checkpoint/lsn.js';
import type { Change } from './batch.js';

/**
 * The version of a row as the sink stores it: which source history wrote it
 * (`gen`, bumped by every new snapshot, so two servers' LSNs are never
 * compared), the commit LSN of the source transaction, and the change's
 * position in that transaction (`seq`). Ordered lexicographically; a change is
 * applied only if its version is at least the stored one (equal: a replay).
 */
export interface RowVersion {
  gen: number;
  lsn: Lsn;
  seq: number;
}

/**
 * The position of a row that belongs to no streamed transaction (an initial
 * snapshot or a backfill row read as of `lsn`, a dead-letter retry of unknown
 * position): before every change of a transaction committed at that LSN.
 */
export const BEFORE_TX_SEQ = -1;

export function compareVersions(a: RowVersion, b: RowVersion): -1 | 0 | 1 {
  if (a.gen !== b.gen) return a.gen < b.gen ? -1 : 1;
  if (a.lsn !== b.lsn) return a.lsn < b.lsn ? -1 : 1;
  if (a.seq !== b.seq) return a.seq < b.seq ? -1 : 1;
  return 0;
}

/** `change`'s version; `gen` is the sink's current generation, for changes that carry none. */
export function versionOf(change: Change, gen: number): RowVersion {
  return { gen: change.gen ?? gen, lsn: change.lsn, seq: change.seq ?? BEFORE_TX_SEQ };
}

/** The JSON fields every guarded statement reads (LSN as text, cast in SQL). */
export function versionFields(v: RowVersion): { g: number; l: string; s: number } {
  return { g: v.gen, l: formatLsn(v.lsn), s: v.seq };
}
