import pg from 'pg';
import {
  classifyError,
  ConnectionError,
  LeadershipLostError,
  type SlotlineError,
} from '../errors.js';
import type { Logger } from '../log.js';
import { sleep } from '../retry.js';
import { deadPeerSettings } from '../sql.js';
import { connectionOf } from './copy-both.js';

/** How long a leader whose lock connection failed tries to take the lock again. */
const RETAKE_MS = 60_000;
/** How long a polite goodbye to the server may take before the socket is simply closed. */
const CLOSE_MS = 1000;
const TRY_LOCK = `SELECT pg_try_advisory_lock(hashtext('slotline'), hashtext($1)) AS ok`;

export interface LeaderLockOptions {
  url: string;
  slot: string;
  /** How often a standby tries to take the lock (SLOTLINE_STANDBY_POLL_MS, default 1 s). */
  pollMs: number;
  /**
   * The lease of the holder's session (SLOTLINE_DEAD_PEER_TIMEOUT_MS, default
   * 10 s): the server ends the session when it hears nothing from the holder
   * this long, and the holder gives the lock up when the server does not answer
   * it this long.
   */
  leaseMs: number;
  log: Logger;
}

/**
 * Hot standby: replicas compete for a session advisory lock on the source,
 * keyed by the slot name. The holder streams; the others wait, ready. The lock
 * lives as long as the holder's session. When the holder's process dies its
 * kernel closes the socket and the server releases the lock at once; but a
 * holder cut off by a partition, or lost with its node, closes nothing, and the
 * server would keep the session (and the lock) for the hours of the kernel's
 * TCP timeouts. So the holder's session is a lease: it sets
 * idle_session_timeout and renews it with a query every quarter of it, and the
 * server ends the session when the renewals stop (plus TCP keepalives and
 * tcp_user_timeout, for a peer that is gone mid-query). The slot itself is the
 * second guard: PostgreSQL lets one process stream from it at a time, so two
 * leaders can never both consume; the leader epoch in the sink is the third.
 */
export class LeaderLock {
  private client: pg.Client | null = null;
  private lostWith: ((err: SlotlineError) => void) | null = null;
  private released = false;
  private renewal: NodeJS.Timeout | null = null;
  private leaseWarned = false;
  /** Rejects if leadership is lost (the lock's connection failed). */
  readonly lost: Promise<never>;

  constructor(private readonly opts: LeaderLockOptions) {
    this.lost = new Promise<never>((_, reject) => {
      this.lostWith = reject;
    });
    this.lost.catch(() => undefined);
  }

  /** Waits until this process holds the lock; false if the signal aborted first. */
  async acquire(
    signal: AbortSignal,
    onWaiting: (err: SlotlineError | null) => void,
  ): Promise<boolean> {
    let announced = false;
    while (!signal.aborted) {
      try {
        const client = this.client ?? (await this.connect());
        const { rows } = await client.query<{ ok: boolean }>(TRY_LOCK, [this.opts.slot]);
        if (rows[0]?.ok) {
          await this.hold(client);
          this.opts.log.info({ slot: this.opts.slot }, 'leader: this replica holds the slot');
          return true;
        }
        if (!announced) {
          announced = true;
          this.opts.log.info(
            { slot: this.opts.slot },
            'standby: another replica leads; waiting to take over',
          );
        }
        onWaiting(null);
      } catch (err) {
        const e = classifyError(err, 'source');
        if (!e.retriable) throw e;
        onWaiting(e);
        await this.drop();
      }
      await sleep(this.opts.pollMs, signal);
    }
    return false;
  }

