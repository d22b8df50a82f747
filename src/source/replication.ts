import pg from 'pg';
import { type Lsn, formatLsn, maxLsn } from '../checkpoint/lsn.js';
import { classifyError, ConnectionError } from '../errors.js';
import type { Logger } from '../log.js';
import { deadPeerSettings } from '../sql.js';
import { connectionOf, CopyOutQuery, type PgConnection } from './copy-both.js';
import {
  buildStandbyStatusUpdate,
  parseReplicationFrame,
  unixMsToPgMicros,
  XLOG_HEADER,
  xlogDataStart,
} from './wire.js';

/** Messages decoded between two yields of the event loop (see yieldLoop). */
const YIELD_EVERY = 500;

export interface ReplicationOptions {
  url: string;
  slot: string;
  publication: string;
  /** Where to start; the server starts at the slot's confirmed flush if that is later. */
  startLsn: Lsn;
  /** Standby status update interval (SLOTLINE_STATUS_INTERVAL_MS, default 10 s). */
  statusIntervalMs: number;
  /**
   * SLOTLINE_DEAD_PEER_TIMEOUT_MS (default 10 s): the server's wal_sender_timeout
   * for this connection; this side waits twice that to hear from the server.
   */
  deadPeerTimeoutMs: number;
  /** One pgoutput message: `chunk[offset..]`, valid only during the call. */
  onMessage(dataStart: Lsn, chunk: Buffer, offset: number): void;
  /** Keepalive from the server: all WAL up to `walEnd` has been sent. */
  onKeepalive(walEnd: Lsn): void;
  /** The durable LSN to report as flushed (the acker's). */
  flushLsn(): Lsn;
  log: Logger;
}

/**
 * The copy-both loop of one replication connection. It never acknowledges
 * on receipt: the flush LSN in every status update comes from `flushLsn()`.
 * `pause()` stops reading the socket (TCP backpressure) while status updates
 * keep going out on their timer, so the server does not time us out.
 *
 * Both ends give up on a silent peer: the server after the dead-peer timeout
 * (wal_sender_timeout, TCP keepalives), so that a leader cut off by a partition
 * frees the slot for the next one in seconds, and this side after twice that
 * (no message while reading), so that such a leader stops saying it streams.
 */
export class ReplicationStream {
  private client: pg.Client | null = null;
  private conn: PgConnection | null = null;
  private query: CopyOutQuery | null = null;
  private timer: NodeJS.Timeout | null = null;
  private received: Lsn = 0n;
  private paused = false;
  private sinceYield = 0;
  private stopping = false;
  private endedWith: ((err: Error | null) => void) | null = null;
  /** unix ms since which the socket has been read (a pause hides what the server sent). */
  private readingSince = 0;
  /** Settles when the stream ends: resolves on stop(), rejects on any failure. */
  readonly ended: Promise<void>;
  lastStatusAt = 0;
  lastMessageAt = 0;

