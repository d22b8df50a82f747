/**
 * Microbenchmark of one TimescaleDB sink write's wall time against a real
 * server: batches of streamed inserts as the pipeline hands them over (the
 * benchmark's trades, one source transaction per batch), written by this
 * build's TimescaleSink and, with `--against <dist>`, by another build's,
 * interleaved write by write (alternating which goes first) into the same
 * table under the same leader epoch, so that drift on a shared machine falls
 * on both alike. Not part of the test suite; for A/B runs of the sink's
 * statements and round trips:
 *
 *   npm run build && tsc -p bench/tsconfig.json && \
 *     node dist/bench/bench/micro-sink-write.js [--rows 50] [--writes 400] [--against ../other/dist]
 *
 * Prints the mean, p50, p90 and p99 of each build's writes (the first 4 of
 * each left out) and in how many pairs each was faster.
 */
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { parseLsn } from '../src/checkpoint/lsn.js';
import { createLogger } from '../src/log.js';
import { Batch } from '../src/sinks/batch.js';
import { TimescaleSink } from '../src/sinks/timescale.js';
import type { Trade } from '../src/trades/map.js';
import { startCluster } from '../test/harness/cluster.js';
import { createDatabases, createSource, dbUrl, POOLS, tradeId } from './workload.js';
import { argValue, numberArg } from './args.js';

const ROWS = numberArg('--rows', 50);
const WRITES = numberArg('--writes', 400);
const AGAINST = argValue('--against');
const WARM = 4;
const ROOT = resolve(import.meta.dirname, '..', '..', '..');
const SLOT = 'micro_sink_write';

type Writer = Pick<TimescaleSink, 'open' | 'write' | 'close'>;

/** Trade `g` of the benchmark's shape (bench/workload.ts), three per unix second. */
function trade(g: number): Trade {
  const pool = POOLS[g % POOLS.length]!;
  return {
    tradeId: tradeId(g),
    time: String(1_700_000_000 + Math.floor(g / 3)),
    chainId: '1',
    poolId: pool.id,
    symbol: `${pool.base_currency}/${pool.quote_currency}`,
    side: g % 2 === 0 ? 'buy' : 'sell',
    price: (2_500n * 10n ** 18n + BigInt(g % 997)).toString(),
    quantity: (10n ** 16n * BigInt(1 + (g % 50))).toString(),
    transactionId: `0x${g.toString(16).padStart(64, 'a')}`,
  };
}

function quantiles(ms: number[]): string {
  const t = [...ms].sort((a, b) => a - b);
  const q = (p: number) => t[Math.floor(p * (t.length - 1))]!.toFixed(2);
  const mean = t.reduce((a, b) => a + b, 0) / t.length;
  return `mean ${mean.toFixed(2)} ms, p50 ${q(0.5)}, p90 ${q(0.9)}, p99 ${q(0.99)}`;
}

async function main(): Promise<void> {
  await using src = await startCluster();
  await using snk = await startCluster();
  await createDatabases(src.adminUrl, ['bench_src']);
  await createDatabases(snk.adminUrl, ['bench_sink']);
  const sourceUrl = dbUrl(src.adminUrl, 'bench_src');
  const sinkUrl = dbUrl(snk.adminUrl, 'bench_sink');
  await createSource(sourceUrl);
  const env = {
    ...process.env,
    SLOTLINE_SOURCE_URL: sourceUrl,
    SLOTLINE_SINK_URL: sinkUrl,
    SLOTLINE_SLOT: SLOT,
    SLOTLINE_PUBLICATION: 'micro_sink_write',
    SLOTLINE_LOG_LEVEL: 'warn',
  };
  const setup = spawnSync(process.execPath, [join(ROOT, 'dist', 'cli.js'), 'setup'], { env });
  if (setup.status !== 0) throw new Error(`slotline setup failed:\n${String(setup.stderr)}`);

  const opts = { url: sinkUrl, schema: 'public', slot: SLOT, log: createLogger({ level: 'warn' }) };
  const ours = new TimescaleSink(opts);
  await ours.open();
  const claimed = await ours.claimEpoch({ holder: 'micro-sink-write', address: null });
  await ours.beginGeneration({ systemId: '1', timeline: 1 }, 'public');
  await ours.completeSnapshot(parseLsn('0/100'), { sweep: false });
  const writers: { name: string; sink: Writer }[] = [{ name: 'this build', sink: ours }];
  if (AGAINST) {
    const mod = (await import(resolve(AGAINST, 'sinks', 'timescale.js'))) as {
      TimescaleSink: new (o: typeof opts) => Writer;
    };
    const theirs = new mod.TimescaleSink(opts);
    await theirs.open();
    // Both write under the one epoch claimed above: a claim of its own would fence ours.
    (theirs as unknown as { epoch: string }).epoch = claimed.epoch;
    writers.push({ name: AGAINST, sink: theirs });
  }

  const times = writers.map(() => [] as number[]);
  let lsn = 0x1000n;
  let g = 0;
  for (let k = 0; k < WRITES; k++) {
    const order = writers.map((_, i) => (k % 2 === 0 ? i : writers.length - 1 - i));
    for (const i of order) {
      lsn += 0x100n;
      const batch = new Batch(0);
      for (let seq = 0; seq < ROWS; seq++) {
        const tx = { xid: k, commitTime: 0n };
        batch.changes.push({ kind: 'trade_upsert', op: 'insert', lsn, seq, tx, trade: trade(g++) });
      }
      batch.checkpoint = lsn;
      batch.commitTime = 0n;
      batch.commits = 1;
      const t = performance.now();
      await writers[i]!.sink.write(batch);
      if (k >= WARM) times[i]!.push(performance.now() - t);
    }
  }
  for (const w of writers) await w.sink.close();

  console.log(`${WRITES} writes of ${ROWS} rows each, interleaved:`);
  writers.forEach((w, i) => console.log(`  ${w.name}: ${quantiles(times[i]!)}`));
  if (writers.length === 2) {
    let won = 0;
    for (let j = 0; j < times[0]!.length; j++) if (times[0]![j]! < times[1]![j]!) won++;
    console.log(`  this build faster in ${won} of ${times[0]!.length} pairs`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