  async release(): Promise<void> {
    this.released = true;
    this.lostWith = null;
    // Closing the session releases the lock.
    await this.drop();
  }

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client({
      connectionString: this.opts.url,
      application_name: 'slotline-leader',
      // A source that accepts the connection and then says nothing (a partition)
      // must not hold the standby's loop or the retake for ever.
      connectionTimeoutMillis: this.opts.leaseMs,
    });
    client.on('error', () => undefined);
    this.client = client;
    await client.connect();
    await client.query(deadPeerSettings(this.opts.leaseMs).join('; '));
    return client;
  }

  /** This process holds the lock on `client`: watch it, and keep its lease. */
  private async hold(client: pg.Client): Promise<void> {
    client.on('error', (err) => this.fail(err));
    client.on('end', () => this.fail(new Error('leader lock connection closed')));
    try {
      await client.query(`SET idle_session_timeout = ${Math.floor(this.opts.leaseMs)}`);
    } catch (err) {
      // PostgreSQL before 14 has no idle_session_timeout: the keepalives remain.
      if (!this.leaseWarned)
        this.opts.log.warn(
          { code: classifyError(err, 'source').code },
          'the source cannot end a silent lock session by itself (idle_session_timeout needs PostgreSQL 14); a partitioned leader is replaced only once TCP keepalives give up',
        );
      this.leaseWarned = true;
    }
    this.renew(client);
  }

  /**
   * Renews the lease every quarter of it. A renewal the server has not answered
   * within the lease means this process is cut off: the server has ended (or is
   * about to end) the session, so the lock is as good as gone.
   */
  private renew(client: pg.Client): void {
    let since: number | null = null;
    const leaseMs = this.opts.leaseMs;
    this.renewal = setInterval(
      () => {
        if (since === null) {
          since = Date.now();
          client.query('SELECT 1').then(
            () => (since = null),
            () => undefined, // the client's 'error' or 'end' reports it
          );
        } else if (Date.now() - since >= leaseMs) {
          this.stopRenewal();
          this.fail(
            new ConnectionError(
              `source: the lock session did not answer for ${Math.round(leaseMs / 1000)} s (cut off from the source)`,
            ),
          );
        }
      },
      Math.max(50, Math.floor(leaseMs / 4)),
    );
    this.renewal.unref();
  }

  private stopRenewal(): void {
    if (this.renewal) clearInterval(this.renewal);
    this.renewal = null;
  }

  /** Ends the session: politely when the server answers, at once when it does not. */
  private async drop(): Promise<void> {
    this.stopRenewal();
    const c = this.client;
    this.client = null;
    if (!c) return;
    const timer = setTimeout(() => {
      const stream = connectionOf(c).stream as unknown as { destroy?: () => void };
      stream.destroy?.();
    }, CLOSE_MS);
    await c.end().catch(() => undefined);
    clearTimeout(timer);
  }

  private fail(err: Error): void {
    const lost = this.lostWith;
    if (!lost) return;
    this.lostWith = null;
    void this.retake(err).then((ok) => {
      if (this.released) return; // stopping anyway
      if (ok) {
        this.lostWith = lost;
        return;
      }
      lost(
        new LeadershipLostError(
          `lost the leader lock: ${err.message}; exiting so that a standby leads`,
          err,
        ),
      );
    });
  }

  /**
   * The lock's connection failed. Most often the whole source restarted, and
   * every replica lost its connections with it: take the lock again unless
   * another replica has it by now. Only then, or when the source stays
   * unreachable for RETAKE_MS, is leadership lost. (Found by the source
   * restart fault test: the connector used to exit on every source restart.)
   */
  private async retake(err: Error): Promise<boolean> {
    await this.drop();
    this.opts.log.warn(
      { code: classifyError(err, 'source').code },
      `leader lock connection lost (${err.message}); taking the lock again`,
    );
    const deadline = Date.now() + RETAKE_MS;
    while (!this.released && Date.now() < deadline) {
      try {
        const client = await this.connect();
        const { rows } = await client.query<{ ok: boolean }>(TRY_LOCK, [this.opts.slot]);
        if (!rows[0]?.ok || this.released) {
          await this.drop();
          return false;
        }
        await this.hold(client);
        this.opts.log.info({ slot: this.opts.slot }, 'leader: lock taken again');
        return true;
      } catch {
        await this.drop(); // connect() may have set it before the query failed
        await sleep(Math.min(this.opts.pollMs, 1000));
      }
    }
    return false;
  }
}
