import type http from 'node:http';

/** An answer other than 200, with a message for the caller. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface Probe {
  ok: boolean;
  reason: string;
}

/**
 * Where a call that only the leader can carry out goes: served here, forwarded
 * to the leader's address, or nowhere now (why, for a 503).
 */
export type LeaderRoute =
  { at: 'here' } | { at: 'leader'; url: string } | { at: 'none'; reason: string };

/** What the running connector offers the HTTP surface. */
export interface AdminControl {
  /** This replica's address as the others reach it (SLOTLINE_ADVERTISE_URL); null without one. */
  readonly self: string | null;
  liveness(): Probe;
  readiness(): Probe;
  /** Where calls marked `leader` go now. */
  leader(): Promise<LeaderRoute>;
  /** `authorized`: the caller sent the admin token, and sees error details. */
  status(authorized: boolean): Promise<unknown>;
  syncHealth(): Promise<unknown>;
  syncStats(authorized: boolean): Promise<unknown>;
  pause(): Promise<unknown>;
  resume(): Promise<unknown>;
  resetLsn(lsn: string, force: boolean): Promise<unknown>;
  startBackfill(body: Record<string, unknown>): Promise<unknown>;
  cancelBackfill(): Promise<unknown>;
  /** POST /api/sync/run: a verify-and-repair pass. */
  syncRun(body: Record<string, unknown>): Promise<unknown>;
  deadLetters: {
    list(query: Record<string, string>): Promise<unknown>;
    show(id: number): Promise<unknown>;
    retry(body: Record<string, unknown>): Promise<unknown>;
    discard(body: Record<string, unknown>): Promise<unknown>;
    purge(body: Record<string, unknown>): Promise<unknown>;
  };
}

export type Handler = (
  req: http.IncomingMessage,
  body: Record<string, unknown>,
  url: URL,
  params: string[],
  /** The caller sent the admin token (always true on admin routes). */
  authorized: boolean,
) => Promise<[number, unknown] | string>;
export interface Route {
  method: string;
  /** A path, or a pattern whose groups become `params`. */
  path: string | RegExp;
  /** Needs the admin token; served on the admin listener. */
  admin: boolean;
  /**
   * Means the deployment, not this process: a standby forwards it to the
   * leader. Without a leader an admin call answers 503, an open one is
   * answered here.
   */
  leader?: boolean;
  handler: Handler;
}
