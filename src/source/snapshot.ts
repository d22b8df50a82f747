import pg from 'pg';
import type { Lsn } from '../checkpoint/lsn.js';
import type { Logger } from '../log.js';
import type { InflightQueue } from '../sinks/inflight.js';
import type { ChangeRouter } from '../trades/router.js';
import { POOLS_TABLE, TRADES_TABLE } from './checks.js';
import { connectionOf, CopyOutQuery } from './copy-both.js';
import { parseCopyTextRow } from './copy-text.js';
import { tableRelation } from './relation.js';
import { quoteIdent } from '../sql.js';

export interface SnapshotCopyOptions {
  url: string;
  /** Name exported by CREATE_REPLICATION_SLOT; valid while that connection stays idle. */
  snapshotName: string;
  /** The slot's consistent point: every copied row is stamped with it. */
  lsn: Lsn;
  schema: string;
  router: ChangeRouter;
  queue: InflightQueue;
  signal: AbortSignal;
  log: Logger;
}

/**
 * Copies the source tables as of the slot's exported snapshot with COPY … TO
 * STDOUT, through the same router and bounded queue as the stream: pools first
 * (so trades find their symbols), then trades. When the queue is full the
 * socket is paused, so any table size runs in bounded memory.
 */
export async function copySnapshot(opts: SnapshotCopyOptions): Promise<Record<string, number>> {
  const client = new pg.Client({
    connectionString: opts.url,
    application_name: 'slotline-snapshot-copy',
  });
  await client.connect();
  const counts: Record<string, number> = {};
  const abort = () => client.end().catch(() => undefined);
  opts.signal.addEventListener('abort', abort, { once: true });
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await client.query(`SET TRANSACTION SNAPSHOT '${opts.snapshotName.replace(/'/g, "''")}'`);
    for (const table of [POOLS_TABLE, TRADES_TABLE]) {
      counts[table] = await copyTable(client, table, opts);
      opts.log.info({ table, rows: counts[table] }, 'snapshot table copied');
    }
    await client.query('COMMIT');
    return counts;
  } finally {
    opts.signal.removeEventListener('abort', abort);
    await client.end().catch(() => undefined);
  }
}

async function copyTable(
  client: pg.Client,
  table: string,
  opts: SnapshotCopyOptions,
): Promise<number> {
  const relation = await tableRelation(client, opts.schema, table);
  const list = relation.columns.map((c) => quoteIdent(c.name)).join(', ');
  const conn = connectionOf(client);
  let rows = 0;
  let paused = false;
  const query = new CopyOutQuery(
    `COPY (SELECT ${list} FROM ${quoteIdent(opts.schema)}.${quoteIdent(table)}) TO STDOUT`,
    (chunk) => {
      opts.router.snapshotRow(relation, parseCopyTextRow(chunk), opts.lsn, chunk.length);
      rows += 1;
      if (!paused && opts.queue.full) {
        paused = true;
        conn.stream.pause();
        void opts.queue.drained().then(() => {
          paused = false;
          conn.stream.resume();
        });
      }
    },
  );
  client.query(query);
  await query.done;
  return rows;
}
