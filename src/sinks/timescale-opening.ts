import type pg from 'pg';
import {
  type CheckpointState,
  checkEpoch,
  expectEpochText,
  type LockedEpoch,
  lockEpochText,
} from '../checkpoint/store.js';
import { ProtocolError } from '../errors.js';

/**
 * Every sink transaction starts so. A change that reaches compressed chunks
 * makes TimescaleDB decompress the batches it touches into the chunk, and it
 * refuses a statement that decompresses more than this setting (100,000 rows
 * by default): a backfill chunk of 5,000 old trades can touch 5,000 batches of
 * up to 1,000 rows. Refused, the write would fail the same way on every retry
 * and pin the slot. Unlimited is safe here: the statements name their rows by
 * constants, so only batches that hold a changed row are decompressed; they
 * are decompressed one batch at a time (memory stays per batch) into the
 * chunk's heap, and what grows is that transaction's disk and WAL, which the
 * columnstore policy compresses again later. Without TimescaleDB the name is
 * an inert custom setting.
 */
export const BEGIN_WRITE =
  'BEGIN; SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = 0';

/** A write transaction's first statements: BEGIN_WRITE, then the epoch lock (checkEpoch reads its rows). */
export function openingText(slot: string, sink: string): string {
  return `${BEGIN_WRITE}; ${lockEpochText(slot, sink)}`;
}

/** What a transaction's epoch lock read: the sink's generation and checkpoint state. */
export interface EpochAt {
  generation: number;
  state: CheckpointState | null;
}

/** A write that assumed another generation or state than its lock read: it is rolled back and run again. */
export class StaleOpening extends Error {
  constructor(readonly at: EpochAt) {
    super(`the sink's generation or state changed (now ${at.generation}, ${at.state})`);
  }
}

/** BEGIN_WRITE's statements and the lock: the lock's rows are the results of this statement, counted from 1. */
const OPENING_STATEMENTS = 3;

/**
 * A write transaction's BEGIN and epoch lock sent at the head of the write's
 * first message (the COPY's) instead of in a round trip of their own: under
 * load each round trip waits for both processes to be scheduled, and this one
 * was a third of a streamed batch's. The write assumes the generation and
 * state the previous write's lock read; settle() checks the lock's row once
 * the message's results are back, before anything else is sent, so nothing
 * commits unchecked: another replica's epoch fails the write with
 * leadership_lost, another generation or state with StaleOpening (the
 * transaction is rolled back and run again the plain way).
 *
 * The rule for whoever holds one: its first statement carries `text` at its
 * head and settles it, or it calls alone() first.
 *
 * The usual write can also end in that message (closeWith): its COMMIT then
 * follows the server's own checks (expectText, and the COPY's tombstone
 * check), which fail the message before the COMMIT where the client's would
 * have refused it, so a streamed batch costs one round trip.
 */
export class FoldedOpening {
  readonly text: string;
  private at: EpochAt | null = null;
  private ending: (() => string[]) | null = null;
  private done = false;

  constructor(
    readonly assumed: EpochAt,
    private readonly slot: string,
    private readonly sink: string,
    private readonly epoch: string,
  ) {
    this.text = openingText(slot, sink);
  }

  /**
   * Lets the message that carries the opening also end the write: `ending`
   * gives the statements that follow its rows before the COMMIT (it may be
   * asked again if that message fails, and must give the same).
   */
  closeWith(ending: () => string[]): void {
    this.ending = ending;
  }

  /** The statements that end the write in the opening's message, or null when it ends apart. */
  end(): string[] | null {
    return this.ending?.() ?? null;
  }

  /** The server's check of the assumed epoch, generation and state, for a message that commits. */
  get expectText(): string {
    return expectEpochText(this.slot, this.sink, this.epoch, this.assumed);
  }

  /** Whether the opening's message committed the write (see closeWith). */
  get committed(): boolean {
    return this.done;
  }

  /** The message that ended the write committed it: settled, and nothing more is sent. */
  noteCommitted(): void {
    if (this.at === null) throw new Error('a folded write committed before its lock was checked');
    this.done = true;
  }

  /** The generation and state the lock read; null until settled. */
  get settled(): EpochAt | null {
    return this.at;
  }

  /**
   * Checks the lock's row among the text-format rows of the statements of a
   * message that began with `text` (CopyInResult.before). `failure` is the
   * message's error, if any: thrown as it is when the lock did not complete
   * (nothing to check: the transaction is rolled back).
   */
  settle(before: readonly (readonly (string | null)[])[][], failure: Error | null = null): void {
    const rows = before[OPENING_STATEMENTS - 1];
    if (rows === undefined) {
      throw failure ?? new ProtocolError('the folded opening returned no result for its lock');
    }
    this.check(
      rows.map(([epoch, holder, generation, state]) => ({
        epoch: epoch as string,
        holder: holder as string,
        generation: generation === null || generation === undefined ? null : Number(generation),
        state: (state ?? null) as CheckpointState | null,
      })),
    );
  }

  /** Sends the opening in a message of its own and settles it. */
  async alone(client: pg.ClientBase): Promise<void> {
    const results = (await client.query(this.text)) as unknown as pg.QueryResult[];
    this.check(results[results.length - 1]!.rows as LockedEpoch[]);
  }

  private check(rows: readonly LockedEpoch[]): void {
    const at = checkEpoch(rows, this.slot, this.epoch);
    if (at.generation !== this.assumed.generation || at.state !== this.assumed.state) {
      throw new StaleOpening(at);
    }
    this.at = at;
  }
}
