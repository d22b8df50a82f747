import type pg from 'pg';
import { type Lsn, formatLsn } from '../checkpoint/lsn.js';
import type { Change } from '../sinks/batch.js';
import { POOLS_TABLE, TRADES_TABLE } from '../source/checks.js';

/** The last change of one row key in a batch (key null: a truncate of the whole table). */
export interface LastChange {
  table: string;
  key: string | null;
  lsn: Lsn;
  /** The last change is itself a dead letter: only older letters are superseded. */
  letter: boolean;
}

function keyOf(c: Change): { table: string; key: string } | null {
  switch (c.kind) {
    case 'trade_upsert':
      return { table: TRADES_TABLE, key: c.trade.tradeId };
    case 'trade_delete':
      return { table: TRADES_TABLE, key: c.tradeId };
    case 'pool_upsert':
      return { table: POOLS_TABLE, key: c.pool.id };
    case 'pool_delete':
      return { table: POOLS_TABLE, key: c.poolId };
    case 'dead_letter': {
      const name = c.letter.sourceTable.slice(c.letter.sourceTable.lastIndexOf('.') + 1);
      return c.letter.rowKey === '(missing)' ? null : { table: name, key: c.letter.rowKey };
    }
    case 'truncate':
      return null;
  }
}

/** Per row key, the last change of a batch in stream order; a truncate covers its whole table. */
export function lastChanges(changes: readonly Change[]): LastChange[] {
  const last = new Map<string, LastChange>();
  for (const c of changes) {
    if (c.kind === 'truncate') {
      for (const t of c.tables) {
        const table = t === 'trades' ? TRADES_TABLE : POOLS_TABLE;
        last.set(`${table}\u0000`, { table, key: null, lsn: c.lsn, letter: false });
      }
      continue;
    }
    const k = keyOf(c);
    if (!k) continue;
    const entry = { ...k, lsn: c.lsn, letter: c.kind === 'dead_letter' };
    // Delete and re-set: the Map keeps insertion order, so the result follows the stream.
    last.delete(`${k.table}\u0000${k.key}`);
    last.set(`${k.table}\u0000${k.key}`, entry);
  }
  return [...last.values()];
}

/**
 * Settles the dead letters that a later change of the same row makes moot:
 * a newer version written (or deleted) means the sink holds what the source
 * has; a newer letter carries the row's current problem. Run it inside the
 * sink transaction that writes `changes`, after their dead letters are
 * inserted, so a letter is resolved exactly when its successor is durable.
 * Letters of the same transaction (same LSN) count as older unless the last
 * change is itself a letter. Returns how many letters it resolved.
 */
export async function supersedeLetters(
  db: Pick<pg.ClientBase, 'query'>,
  slot: string,
  changes: readonly Change[],
): Promise<number> {
  const last = lastChanges(changes);
  if (last.length === 0) return 0;
  const r = await db.query(
    `UPDATE slotline.dead_letters d
        SET state = 'resolved', last_seen = now(), note = 'superseded by a later change of the row'
       FROM json_to_recordset($1::json) AS r(tb text, k text, l text, x boolean)
      WHERE d.slot = $2 AND d.state IN ('pending', 'retried')
        AND (d.source_table = r.tb OR d.source_table LIKE '%.' || r.tb)
        AND (r.k IS NULL OR d.row_key = r.k)
        AND (d.lsn < r.l::pg_lsn OR (NOT r.x AND d.lsn = r.l::pg_lsn))`,
    [
      JSON.stringify(
        last.map((c) => ({ tb: c.table, k: c.key, l: formatLsn(c.lsn), x: c.letter })),
      ),
      slot,
    ],
  );
  return r.rowCount ?? 0;
}
