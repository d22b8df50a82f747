/**
 * A running connector with Ponder's tables and a view of its dead letters
 * through the admin API, for the dead-letter tests.
 */
import { expectSlotAtCheckpoint } from './compare.js';
import { ADMIN_TOKEN, startWithHttp } from './connector.js';
import { createTestContext } from './context.js';
import { call } from './http.js';
import { createPonderTables } from './ponder.js';
import { waitFor } from './wait.js';

export interface Letter {
  id: number;
  rowKey: string;
  reasonCode: string;
  state: string;
  attempts: number;
  note: string | null;
}

/** Streams (slot at its checkpoint) before it returns; disposing stops it and drops the databases. */
export async function runningWithLetters(name: string) {
  const ctx = await createTestContext(name);
  await createPonderTables(ctx.source);
  const { c, port, env } = await startWithHttp(ctx);
  await expectSlotAtCheckpoint(ctx);
  const letters = async (query = '') =>
    ((await call(port, 'GET', `/admin/dead-letters${query}`, { token: ADMIN_TOKEN })).body.items ??
      []) as Letter[];
  /** Waits until the letters satisfy `ok`, and returns them. */
  const lettersWhere = (what: string, ok: (l: Letter[]) => boolean, timeoutMs = 30_000) =>
    waitFor(
      async () => {
        const l = await letters();
        return ok(l) ? l : undefined;
      },
      { timeoutMs, what },
    );
  return {
    ctx,
    c,
    port,
    env,
    letters,
    lettersWhere,
    async [Symbol.asyncDispose]() {
      await c[Symbol.asyncDispose]();
      await ctx[Symbol.asyncDispose]();
    },
  };
}
