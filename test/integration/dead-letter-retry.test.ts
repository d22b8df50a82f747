/**
 * Issue 11, items 1 and 2: a dead-letter retry follows the stream's apply rule.
 * It re-reads the row's current state from the source (never replays the
 * stored raw row), so a row deleted or corrected at the source meanwhile ends
 * in the sink exactly as the source has it, and its letter settles.
 */
import { describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, runCommand } from '../harness/connector.js';
import { expectSinkEqualsSource, sinkTrades } from '../harness/compare.js';
import { call } from '../harness/http.js';
import { insertPools, insertTrades, makePool, makeTrade } from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';
import { runningWithLetters, type Letter } from '../harness/dead-letters.js';

const settled = (l: Letter[]) => l.length > 0 && l.every((x) => x.state === 'resolved');

describe('dead-letter retry re-reads the source', () => {
  it('a trade deleted at the source while it waited for its pool stays out of the sink; its letter resolves', async () => {
    await using r = await runningWithLetters('dlr_deleted');
    const { ctx } = r;
    const known = makePool(0);
    const late = makePool(1);
    await insertPools(ctx.source, 'public', [known]);
    const waiting = makeTrade(1, late);
    await insertTrades(ctx.source, 'public', [waiting, makeTrade(2, known)]);
    await r.lettersWhere('the dead letter', (l) => l.length === 1);
    // A reorg removes it before its pool is ever indexed.
    await ctx.source.query('DELETE FROM order_book_trades WHERE id = $1', [waiting.id]);
    await insertPools(ctx.source, 'public', [late]);

    const [letter] = await r.lettersWhere('the letter to resolve', settled);
    // Settled by the retry (gone), or by the delete itself once durable (superseded).
    expect(letter?.note).toMatch(/gone at the source|superseded/);
    await expectSinkEqualsSource(ctx);
    const back = await ctx.sink.query('SELECT 1 FROM analytics_trades WHERE trade_id = $1', [
      waiting.id,
    ]);
    expect(back.rowCount).toBe(0);
  });

  it('a trade updated (new price, new time) while it waited for its pool arrives once, with the new values', async () => {
    await using r = await runningWithLetters('dlr_updated');
    const { ctx } = r;
    const late = makePool(1);
    const waiting = makeTrade(1, late, { price: '100', timestamp: 1_700_000_000 });
    await insertTrades(ctx.source, 'public', [waiting]);
    await r.lettersWhere('the first letter', (l) => l.length === 1);
    await ctx.source.query(
      `UPDATE order_book_trades SET price = 777, timestamp = 1700005000 WHERE id = $1`,
      [waiting.id],
    );
    await r.lettersWhere('a letter per version', (l) => l.length === 2);
    await insertPools(ctx.source, 'public', [late]);

    await r.lettersWhere('both letters to resolve', settled);
    await expectSinkEqualsSource(ctx);
    const rows = (await sinkTrades(ctx.sink)).filter((t) => t.id === waiting.id);
    expect(rows).toEqual([expect.objectContaining({ price: '777', ts: '1700005000' })]);
  });

  it("an operator's retry --all after the source fixed a row keeps the source's values", async () => {
    await using r = await runningWithLetters('dlr_operator');
    const { ctx, env } = r;
    const late = makePool(1);
    const waiting = makeTrade(1, late, { price: '100', timestamp: 1_700_000_000 });
    await insertTrades(ctx.source, 'public', [waiting]);
    await r.lettersWhere('the letter', (l) => l.length === 1);
    // The source fixes the row in the transaction that brings its pool.
    const client = await ctx.source.connect();
    try {
      await client.query('BEGIN');
      await insertPools(client, 'public', [late]);
      await client.query(
        `UPDATE order_book_trades SET price = 200, timestamp = 1700000100 WHERE id = $1`,
        [waiting.id],
      );
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    await expectSinkEqualsSource(ctx);
    const retry = await runCommand(env, ['dead-letters', 'retry', '--all']);
    expect(retry.code, retry.output).toBe(0);
    await r.lettersWhere('the letter to resolve', settled);
    await expectSinkEqualsSource(ctx);
    const rows = (await sinkTrades(ctx.sink)).filter((t) => t.id === waiting.id);
    expect(rows).toEqual([expect.objectContaining({ price: '200', ts: '1700000100' })]);
  });

  it('an operator retry of a row fixed by an UPDATE resolves it; a retry that fails exits non-zero', async () => {
    await using r = await runningWithLetters('dlr_exit');
    const { ctx, env } = r;
    const pool = makePool(0);
    await insertPools(ctx.source, 'public', [pool]);
    const fixed = { ...makeTrade(1, pool), price: null };
    const broken = { ...makeTrade(2, pool), side: 'hold' };
    await insertTrades(ctx.source, 'public', [fixed, broken]);
    const letters = await r.lettersWhere('two letters', (l) => l.length === 2);
    const fixedLetter = letters.find((l) => l.rowKey === fixed.id);
    await ctx.source.query(`UPDATE order_book_trades SET price = 1234 WHERE id = $1`, [fixed.id]);
    await expectSinkEqualsSource(ctx, { where: `side <> 'hold'` });

    const one = await runCommand(env, ['dead-letters', 'retry', String(fixedLetter!.id)]);
    expect(one.code, one.output).toBe(0);
    const shown = await call(r.port, 'GET', `/admin/dead-letters/${fixedLetter!.id}`, {
      token: ADMIN_TOKEN,
    });
    expect(shown.body).toMatchObject({ state: 'resolved' });

    const all = await runCommand(env, ['dead-letters', 'retry', '--all']);
    expect(all.code, all.output).not.toBe(0);
    expect(all.output).toMatch(/"failed": 1/);
    const still = (await r.letters()).find((l) => l.rowKey === broken.id);
    expect(still).toMatchObject({ state: 'retried', reasonCode: 'invalid_side' });
    await expectSinkEqualsSource(ctx, { where: `side <> 'hold'` });
  });

  // Needs supersedeLetters() called in the sink transaction (src/sinks/timescale.ts).
  it('a letter resolves by itself once a later change of its row is durable', async () => {
    await using r = await runningWithLetters('dlr_superseded');
    const { ctx } = r;
    const pool = makePool(0);
    await insertPools(ctx.source, 'public', [pool]);
    const fixed = { ...makeTrade(1, pool), price: null };
    const gone = { ...makeTrade(2, pool), price: null };
    const worse = { ...makeTrade(3, pool), price: null };
    await insertTrades(ctx.source, 'public', [fixed, gone, worse]);
    await r.lettersWhere('three letters', (l) => l.length === 3);
    await ctx.source.query(`UPDATE order_book_trades SET price = 5 WHERE id = $1`, [fixed.id]);
    await ctx.source.query('DELETE FROM order_book_trades WHERE id = $1', [gone.id]);
    await ctx.source.query(`UPDATE order_book_trades SET price = 5, side = 'hold' WHERE id = $1`, [
      worse.id,
    ]);
    const letters = await r.lettersWhere(
      'the fixed and deleted rows settled, the worse one with its newest letter',
      (l) => l.length === 4 && l.filter((x) => x.state === 'pending').length === 1,
    );
    expect(letters.filter((l) => l.state === 'pending')).toEqual([
      expect.objectContaining({ rowKey: worse.id, reasonCode: 'invalid_side' }),
    ]);
    expect(letters.filter((l) => l.state === 'resolved').map((l) => l.note)).toEqual([
      'superseded by a later change of the row',
      'superseded by a later change of the row',
      'superseded by a later change of the row',
    ]);
    await expectSinkEqualsSource(ctx, { where: `side <> 'hold'` });
  });

  it('2,000 trades of a new pool, then the pool in the next transaction: all reach the sink once, no restart', async () => {
    await using r = await runningWithLetters('dlr_inflight');
    const { ctx } = r;
    const late = makePool(2);
    const trades = Array.from({ length: 2000 }, (_, i) => makeTrade(i, late));
    const client = await ctx.source.connect();
    try {
      await client.query('BEGIN');
      await insertTrades(client, 'public', trades);
      await client.query('COMMIT');
      await insertPools(client, 'public', [late]);
    } finally {
      client.release();
    }
    await expectSinkEqualsSource(ctx);
    const pending = async () => {
      const { rows } = await ctx.sink.query<{ n: string }>(
        `SELECT count(*)::text AS n FROM slotline.dead_letters WHERE state <> 'resolved'`,
      );
      return Number(rows[0]?.n);
    };
    await waitFor(async () => (await pending()) === 0, {
      timeoutMs: 60_000,
      what: 'every letter resolved',
    });
    const { rows } = await ctx.sink.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM slotline.dead_letters WHERE state = 'resolved'`,
    );
    expect(Number(rows[0]?.n)).toBe(2000);
  });
});
