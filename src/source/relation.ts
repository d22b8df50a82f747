import type pg from 'pg';
import { quoteIdent } from '../sql.js';
import type { RelationLike } from '../trades/router.js';

/** A relation known only by its column names (a COPY, a backfill SELECT, a dead letter's raw row). */
export function relationOf(schema: string, name: string, columns: readonly string[]): RelationLike {
  return {
    schema,
    name,
    columns: columns.map((c) => ({ name: c, typeOid: 0, typmod: -1, isKey: false })),
  };
}

/** A source table's current columns, in table order. */
export async function tableRelation(
  db: Pick<pg.ClientBase, 'query'>,
  schema: string,
  table: string,
): Promise<RelationLike> {
  const { rows } = await db.query<{ attname: string }>(
    `SELECT attname FROM pg_attribute
      WHERE attrelid = ($1 || '.' || $2)::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [quoteIdent(schema), quoteIdent(table)],
  );
  return relationOf(
    schema,
    table,
    rows.map((r) => r.attname),
  );
}
