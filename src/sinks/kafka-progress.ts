import { formatLsn, type Lsn, maxLsn, parseLsn } from '../checkpoint/lsn.js';
import type { Batch, Change } from './batch.js';

/**
 * Where the exactly-once Kafka sink stands, as its progress record says: the
 * record is written in the same Kafka transaction as the changes it covers,
 * so a `read_committed` read of the latest one is exactly what Kafka holds.
 * Pure: the record's format and the rules that use it, unit-tested without
 * a broker.
 */
export interface KafkaProgress {
  /** End LSN of the last source transaction (or idle stretch of WAL) wholly in Kafka. */
  lsn: Lsn;
  /**
   * A source transaction larger than one batch, in Kafka up to and including
   * its change `seq`: its commit LSN and that position. A replay of it resumes
   * after that change. Null when no transaction is half sent.
   */
  partial: { lsn: Lsn; seq: number } | null;
}

/** Written beside the position, for an operator reading the topic. */
export interface ProgressNote {
  /** The replica that wrote it (host:pid). */
  holder: string;
  /** unix ms */
  at: number;
}

interface ProgressJson {
  lsn: string;
  partial: { lsn: string; seq: number } | null;
  holder?: string;
  at?: string;
}

export function encodeProgress(p: KafkaProgress, note: ProgressNote): string {
  const json: ProgressJson = {
    lsn: formatLsn(p.lsn),
    partial: p.partial ? { lsn: formatLsn(p.partial.lsn), seq: p.partial.seq } : null,
    holder: note.holder,
    at: new Date(note.at).toISOString(),
  };
  return JSON.stringify(json);
}

/** Parses a progress record; throws a RangeError naming what is wrong. */
export function decodeProgress(text: string): KafkaProgress {
  let json: Partial<ProgressJson>;
  try {
    json = JSON.parse(text) as Partial<ProgressJson>;
  } catch {
    throw new RangeError(`progress record is not JSON: ${text.slice(0, 200)}`);
  }
  if (typeof json.lsn !== 'string') throw new RangeError(`progress record has no lsn: ${text}`);
  const partial = json.partial;
  if (partial != null && (typeof partial.lsn !== 'string' || !Number.isInteger(partial.seq)))
    throw new RangeError(`progress record has a bad partial position: ${text}`);
  return {
    lsn: parseLsn(json.lsn),
    partial: partial == null ? null : { lsn: parseLsn(partial.lsn), seq: partial.seq },
  };
}

/**
 * Whether `c` is in Kafka already by `p`: a streamed change of a transaction
 * that ended at or before `p.lsn` (the router's skip rule: a commit LSN below
 * a commit's end LSN), or one of the half-sent transaction up to its recorded
 * position. Snapshot, backfill and retry rows belong to no streamed
 * transaction and are never skipped.
 */
export function alreadySent(c: Change, p: KafkaProgress | null): boolean {
  if (p === null || c.tx === undefined || c.seq === undefined) return false;
  if (c.lsn < p.lsn) return true;
  return p.partial !== null && c.lsn === p.partial.lsn && c.seq <= p.partial.seq;
}

/**
 * The progress once `batch` is in Kafka after `p`: its checkpoint (the end of
 * its last commit), and, when it ends inside a source transaction, the last
 * change of that transaction it carried. Null while nothing was ever
 * checkpointed (the initial snapshot's rows).
 */
export function progressAfter(batch: Batch, p: KafkaProgress | null): KafkaProgress | null {
  const lsn = batch.checkpoint === null ? (p?.lsn ?? null) : maxLsn(batch.checkpoint, p?.lsn ?? 0n);
  if (lsn === null) return null;
  let partial = p?.partial && p.partial.lsn >= lsn ? p.partial : null;
  // Changes at or after the checkpoint belong to a transaction whose commit is still to come.
  for (let i = batch.changes.length - 1; i >= 0; i--) {
    const c = batch.changes[i] as Change;
    if (c.lsn < lsn) break;
    if (c.tx === undefined || c.seq === undefined) continue;
    if (partial === null || c.lsn > partial.lsn || (c.lsn === partial.lsn && c.seq > partial.seq))
      partial = { lsn: c.lsn, seq: c.seq };
    break;
  }
  return { lsn, partial };
}

export function sameProgress(a: KafkaProgress | null, b: KafkaProgress | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.lsn !== b.lsn) return false;
  if (a.partial === null || b.partial === null) return a.partial === b.partial;
  return a.partial.lsn === b.partial.lsn && a.partial.seq === b.partial.seq;
}

/**
 * The further of two positions (null: none). The sink database's row is never
 * ahead of what Kafka holds (it is written after Kafka acknowledged), so
 * when it is ahead of the progress record, the changes in between went to
 * Kafka without one (at-least-once, before a switch to exactly-once).
 */
export function newerProgress(
  a: KafkaProgress | null,
  b: KafkaProgress | null,
): KafkaProgress | null {
  if (a === null || b === null) return a ?? b;
  const [hi, lo] = a.lsn >= b.lsn ? [a, b] : [b, a];
  // A half-sent transaction either names, at or after the further position, is still half sent.
  let partial: KafkaProgress['partial'] = null;
  for (const p of [hi.partial, lo.partial]) {
    if (p === null || p.lsn < hi.lsn) continue;
    if (partial === null || p.lsn > partial.lsn || (p.lsn === partial.lsn && p.seq > partial.seq))
      partial = p;
  }
  return { lsn: hi.lsn, partial };
}
