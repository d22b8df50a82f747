import type pg from 'pg';
import { type PgConnection, SubmittedQuery } from '../source/copy-both.js';

/**
 * `COPY … FROM STDIN` in text format, driven through pg's Submittable hook
 * (pg has no copy-in API of its own; see source/copy-both.ts for the copy-out
 * side). The rows are spelled right behind the query, without waiting for
 * the server's CopyInResponse, each chunk written to the socket as soon as it
 * is cut: the server runs the statements ahead of the COPY meanwhile, then
 * inserts one chunk while the next is spelled.
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

/**
 * Rows of COPY text written straight into buffers, cut into CopyData chunks of
 * about CHUNK_BYTES at row ends: no string per row or per batch. A batch's rows
 * as strings were the connector's largest allocation per trade (measured with
 * bench/micro-decode.ts: about 1.3 KB of a trade's 3.3 KB, cons strings and
 * their flattened copy), and they lived long enough to be copied by the GC.
 * A row is begun, given its fields, then ended or dropped.
 *
 * With `emit`, each chunk is handed over as it is cut instead of kept: a view
 * of the reused buffer, valid only during the call (pg's serializer copies it
 * into the CopyData message), so finish() then returns nothing.
 */
export class CopyRows {
  private readonly chunks: Buffer[] = [];
  constructor(private readonly emit: ((chunk: Buffer) => void) | null = null) {}

  private buf = Buffer.allocUnsafe(2 * CHUNK_BYTES);
  private pos = 0;
  private rowStart = 0;
  private fields = 0;

  /** Starts a row. */
  begin(): void {
    this.rowStart = this.pos;
    this.fields = 0;
  }

  /**
   * Appends a field that is known to need no escaping (digits, an ISO time, an
   * LSN) or that `escape` already spelled as COPY text.
   */
  raw(s: string): void {
    this.separate();
    this.put(s);
  }

  /**
   * Appends a text value as copyTextField spells it, unless `spell` refuses it
   * (returns null): then the row must be dropped. `spell` is asked only for a
   * value that is not plain printable ASCII without a backslash, the common case
   * written here byte by byte.
   */
  text(v: string | null, spell: (v: string) => string | null): boolean {
    this.separate();
    if (v === null) {
      this.put('\\N');
      return true;
    }
    const n = v.length;
    this.reserve(n);
    const start = this.pos;
    const buf = this.buf;
    let pos = start;
    for (let i = 0; i < n; i++) {
      const c = v.charCodeAt(i);
      if (c < 0x20 || c === 0x5c || c > 0x7e) {
        const spelled = spell(v);
        if (spelled === null) return false;
        this.pos = start;
        this.put(spelled);
        return true;
      }
      buf[pos++] = c;
    }
    this.pos = pos;
    return true;
  }

  /** Ends the row: a newline, and a new chunk once this one is large enough. */
  end(): void {
    this.reserve(1);
    this.buf[this.pos++] = 0x0a;
    if (this.pos >= CHUNK_BYTES) this.cut();
  }

  /** Forgets the row begun last. */
  drop(): void {
    this.pos = this.rowStart;
  }

  /** The CopyData chunks of the rows ended so far. */
  finish(): Buffer[] {
    if (this.pos > 0) this.cut();
    return this.chunks;
  }

  private separate(): void {
    if (this.fields++ === 0) return;
    this.reserve(1);
    this.buf[this.pos++] = 0x09;
  }

