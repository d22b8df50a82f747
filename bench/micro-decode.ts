/**
 * Microbenchmark of the connector's CPU per trade on the catch-up path, without
 * servers: a synthetic replication stream shaped like the benchmark's backlog
 * (bench/workload.ts: 1,000-row transactions of Ponder trades over five pools)
 * is framed as the server sends it (CopyData of XLogData of pgoutput), cut into
 * 64 KiB socket reads and fed through pg's own protocol parser, then through
 * what session.ts does per message (frame, decode, route and map, the decode
 * counter, the in-flight queue) and what the TimescaleDB sink does per batch
 * before its I/O (coalesce, the COPY rows and their chunks). Not part of the
 * test suite; for A/B runs of allocation changes:
 *
 *   npm run build && tsc -p bench/tsconfig.json && \
 *     node dist/bench/bench/micro-decode.js [--trades 300000] [--rounds 5] [--alloc]
 *
 * Prints ns per trade (wall and process CPU, GC threads included) and the share
 * of GC pauses in the wall time (PerformanceObserver 'gc'). `--alloc` adds a
 * round under V8's sampling heap profiler, collected objects included, and
 * prints the bytes allocated per trade by allocation site. The machine is
 * shared: compare A/B runs back to back, and CPU rather than wall.
 */
import { Session } from 'node:inspector/promises';
import { PerformanceObserver } from 'node:perf_hooks';
import { Parser } from 'pg-protocol/dist/parser.js';
import pino from 'pino';
import { createMetrics, DecodeCounter } from '../src/admin/metrics.js';
import { PgoutputDecoder } from '../src/decode/pgoutput.js';
import { coalesce } from '../src/sinks/coalesce.js';
import * as copyIn from '../src/sinks/copy-in.js';
import { InflightQueue } from '../src/sinks/inflight.js';
import * as timescaleCopy from '../src/sinks/timescale-copy.js';
import { textArray } from '../src/sinks/timescale-sql.js';
import * as replicationWire from '../src/source/wire.js';
import { PoolCache } from '../src/trades/pools.js';
import { ChangeRouter } from '../src/trades/router.js';
import { makePool } from '../test/harness/ponder.js';
import { numberArg } from './args.js';

const TRADES = numberArg('--trades', 300_000);
const ROUNDS = numberArg('--rounds', 5);
const TX_ROWS = 1_000;
const READ_BYTES = 64 * 1024;
const POOLS = Array.from({ length: 5 }, (_, i) => makePool(i));

/** Builds pgoutput messages into one growing buffer. */
class Writer {
  private buf = Buffer.alloc(256);
  private pos = 0;
  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  u8(v: number): this {
    this.ensure(1);
    this.buf[this.pos++] = v;
    return this;
  }
  u16(v: number): this {
    this.ensure(2);
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }
  u32(v: number): this {
    this.ensure(4);
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }
  u64(v: bigint): this {
    this.ensure(8);
    this.buf.writeBigUInt64BE(v, this.pos);
    this.pos += 8;
    return this;
  }
  cstr(s: string): this {
    const b = Buffer.from(s, 'utf8');
    this.ensure(b.length + 1);
    b.copy(this.buf, this.pos);
    this.pos += b.length;
    return this.u8(0);
  }
  bytes(b: Buffer): this {
    this.ensure(b.length);
    b.copy(this.buf, this.pos);
    this.pos += b.length;
    return this;
  }
  text(s: string): this {
    const b = Buffer.from(s, 'utf8');
    this.u8(0x74).u32(b.length);
    this.ensure(b.length);
    b.copy(this.buf, this.pos);
    this.pos += b.length;
    return this;
  }
  get length(): number {
    return this.pos;
  }
  take(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos));
  }
}

const TRADE_COLS = [
  ['id', 25],
  ['chain_id', 23],
  ['price', 1700],
  ['quantity', 1700],
  ['timestamp', 23],
  ['transaction_id', 25],
  ['side', 1043],
  ['pool_id', 25],
] as const;
const TRADES_OID = 16400;

