import type pg from 'pg';
import type { TupleValues } from '../decode/pgoutput.js';
import { POOLS_TABLE, TRADES_TABLE } from '../source/checks.js';
import { tableRelation } from '../source/relation.js';
import { roomIn, type QueueRoom, type WatermarkReader } from '../source/watermark.js';
import { quoteIdent } from '../sql.js';
import type { Rejection } from '../trades/map.js';
import type { ChangeRouter, RelationLike } from '../trades/router.js';

/** What re-reading one key found, once durable in every sink. */
export type Outcome =
  | { kind: 'written' }
  | { kind: 'gone' }
  | { kind: 'superseded' }
  | { kind: 'bad'; rejection: Rejection };

export type KeyedTable = 'trades' | 'pools';

/** The mapped table a dead letter's `source_table` (`schema.name`) names, if any. */
export function keyedTable(sourceTable: string): KeyedTable | null {
  const name = sourceTable.slice(sourceTable.lastIndexOf('.') + 1);
  if (name === TRADES_TABLE) return 'trades';
  if (name === POOLS_TABLE) return 'pools';
  return null;
}

export interface RereadDeps {
  sourceSchema: string;
  source: pg.Pool;
  router: Pick<ChangeRouter, 'remap'>;
  reader: WatermarkReader;
  queue: QueueRoom;
}

/**
 * Reads the current source rows of `keys` through one watermark window and
 * applies those that map at the high watermark (a keyed backfill). A key the
 * stream changed meanwhile is left to the stream (`superseded`); a key with
 * no row is `gone`; a row that still cannot be mapped is `bad`, and is not
 * dead-lettered again (its letter carries the reason). Nothing is written for
 * gone or bad keys. Resolves once what was written is durable everywhere.
 */
export async function rereadKeys(
  deps: RereadDeps,
  table: KeyedTable,
  keys: readonly string[],
  signal: AbortSignal,
): Promise<Map<string, Outcome>> {
  const name = table === 'trades' ? TRADES_TABLE : POOLS_TABLE;
  const relation = await tableRelation(deps.source, deps.sourceSchema, name);
  const idCol = relation.columns.findIndex((c) => c.name === 'id');
  let outcomes = new Map<string, Outcome>();
  await roomIn(deps.queue, signal);
  await deps.reader.read(
    {
      select: () => selectKeys(deps, relation, keys),
      apply: (rows, changed, lsn) => {
        const moved = table === 'trades' ? changed.trades : changed.pools;
        const found = new Map<string, Outcome>();
        for (const row of rows) {
          const id = row[idCol];
          if (typeof id !== 'string') continue;
          if (moved.has(id)) {
            found.set(id, { kind: 'superseded' });
            continue;
          }
          const rejection = deps.router.remap(relation, row, lsn, { deadLetter: false });
          found.set(id, rejection ? { kind: 'bad', rejection } : { kind: 'written' });
        }
        for (const k of keys) {
          if (!found.has(k)) found.set(k, { kind: moved.has(k) ? 'superseded' : 'gone' });
        }
        // A replay of the high watermark applies again; the last word counts.
        outcomes = found;
      },
    },
    signal,
  );
  return outcomes;
}

async function selectKeys(
  deps: RereadDeps,
  relation: RelationLike,
  keys: readonly string[],
): Promise<TupleValues[]> {
  const list = relation.columns.map((c) => quoteIdent(c.name)).join(', ');
  const { rows } = await deps.source.query<Record<string, string | null>>({
    text: `SELECT ${list} FROM ${quoteIdent(deps.sourceSchema)}.${quoteIdent(relation.name)}
            WHERE id = ANY($1::text[])`,
    values: [keys],
    rowMode: 'array',
    // Every value as text: amounts must never become JS numbers.
    types: { getTypeParser: () => (v: string) => v },
  } as pg.QueryConfig);
  return rows as unknown as TupleValues[];
}