  constructor(private readonly opts: ReplicationOptions) {
    this.ended = new Promise((resolve, reject) => {
      this.endedWith = (err) => (err ? reject(err) : resolve());
    });
    this.ended.catch(() => undefined);
    this.received = opts.startLsn;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /**
   * Status updates go out at least three times per wal_sender_timeout, so that
   * the server never ends a live connection, paused or not.
   */
  private get statusEveryMs(): number {
    return Math.max(100, Math.min(this.opts.statusIntervalMs, this.opts.deadPeerTimeoutMs / 3));
  }

  /** Connects and issues START_REPLICATION; resolves once the server streams. */
  async start(): Promise<void> {
    const o = this.opts;
    const client = new pg.Client({
      connectionString: o.url,
      replication: 'database',
      application_name: 'slotline',
      connectionTimeoutMillis: o.deadPeerTimeoutMs,
    } as pg.ClientConfig);
    this.client = client;
    client.on('error', (err) => this.fail(err));
    client.on('end', () =>
      this.fail(new ConnectionError('source: replication connection closed by the server')),
    );
    await client.connect();
    this.conn = connectionOf(client);
    // SQL is accepted on a logical replication connection; wal_sender_timeout is
    // user-settable since PostgreSQL 12.
    for (const set of [
      ...deadPeerSettings(o.deadPeerTimeoutMs),
      `SET wal_sender_timeout = ${Math.floor(o.deadPeerTimeoutMs)}`,
    ])
      await client.query(set);

    // Identifiers were validated by the config schema; double quotes keep case.
    const sql =
      `START_REPLICATION SLOT "${o.slot}" LOGICAL ${formatLsn(o.startLsn)} ` +
      `("proto_version" '1', "publication_names" '"${o.publication}"', "messages" 'true')`;
    const query = new CopyOutQuery(sql, (chunk) => this.onCopyData(chunk));
    this.query = query;
    const started = new Promise<void>((resolve) => this.conn?.once('replicationStart', resolve));
    client.query(query);
    query.done.then(
      () =>
        this.fail(
          this.stopping ? null : new ConnectionError('source: replication ended by the server'),
        ),
      (err: unknown) => this.fail(err as Error),
    );
    await Promise.race([started, this.ended]);
    this.readingSince = Date.now();
    this.timer = setInterval(() => this.onTimer(), this.statusEveryMs);
    this.timer.unref();
    o.log.info({ slot: o.slot, startLsn: formatLsn(o.startLsn) }, 'replication started');
  }

  /**
   * A quiet server sends nothing while our updates keep its timeout away: ask
   * for a reply then, so that hearing from it proves the connection alive; and
   * a server not heard for twice the dead-peer timeout while we read is gone.
   * Twice: a walsender busy decoding a large transaction that sends nothing
   * reads our updates, and so answers a request for a reply, only about every
   * half wal_sender_timeout; ending a live connection there would start that
   * decoding over, again and again.
   */
  private onTimer(): void {
    const heard = Math.max(this.lastMessageAt, this.readingSince);
    const silentMs = Date.now() - heard;
    if (!this.paused && silentMs >= 2 * this.opts.deadPeerTimeoutMs) {
      this.fail(
        new ConnectionError(
          `source: no message from the server for ${Math.round(silentMs / 1000)} s (connection lost or cut off)`,
        ),
      );
      return;
    }
    this.sendStatus(silentMs >= this.statusEveryMs);
  }

  private onCopyData(chunk: Buffer): void {
    // After stop() we only wait for the server's goodbye: what still arrives
    // was not acknowledged and is streamed again on the next start.
    if (this.stopping) return;
    this.lastMessageAt = Date.now();
    const dataStart = xlogDataStart(chunk);
    if (dataStart !== null) {
      this.received = maxLsn(this.received, dataStart);
      this.opts.onMessage(dataStart, chunk, XLOG_HEADER);
      if (++this.sinceYield >= YIELD_EVERY) this.yieldLoop();
      return;
    }
    // Not XLogData: a keepalive, or a malformed message that throws here.
    const frame = parseReplicationFrame(chunk);
    if (frame.tag !== 'keepalive') return;
    this.received = maxLsn(this.received, frame.walEnd);
    this.opts.onKeepalive(frame.walEnd);
    if (frame.replyRequested) this.sendStatus(false);
  }

  /**
   * During a backlog the socket always has data, and decoding it would hold the
   * event loop for long stretches, delaying the sink's replies (measured: event
   * loop p99 41 ms, a BEGIN round trip 14 ms). Stop reading for one turn of the
   * loop every YIELD_EVERY messages so the sinks' I/O gets in between.
   */
  private yieldLoop(): void {
    this.sinceYield = 0;
    const conn = this.conn;
    if (!conn || this.paused) return;
    conn.stream.pause();
    setImmediate(() => {
      if (!this.paused && !this.stopping) conn.stream.resume();
    });
  }

  /** Stops reading the socket: the server blocks once the TCP window fills. */
  pause(): void {
    if (this.paused || !this.conn) return;
    this.paused = true;
    this.conn.stream.pause();
  }

  resume(): void {
    if (!this.paused || !this.conn) return;
    this.paused = false;
    this.readingSince = Date.now();
    this.conn.stream.resume();
  }

  /** Sends a standby status update: written = received, flushed = applied = durable. */
  sendStatus(replyRequested: boolean): void {
    const conn = this.conn;
    if (!conn || conn.stream.destroyed) return;
    const flush = this.opts.flushLsn();
    const write = maxLsn(this.received, flush);
    try {
      conn.sendCopyFromChunk(
        buildStandbyStatusUpdate(write, flush, flush, unixMsToPgMicros(Date.now()), replyRequested),
      );
      this.lastStatusAt = Date.now();
    } catch (err) {
      this.fail(err as Error);
    }
  }

  /**
   * Ends streaming: a last status update with the durable LSN, CopyDone, and
   * the connection closed. Waits at most `timeoutMs` for the server's answer.
   */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    const client = this.client;
    const conn = this.conn;
    if (!client || !conn) return this.fail(null);
    try {
      this.sendStatus(false);
      conn.endCopyFrom();
      conn.stream.resume();
      await Promise.race([this.query?.done, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
    } catch {
      // the connection may already be gone; closing below is all that is left
    }
    await client.end().catch(() => undefined);
    this.fail(null);
  }

  /** Tears the connection down without a goodbye (after a failure). */
  destroy(): void {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    const s = this.conn?.stream as unknown as { destroy?: () => void } | undefined;
    s?.destroy?.();
    this.client?.end().catch(() => undefined);
    this.fail(null);
  }

  private fail(err: Error | null): void {
    const done = this.endedWith;
    if (!done) return;
    this.endedWith = null;
    if (this.timer) clearInterval(this.timer);
    done(err === null ? null : classifyError(err, 'source'));
  }
}