  /** Writes `s` as UTF-8: ASCII byte by byte (cheaper than a call into Buffer#write per field). */
  private put(s: string): void {
    const n = s.length;
    this.reserve(n);
    const buf = this.buf;
    const start = this.pos;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) {
        // UTF-8 needs at most 3 bytes per UTF-16 code unit.
        this.reserve(3 * n);
        this.pos = start + this.buf.write(s, start, 'utf8');
        return;
      }
      buf[start + i] = c;
    }
    this.pos = start + n;
  }

  /** Room for `n` more bytes; the row begun is moved along, so a chunk never splits a row. */
  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const row = this.buf.subarray(this.rowStart, this.pos);
    if (this.rowStart > 0) this.out(this.buf.subarray(0, this.rowStart));
    const next = Buffer.allocUnsafe(Math.max(2 * CHUNK_BYTES, 2 * (row.length + n)));
    row.copy(next, 0);
    this.buf = next;
    this.pos = row.length;
    this.rowStart = 0;
  }

  /** Hands the ended rows over as a chunk and reuses the buffer. */
  private cut(): void {
    this.out(this.buf.subarray(0, this.pos));
    this.pos = 0;
    this.rowStart = 0;
  }

  /** A chunk to `emit`, or kept as an exactly sized copy. */
  private out(view: Buffer): void {
    if (this.emit) this.emit(view);
    else this.chunks.push(Buffer.from(view));
  }
}

/** What a CopyInQuery's message did. */
export interface CopyInResult {
  /** Rows copied. */
  copied: number;
  /** Whether the COPY completed: a later failure was a later statement's. */
  copyComplete: boolean;
  /** The rows the statements after the COPY returned. */
  rows: (string | null)[][];
  /** The rows of each statement before the COPY that completed, in order, one entry per statement. */
  before: (string | null)[][][];
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
export class CopyInQuery extends SubmittedQuery<CopyInResult> {
  private readonly result: CopyInResult = { copied: 0, copyComplete: false, rows: [], before: [] };
  private statementRows: (string | null)[][] = [];
  /** What the input threw: the reason of the COPY's failure. */
  private inputFailure: Error | null = null;
  private copyStarted = false;

  constructor(
    text: string,
    private readonly input: CopyInput,
  ) {
    super(text);
  }

  protected outcome(): CopyInResult {
    return this.result;
  }

  /** What the message did so far: after a failure, the statements before it that completed. */
  get soFar(): Readonly<CopyInResult> {
    return this.result;
  }

  /**
   * The input follows the query at once, without waiting for the server's
   * CopyInResponse: the server reads it when it reaches the COPY (meanwhile
   * running the statements before it), and drops it if the message failed
   * before (the protocol drops CopyData, CopyDone and CopyFail outside a COPY).
   */
  override submit(connection: unknown): void {
    super.submit(connection);
    this.send(connection as PgConnection);
  }

  private send(c: PgConnection): void {
    // After an error the server ignores the CopyData and CopyDone still in flight.
    try {
      this.input((chunk) => c.sendCopyFromChunk(chunk));
    } catch (err) {
      // The server ends the COPY with an error, reported as this one (handleError).
      this.inputFailure = err as Error;
      c.sendCopyFail(`slotline: ${(err as Error).message}`);
      return;
    }
    c.endCopyFrom();
  }

  override handleCopyInResponse(): void {
    this.copyStarted = true;
  }

  /** The server's error, or the input's where the COPY it ended was reached. */
  override handleError(err: Error): void {
    super.handleError(this.copyStarted && this.inputFailure !== null ? this.inputFailure : err);
  }

  override handleCommandComplete(msg: { text?: string }): void {
    const n = /^COPY (\d+)/.exec(msg.text ?? '');
    if (n) {
      this.result.copied = Number(n[1]);
      this.result.copyComplete = true;
    } else if (!this.result.copyComplete) {
      this.result.before.push(this.statementRows);
      this.statementRows = [];
    }
  }

  override handleDataRow(msg: { fields: (string | null)[] }): void {
    (this.result.copyComplete ? this.result.rows : this.statementRows).push(msg.fields);
  }
}

/**
 * A COPY's input: a function that spells its chunks and sends each with `send`
 * (called as the query is sent; what it throws fails the COPY).
 */
export type CopyInput = (send: (chunk: Buffer) => void) => void;

/** Runs the message `text` (one COPY … FROM STDIN of `input` among its statements) on `client`. */
export function copyIn(client: pg.ClientBase, text: string, input: CopyInput) {
  const q = new CopyInQuery(text, input);
  client.query(q);
  return q.done;
}
