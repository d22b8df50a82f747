import type pg from 'pg';

/**
 * The parts of `pg`'s connection we drive ourselves. pg routes CopyData of the
 * active query to `handleCopyData`; CopyBothResponse is emitted on the
 * connection as 'replicationStart'. Its parser reuses its buffer, so a chunk
 * must be consumed (or copied) before the handler returns.
 */
export interface PgConnection {
  stream: NodeJS.ReadableStream & { pause(): void; resume(): void; destroyed?: boolean };
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  query(text: string): void;
  once(event: 'replicationStart', listener: () => void): void;
  removeListener(event: string, listener: (...args: unknown[]) => void): void;
}

export function connectionOf(client: pg.Client): PgConnection {
  return (client as unknown as { connection: PgConnection }).connection;
}

/**
 * A query whose result is a stream of CopyData messages (START_REPLICATION or
 * COPY … TO STDOUT), submitted through pg's Submittable hook. `done` settles
 * when the server ends the query (ReadyForQuery) or it fails.
 */
export class CopyOutQuery implements pg.Submittable {
  readonly done: Promise<void>;
  private resolve!: () => void;
  private reject!: (err: Error) => void;
  private failed: Error | null = null;

  constructor(
    private readonly text: string,
    private readonly onData: (chunk: Buffer) => void,
  ) {
    this.done = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    // The owner may attach late; an early failure must not be an unhandled rejection.
    this.done.catch(() => undefined);
  }

  submit(connection: unknown): void {
    (connection as PgConnection).query(this.text);
  }

  handleCopyData(msg: { chunk: Buffer }): void {
    if (this.failed) return;
    try {
      this.onData(msg.chunk);
    } catch (err) {
      // Stop consuming; the owner tears the connection down.
      this.failed = err as Error;
      this.reject(this.failed);
    }
  }

  handleError(err: Error): void {
    this.failed ??= err;
    this.reject(err);
  }

  handleReadyForQuery(): void {
    if (this.failed) this.reject(this.failed);
    else this.resolve();
  }

  handleCommandComplete(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}
}
