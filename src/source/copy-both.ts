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
  sendCopyFail(message: string): void;
  query(text: string): void;
  once(event: 'replicationStart', listener: () => void): void;
  removeListener(event: string, listener: (...args: unknown[]) => void): void;
}

export function connectionOf(client: pg.Client): PgConnection {
  return (client as unknown as { connection: PgConnection }).connection;
}

/**
 * A simple-protocol query message we drive ourselves through pg's Submittable
 * hook. `done` settles when the server is ready for the next query: with
 * `outcome()`, or rejected with the first error (a server error, which
 * ReadyForQuery follows, or a lost connection, which nothing follows; pg holds
 * the next query back either way). The handlers a subclass does not need do
 * nothing.
 */
export abstract class SubmittedQuery<T> implements pg.Submittable {
  readonly done: Promise<T>;
  private resolve!: (r: T) => void;
  private rejectDone!: (err: Error) => void;
  protected failed: Error | null = null;

  constructor(private readonly text: string) {
    this.done = new Promise((res, rej) => {
      this.resolve = res;
      this.rejectDone = rej;
    });
    // The owner may attach late; an early failure must not be an unhandled rejection.
    this.done.catch(() => undefined);
  }

  /** What `done` resolves to once the server is ready again. */
  protected abstract outcome(): T;

  /** Fails `done` now (the first failure is the one reported). */
  protected fail(err: Error): void {
    this.failed ??= err;
    this.rejectDone(err);
  }

  submit(connection: unknown): void {
    (connection as PgConnection).query(this.text);
  }

  handleError(err: Error): void {
    this.fail(err);
  }

  handleReadyForQuery(): void {
    if (this.failed) this.rejectDone(this.failed);
    else this.resolve(this.outcome());
  }

  handleCommandComplete(_msg: { text?: string }): void {}
  handleRowDescription(): void {}
  handleDataRow(_msg: { fields: (string | null)[] }): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(_connection: unknown): void {}
  handleCopyData(_msg: { chunk: Buffer }): void {}
}

/**
 * A query whose result is a stream of CopyData messages (START_REPLICATION or
 * COPY … TO STDOUT), submitted through pg's Submittable hook. `done` settles
 * when the server ends the query (ReadyForQuery) or it fails.
 */
export class CopyOutQuery extends SubmittedQuery<void> {
  constructor(
    text: string,
    private readonly onData: (chunk: Buffer) => void,
  ) {
    super(text);
  }

  protected outcome(): void {}

  override handleCopyData(msg: { chunk: Buffer }): void {
    if (this.failed) return;
    try {
      this.onData(msg.chunk);
    } catch (err) {
      // Stop consuming; the owner tears the connection down.
      this.fail(err as Error);
    }
  }
}
