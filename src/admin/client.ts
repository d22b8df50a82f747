import pg from 'pg';
import { formatLsn } from '../checkpoint/lsn.js';
import { readCheckpoints } from '../checkpoint/store.js';
import type { Config } from '../config.js';
import { listDeadLetters, showDeadLetter } from '../deadletters/service.js';
import { RequestRefused } from '../errors.js';
import { inspectSlot } from '../source/slot.js';
import { parseListQuery } from './dead-letters.js';

/**
 * The command-line side of the admin actions: `status`, `reset-lsn`,
 * `backfill` and `dead-letters` talk to the running connector's HTTP API (the
 * actions need its stream), at SLOTLINE_ADMIN_URL, or SLOTLINE_HTTP_HOST and
 * SLOTLINE_ADMIN_PORT or SLOTLINE_HTTP_PORT (the loopback address when the server binds to every
 * interface). `status` and the dead letters' `list` and `show` read the
 * databases themselves when the connector is not reachable.
 */
export function adminUrl(
  cfg: Pick<Config, 'adminUrl' | 'httpHost' | 'httpPort' | 'adminPort'>,
): string {
  if (cfg.adminUrl) return cfg.adminUrl;
  const h = cfg.httpHost;
  const host =
    h === '0.0.0.0' || h === '::' || h === '' ? '127.0.0.1' : h.includes(':') ? `[${h}]` : h;
  return `http://${host}:${cfg.adminPort || cfg.httpPort}`;
}

export interface CliResult {
  code: number;
  out: string;
}

/** A request's result; `status` is the HTTP status, absent when the connector was not reachable. */
export interface ApiResult extends CliResult {
  status?: number;
}

export async function request(
  cfg: Config,
  method: string,
  path: string,
  body?: unknown,
): Promise<ApiResult> {
  const headers: Record<string, string> = {};
  if (cfg.adminToken) headers.authorization = `Bearer ${cfg.adminToken}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(`${adminUrl(cfg)}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    return {
      code: 1,
      out: `cannot reach the connector at ${adminUrl(cfg)}: ${(err as Error).message}`,
    };
  }
  const text = await res.text();
  let pretty = text;
  try {
    pretty = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    // not JSON
  }
  return { code: res.ok ? 0 : res.status >= 500 ? 1 : 2, out: pretty, status: res.status };
}

/** `slotline status`: the running connector's /status, or the databases' view when it is not reachable. */
export async function statusCommand(cfg: Config): Promise<CliResult> {
  const live = await request(cfg, 'GET', '/status');
  if (live.code === 0) return live;
  const source = new pg.Client({
    connectionString: cfg.sourceUrl,
    application_name: 'slotline-status',
  });
  const sink = new pg.Client({
    connectionString: cfg.sinkUrl,
    application_name: 'slotline-status',
  });
  try {
    await source.connect();
    await sink.connect();
    const slot = await inspectSlot(source, cfg.slot);
    const checkpoints = await readCheckpoints(sink, cfg.slot);
    const fmt = (l: bigint | null) => (l === null ? null : formatLsn(l));
    const report = {
      note: `connector not reachable (${live.out.split('\n')[0]}); read from the databases`,
      slot: slot
        ? {
            name: slot.name,
            active: slot.active,
            activePid: slot.activePid,
            walStatus: slot.walStatus,
            currentLsn: formatLsn(slot.currentLsn),
            confirmedFlushLsn: fmt(slot.confirmedFlushLsn),
            restartLsn: fmt(slot.restartLsn),
            lagBytes:
              slot.confirmedFlushLsn === null
                ? null
                : Number(slot.currentLsn - slot.confirmedFlushLsn),
            safeWalSize: slot.safeWalSize === null ? null : Number(slot.safeWalSize),
          }
        : null,
      sinks: checkpoints.map((c) => ({
        sink: c.sink,
        state: c.state,
        checkpoint: fmt(c.lsn),
        updatedAt: c.updatedAt,
      })),
    };
    return { code: 0, out: JSON.stringify(report, null, 2) };
  } finally {
    await source.end().catch(() => undefined);
    await sink.end().catch(() => undefined);
  }
}

export function resetLsnCommand(cfg: Config, lsn: string, force: boolean): Promise<CliResult> {
  return request(cfg, 'POST', '/admin/lsn-reset', { lsn, force });
}

