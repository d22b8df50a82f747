import type pg from 'pg';
import type { PgConnection } from '../source/copy-both.js';

/**
 * `COPY … FROM STDIN` in text format, driven through pg's Submittable hook
 * (pg has no copy-in API of its own; see source/copy-both.ts for the copy-out
 * side). The rows are encoded before the query is submitted, so the whole
 * input is sent at once when the server answers CopyInResponse: its size is
 * bounded by the batch that holds the rows.
 */

/** How large each CopyData message is (the server reads it in one piece). */
const CHUNK_BYTES = 64 * 1024;

const SPECIAL = /[\\\t\n\r]/;

/**
 * One field in COPY's text format (PostgreSQL docs, COPY, "Text Format"):
 * null is `\N`; backslash, tab, newline and carriage return are escaped, so a
 * field can never end a row, split one, or read as `\N` or the `\.` marker.
 * Every other character stands for itself (the connection is UTF-8).
 */
export function copyTextField(v: string | null): string {
  if (v === null) return '\\N';
  if (!SPECIAL.test(v)) return v;
  let out = '';
  for (const ch of v) {
    switch (ch) {
      case '\\':
        out += '\\\\';
        break;
      case '\t':
        out += '\\t';
        break;
      case '\n':
        out += '\\n';
        break;
      case '\r':
        out += '\\r';
        break;
      default:
        out += ch;
    }
  }
  return out;
}

/** One row: its fields escaped, tab-separated, newline-terminated. */
export function copyTextRow(fields: readonly (string | null)[]): string {
  let line = '';
  for (let i = 0; i < fields.length; i++) {
    if (i > 0) line += '\t';
    line += copyTextField(fields[i]!);
  }
  return line + '\n';
}

/** Rows (as copyTextRow made them) packed into CopyData chunks of about CHUNK_BYTES. */
export function copyChunks(lines: readonly string[]): Buffer[] {
  const chunks: Buffer[] = [];
  let part = '';
  for (const line of lines) {
    part += line;
    if (part.length >= CHUNK_BYTES) {
      chunks.push(Buffer.from(part, 'utf8'));
      part = '';
    }
  }
  if (part.length > 0) chunks.push(Buffer.from(part, 'utf8'));
  return chunks;
}

/** What a CopyInQuery's message did: rows copied, and the rows any statement after it returned. */
export interface CopyInResult {
  copied: number;
  rows: (string | null)[][];
}

/**
 * A simple-protocol query message holding one `COPY … FROM STDIN` and its
 * input; other statements may come before and after it in the same message
 * (one round trip for all), and the rows they return are collected. Submit it
 * with `client.query(copy)`, then await `done`, which resolves once the server
 * is ready for the next query, or rejects with the server's first error (the
 * client stays usable: the transaction, if any, is aborted as after any failed
 * statement, and the message's later statements did not run).
 */
export class CopyInQuery implements pg.Submittable {
  readonly done: Promise<CopyInResult>;
  private resolve!: (r: CopyInResult) => void;
  private reject!: (err: Error) => void;
  private failed: Error | null = null;
  private readonly result: CopyInResult = { copied: 0, rows: [] };

  constructor(
    private readonly text: string,
    private readonly chunks: readonly Buffer[],
  ) {
    this.done = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    this.done.catch(() => undefined);
  }

  submit(connection: unknown): void {
    (connection as PgConnection).query(this.text);
  }

  handleCopyInResponse(connection: unknown): void {
    const c = connection as PgConnection;
    // After an error the server ignores the CopyData and CopyDone still in flight.
    for (const chunk of this.chunks) c.sendCopyFromChunk(chunk);
    c.endCopyFrom();
  }

  handleCommandComplete(msg: { text?: string }): void {
    const n = /^COPY (\d+)/.exec(msg.text ?? '');
    if (n) this.result.copied = Number(n[1]);
  }

  /**
   * A server error (ReadyForQuery follows) or a lost connection (nothing
   * follows): either way the copy failed; pg holds the next query back until
   * the server is ready for it.
   */
  handleError(err: Error): void {
    this.failed ??= err;
    this.reject(err);
  }

  handleReadyForQuery(): void {
    if (this.failed) this.reject(this.failed);
    else this.resolve(this.result);
  }

  handleDataRow(msg: { fields: (string | null)[] }): void {
    this.result.rows.push(msg.fields);
  }

  handleCopyData(): void {}
  handleRowDescription(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
}

/** Runs the message `text` (one COPY … FROM STDIN of `lines` among its statements) on `client`. */
export function copyIn(client: pg.ClientBase, text: string, lines: readonly string[]) {
  const q = new CopyInQuery(text, copyChunks(lines));
  client.query(q);
  return q.done;
}