/** The whole stream as the socket delivers it: backend CopyData messages back to back. */
function stream(trades: number): Buffer {
  const out = new Writer();
  let lsn = 0x1000000n;
  const frame = (payload: Buffer) => {
    // Backend 'd', Int32 length, then XLogData 'w' dataStart walEnd sendTime payload.
    out.u8(0x64).u32(4 + 25 + payload.length);
    out.u8(0x77).u64(lsn).u64(lsn).u64(0n);
    out.bytes(payload);
    lsn += BigInt(payload.length);
  };
  const rel = new Writer().u8(0x52).u32(TRADES_OID).cstr('public').cstr('order_book_trades');
  rel.u8(0x64).u16(TRADE_COLS.length);
  TRADE_COLS.forEach(([name, oid]) =>
    rel
      .u8(name === 'id' ? 1 : 0)
      .cstr(name)
      .u32(oid)
      .u32(0),
  );
  frame(rel.take());
  let xid = 1000;
  for (let from = 1; from <= trades; from += TX_ROWS) {
    const to = Math.min(trades, from + TX_ROWS - 1);
    frame(
      new Writer()
        .u8(0x42)
        .u64(lsn + 100_000n)
        .u64(7_000_000_000n)
        .u32(xid++)
        .take(),
    );
    for (let g = from; g <= to; g++) {
      const pool = POOLS[g % 5]!;
      const w = new Writer().u8(0x49).u32(TRADES_OID).u8(0x4e).u16(TRADE_COLS.length);
      w.text(`0x${g.toString(16).padStart(64, '0')}-${g % 2}`);
      w.text('31337');
      w.text((BigInt(pool.price!) + BigInt(g % 97) * 10_000_000_000_000_000n).toString());
      w.text((BigInt((g % 50) + 1) * 10_000_000_000_000_000n).toString());
      w.text(String(1_700_000_000 + Math.floor(g / 3)));
      w.text(`0x${g.toString(16).padStart(64, 'a')}`);
      w.text(g % 2 === 0 ? 'buy' : 'sell');
      w.text(pool.order_book!);
      frame(w.take());
    }
    const c = new Writer()
      .u8(0x43)
      .u8(0)
      .u64(lsn)
      .u64(lsn + 40n)
      .u64(7_000_000_000n);
    frame(c.take());
  }
  return out.take();
}

/**
 * The COPY rows of a segment as the build at hand spells them: straight into
 * buffers (CopyRows) or, in builds before it, as strings packed by copyChunks;
 * so one script measures both sides of an A/B.
 */
type Hot = timescaleCopy.HotUpsert;
const loose = { ...copyIn, ...timescaleCopy } as unknown as {
  CopyRows?: new () => { finish(): Buffer[] };
  writeTradeCopyRow?: (u: Hot, rows: unknown) => boolean;
  tradeCopyRow: (u: Hot) => string | null;
  copyChunks: (lines: string[]) => Buffer[];
};
const looseWire = replicationWire as unknown as {
  xlogDataStart?: (chunk: Buffer) => bigint | null;
  XLOG_HEADER?: number;
};
function spellRows(hot: readonly Hot[], count: (n: number) => void): Buffer[] {
  if (loose.CopyRows && loose.writeTradeCopyRow) {
    const copy = new loose.CopyRows();
    for (const u of hot) if (loose.writeTradeCopyRow(u, copy)) count(1);
    return copy.finish();
  }
  const lines: string[] = [];
  for (const u of hot) {
    const line = loose.tradeCopyRow(u);
    if (line !== null) lines.push(line);
  }
  count(lines.length);
  return loose.copyChunks(lines);
}