export function backfillCommand(
  cfg: Config,
  body: Record<string, unknown> | 'cancel',
): Promise<CliResult> {
  if (body === 'cancel') return request(cfg, 'DELETE', '/admin/backfill');
  return request(cfg, 'POST', '/admin/backfill', body);
}

/** `slotline dead-letters <list|show|retry|discard|purge> …` */
export async function deadLettersCommand(
  cfg: Config,
  sub: string,
  args: Record<string, string | true>,
  ids: string[],
): Promise<CliResult> {
  const filter: Record<string, unknown> = {};
  for (const k of ['reason', 'table', 'state', 'from', 'to'] as const) {
    if (typeof args[k] === 'string') filter[k] = args[k];
  }
  if (ids.length > 0) filter.ids = ids;
  switch (sub) {
    case 'list': {
      const q: Record<string, string> = {};
      for (const [k, v] of Object.entries(filter))
        q[k] = Array.isArray(v) ? v.join(',') : String(v);
      if (typeof args.limit === 'string') q.limit = args.limit;
      if (typeof args.after === 'string') q.after = args.after;
      const live = await request(cfg, 'GET', `/admin/dead-letters?${new URLSearchParams(q)}`);
      return offline(live) ? readFromSink(cfg, live, (db) => listOffline(db, cfg, q)) : live;
    }
    case 'show': {
      if (ids.length !== 1) return { code: 2, out: 'show takes one id' };
      const id = ids[0] as string;
      const live = await request(cfg, 'GET', `/admin/dead-letters/${encodeURIComponent(id)}`);
      return offline(live)
        ? readFromSink(cfg, live, (db) => showDeadLetter(db, cfg.slot, Number(id)))
        : live;
    }
    case 'retry':
      if (ids.length === 0 && Object.keys(filter).length === 0 && args.all !== true) {
        return {
          code: 2,
          out: 'retry takes ids, a filter (--reason, --table, --state, --from, --to) or --all',
        };
      }
      return needsConnector(await request(cfg, 'POST', '/admin/dead-letters/retry', filter));
    case 'discard':
      if (typeof args.note !== 'string') return { code: 2, out: 'discard needs --note "why"' };
      return needsConnector(
        await request(cfg, 'POST', '/admin/dead-letters/discard', { ...filter, note: args.note }),
      );
    case 'purge':
      return needsConnector(
        await request(
          cfg,
          'POST',
          '/admin/dead-letters/purge',
          typeof args['older-than-days'] === 'string'
            ? { olderThanDays: Number(args['older-than-days']) }
            : {},
        ),
      );
    default:
      return {
        code: 2,
        out: `unknown dead-letters action ${JSON.stringify(sub)}: list, show, retry, discard or purge`,
      };
  }
}

/**
 * Whether a read goes to the sink itself: the connector is not reachable, or
 * answers that it has no dead-letter service now (a standby, or starting).
 */
function offline(r: ApiResult): boolean {
  return r.status === undefined || (r.status === 409 && /not available now/.test(r.out));
}

/** Changes go through the running connector only; say so when there is none. */
function needsConnector(r: ApiResult): CliResult {
  if (r.status !== undefined) return r;
  return {
    code: 1,
    out: `${r.out}\nretry, discard and purge act through the running connector (\`slotline run\`); list and show work without it`,
  };
}

function listOffline(db: pg.Client, cfg: Config, query: Record<string, string>): Promise<unknown> {
  const q = parseListQuery(query);
  return listDeadLetters(db, cfg.slot, q.filter, q.limit, q.after);
}

/** Runs a read on the sink database, its answer shaped as the API's, with a note saying where it came from. */
async function readFromSink(
  cfg: Config,
  live: ApiResult,
  read: (db: pg.Client) => Promise<unknown>,
): Promise<CliResult> {
  const db = new pg.Client({ connectionString: cfg.sinkUrl, application_name: 'slotline-cli' });
  db.on('error', () => undefined);
  try {
    await db.connect();
    const answer = (await read(db)) as Record<string, unknown>;
    const note = `${live.out.split('\n')[0] ?? ''}; read from the sink database`;
    return { code: 0, out: JSON.stringify({ note, ...answer }, null, 2) };
  } catch (err) {
    // As the API's 4xx answers: exit code 2.
    if (err instanceof RequestRefused) return { code: 2, out: err.message };
    return { code: 1, out: `${live.out}\nand the sink database: ${(err as Error).message}` };
  } finally {
    await db.end().catch(() => undefined);
  }
}
