import pg from 'pg';
import { request, type CliResult } from '../admin/client.js';
import { readCheckpoint } from '../checkpoint/store.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { sleep } from '../retry.js';
import { parseVerifyRequest, printedReport, type TimeSpan } from './buckets.js';
import { runVerify } from './verify.js';
import { RequestRefused } from '../errors.js';

/**
 * `slotline verify [--from t] [--to t] [--bucket s] [--repair]`: compares the
 * databases directly, so it works with the connector stopped. `--repair`
 * removes sink rows gone at the source itself, and backfills the buckets that
 * differ through the running connector's admin API (the backfill must run
 * beside its stream), then compares them again.
 *
 * Exit code 0: every bucket matches; 1: some differ (or an error); 2: usage.
 * The report (JSON, times in ISO 8601 UTC) goes to stdout.
 */
export async function verifyCommand(
  cfg: Config,
  flags: Record<string, string | true>,
  log: Logger,
): Promise<CliResult & { report: boolean }> {
  const body: Record<string, unknown> = {};
  if (typeof flags.from === 'string') body.from = flags.from;
  if (typeof flags.to === 'string') body.to = flags.to;
  if (typeof flags.bucket === 'string') {
    if (!/^\d+$/.test(flags.bucket))
      return { code: 2, out: '--bucket must be a whole number of seconds', report: false };
    body.bucketSeconds = Number(flags.bucket);
  }
  let req;
  try {
    // From the command line, no --from means all history.
    req = parseVerifyRequest(body, {
      bucketSeconds: cfg.verifyBucketSeconds,
      lookbackSeconds: 0,
      now: Math.floor(Date.now() / 1000),
      repair: flags.repair === true,
    });
  } catch (err) {
    if (err instanceof RequestRefused) return { code: 2, out: err.message, report: false };
    throw err;
  }
  try {
    const report = await runVerify({
      sourceUrl: cfg.sourceUrl,
      sinkUrl: cfg.sinkUrl,
      sourceSchema: await heldSchema(cfg),
      sinkSchema: cfg.sinkSchema,
      slot: cfg.slot,
      request: req,
      backfill: (span) => backfillThroughApi(cfg, span),
      log,
    });
    return {
      code: report.ok ? 0 : 1,
      out: JSON.stringify(printedReport(report), null, 2),
      report: true,
    };
  } catch (err) {
    return { code: 1, out: `verify failed: ${(err as Error).message}`, report: false };
  }
}

/** POST /admin/backfill for the span (after any backfill that runs), then polls /status until it ends. */
async function backfillThroughApi(cfg: Config, span: TimeSpan): Promise<number> {
  let id: number;
  for (;;) {
    const r = await request(cfg, 'POST', '/admin/backfill', { from: span.from, to: span.to });
    if (r.code === 0) {
      id = (JSON.parse(r.out) as { id: number }).id;
      break;
    }
    if (r.code === 2 && /is running|already running/.test(r.out)) {
      await sleep(500);
      continue;
    }
    throw new Error(`the repair's backfill was refused: ${r.out}`);
  }
  for (;;) {
    await sleep(250);
    const r = await request(cfg, 'GET', '/status');
    if (r.code !== 0) throw new Error(`cannot follow backfill ${id}: ${r.out}`);
    const b = (
      JSON.parse(r.out) as { backfill: { id: number; state: string; rows: number } | null }
    ).backfill;
    if (!b || b.id !== id || b.state === 'running') continue;
    if (b.state !== 'done') throw new Error(`backfill ${id} of the repair ended ${b.state}`);
    return b.rows;
  }
}

/** Follow mode compares the deployment the sink holds (recorded with its checkpoint). */
async function heldSchema(cfg: Config): Promise<string> {
  if (cfg.ponderViewsSchema === null) return cfg.sourceSchema;
  const sink = new pg.Client({
    connectionString: cfg.sinkUrl,
    application_name: 'slotline-verify',
  });
  await sink.connect();
  try {
    const ck = await readCheckpoint(sink, cfg.slot, 'timescale');
    return ck?.sourceSchema ?? cfg.sourceSchema;
  } finally {
    await sink.end().catch(() => undefined);
  }
}
