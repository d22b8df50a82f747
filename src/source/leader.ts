import pg from 'pg';
import { classifyError, LeadershipLostError, type SlotlineError } from '../errors.js';
import type { Logger } from '../log.js';
import { sleep } from '../retry.js';

/** How long a leader whose lock connection failed tries to take the lock again. */
const RETAKE_MS = 60_000;

export interface LeaderLockOptions {
  url: string;
  slot: string;
  /** How often a standby tries to take the lock (SLOTLINE_STANDBY_POLL_MS, default 1 s). */
  pollMs: number;
  log: Logger;
}

/**
 * Hot standby: replicas compete for a session advisory lock on the source,
 * keyed by the slot name. The holder streams; the others wait, ready. The lock
 * lives as long as the holder's connection, so when the leader dies (even by
 * SIGKILL) the server releases it and a standby takes over within one poll.
 * The slot itself is the second guard: PostgreSQL lets one process stream from
 * it at a time, so two leaders can never both consume.
 */
export class LeaderLock {
  private client: pg.Client | null = null;
  private lostWith: ((err: SlotlineError) => void) | null = null;
  private released = false;
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
        const { rows } = await client.query<{ ok: boolean }>(
          `SELECT pg_try_advisory_lock(hashtext('slotline'), hashtext($1)) AS ok`,
          [this.opts.slot],
        );
        if (rows[0]?.ok) {
          this.hold(client);
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
        await this.release();
      }
      await sleep(this.opts.pollMs, signal);
    }
    return false;
  }

  async release(): Promise<void> {
    this.released = true;
    const c = this.client;
    this.client = null;
    this.lostWith = null;
    // Closing the session releases the lock.
    await c?.end().catch(() => undefined);
  }

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client({
      connectionString: this.opts.url,
      application_name: 'slotline-leader',
    });
    client.on('error', () => undefined);
    await client.connect();
    this.client = client;
    return client;
  }

  private hold(client: pg.Client): void {
    client.on('error', (err) => this.fail(err));
    client.on('end', () => this.fail(new Error('leader lock connection closed')));
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
    const drop = async () => {
      const c = this.client;
      this.client = null;
      await c?.end().catch(() => undefined);
    };
    await drop();
    this.opts.log.warn(
      { code: classifyError(err, 'source').code },
      `leader lock connection lost (${err.message}); taking the lock again`,
    );
    const deadline = Date.now() + RETAKE_MS;
    while (!this.released && Date.now() < deadline) {
      try {
        const client = await this.connect();
        const { rows } = await client.query<{ ok: boolean }>(
          `SELECT pg_try_advisory_lock(hashtext('slotline'), hashtext($1)) AS ok`,
          [this.opts.slot],
        );
        if (!rows[0]?.ok || this.released) {
          await drop();
          return false;
        }
        this.hold(client);
        this.opts.log.info({ slot: this.opts.slot }, 'leader: lock taken again');
        return true;
      } catch {
        await drop(); // connect() may have set it before the query failed
        await sleep(Math.min(this.opts.pollMs, 1000));
      }
    }
    return false;
  }
}