/** One pass over the stream; returns [ns per trade, GC ms]. */
async function pass(
  wire: Buffer,
  trades: number,
): Promise<{ ns: number; cpuNs: number; gcMs: number }> {
  const log = pino({ level: 'silent' });
  const metrics = createMetrics({ version: 'bench', defaultMetrics: false });
  const queue = new InflightQueue({ batchMaxRows: 5000, maxRows: 10_000, maxBytes: 64 * 2 ** 20 }, [
    'timescale',
  ]);
  const pools = new PoolCache('order_book');
  for (const p of POOLS) pools.set({ id: p.id, orderBook: p.order_book, coin: p.coin });
  const router = new ChangeRouter(
    queue,
    pools,
    { sourceSchema: 'public', applyTruncate: true, idleAckIntervalMs: 1000 },
    log,
  );
  const counter = new DecodeCounter(metrics);
  const decoder = new PgoutputDecoder();
  let rows = 0;
  let bytes = 0;
  const sink = () => {
    for (let b = queue.peek('timescale'); b !== null; b = queue.peek('timescale')) {
      for (const seg of coalesce(b.changes, 1)) {
        // As writeHotTrades spells a segment's rows, and the tombstone read's ids.
        for (const c of spellRows(seg.tradeUpserts, (n) => (rows += n))) bytes += c.length;
        bytes += textArray(seg.tradeUpserts.map((u) => u.trade.tradeId)).length;
      }
      queue.release('timescale', b);
    }
  };
  const onData = (chunk: Buffer) => {
    // As replication.ts frames a message (xlogDataStart where the build has it).
    let offset: number;
    if (looseWire.xlogDataStart) {
      if (looseWire.xlogDataStart(chunk) === null) return;
      offset = looseWire.XLOG_HEADER!;
    } else {
      const frame = replicationWire.parseReplicationFrame(chunk);
      if (frame.tag !== 'xlog') return;
      offset = frame.payloadOffset;
    }
    const msg = decoder.decode(chunk, offset);
    router.onMessage(msg, chunk.length - offset);
    counter.onMessage(msg);
    if (queue.full) sink();
  };
  const parser = new Parser();
  let gcMs = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcMs += e.duration;
  });
  obs.observe({ entryTypes: ['gc'] });
  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  for (let off = 0; off < wire.length; off += READ_BYTES) {
    // A fresh buffer per read, as the socket gives one.
    const read = Buffer.from(wire.subarray(off, Math.min(wire.length, off + READ_BYTES)));
    parser.parse(read, (m) => {
      const chunk = (m as { chunk?: Buffer }).chunk;
      if (chunk) onData(chunk);
    });
  }
  queue.flushAll().catch(() => undefined);
  sink();
  const ns = Number(process.hrtime.bigint() - t0) / trades;
  const cpu = process.cpuUsage(cpu0);
  const cpuNs = ((cpu.user + cpu.system) * 1000) / trades;
  if (rows !== trades || bytes === 0) throw new Error(`sink saw ${rows} of ${trades} trades`);
  // The observer's entries are delivered later, on the event loop.
  await new Promise((res) => setTimeout(res, 100));
  obs.disconnect();
  return { ns, cpuNs, gcMs };
}

interface SamplingNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: SamplingNode[];
}

/** One pass under the sampling heap profiler: bytes allocated per trade, by site (function < caller). */
async function allocations(wire: Buffer): Promise<void> {
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.enable');
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 512,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  await pass(wire, TRADES);
  const { profile } = (await session.post('HeapProfiler.stopSampling')) as {
    profile: { head: SamplingNode };
  };
  session.disconnect();
  const sites = new Map<string, number>();
  let total = 0;
  const name = (n: SamplingNode) =>
    `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`;
  const walk = (n: SamplingNode, caller: string) => {
    const here = name(n);
    if (n.selfSize > 0) {
      const key = `${here} < ${caller}`;
      sites.set(key, (sites.get(key) ?? 0) + n.selfSize);
      total += n.selfSize;
    }
    for (const c of n.children) walk(c, here);
  };
  walk(profile.head, '');
  console.log(`allocated: ${(total / TRADES).toFixed(0)} bytes per trade (sampled)`);
  for (const [site, bytes] of [...sites].sort((a, b) => b[1] - a[1]).slice(0, 25))
    console.log(`${(bytes / TRADES).toFixed(0).padStart(6)} B/trade  ${site}`);
}

async function main(): Promise<void> {
  const wire = stream(TRADES);
  console.log(
    `stream: ${TRADES} trades, ${(wire.length / 2 ** 20).toFixed(1)} MiB of CopyData; ${ROUNDS} rounds`,
  );
  await pass(wire, TRADES); // warm-up
  const results: { ns: number; cpuNs: number; gcMs: number }[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t = await pass(wire, TRADES);
    results.push(t);
    const totalMs = (t.ns * TRADES) / 1e6;
    console.log(
      `round ${r + 1}: ${t.ns.toFixed(0)} ns/trade wall, ${t.cpuNs.toFixed(0)} ns CPU, GC ${t.gcMs.toFixed(0)} ms of ${totalMs.toFixed(0)} ms (${((100 * t.gcMs) / totalMs).toFixed(1)}%)`,
    );
  }
  if (process.argv.includes('--alloc')) await allocations(wire);
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const gcPct = results.map((r) => (100 * r.gcMs * 1e6) / (r.ns * TRADES));
  console.log(
    `median ${median(results.map((r) => r.ns)).toFixed(0)} ns/trade wall, ` +
      `${median(results.map((r) => r.cpuNs)).toFixed(0)} ns CPU, GC ${median(gcPct).toFixed(1)}% of wall`,
  );
}

await main();
