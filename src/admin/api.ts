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

/** What the running connector offers the HTTP surface. */
export interface AdminControl {
  liveness(): Probe;
  readiness(): Probe;
  status(): Promise<unknown>;
  syncHealth(): Promise<unknown>;
  syncStats(): Promise<unknown>;
  pause(): unknown;
  resume(): unknown;
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
) => Promise<[number, unknown] | string>;
export interface Route {
  method: string;
  /** A path, or a pattern whose groups become `params`. */
  path: string | RegExp;
  admin: boolean;
  handler: Handler;
}
