import { describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, runCommand } from '../harness/connector.js';
import { expectSinkEqualsSource, sinkTrades } from '../harness/compare.js';
import { call } from '../harness/http.js';
import { insertPools, insertTrades, makePool, makeTrade } from '../harness/ponder.js';
import { waitFor } from '../harness/wait.js';
import { runningWithLetters, type Letter } from '../harness/dead-letters.js';

const TOKEN = ADMIN_TOKEN;

describe('dead letters', () => {
  it('a trade for an unknown pool reaches the sink exactly once, without an operator, when the pool appears', async () => {
    await using r = await runningWithLetters('dl_unknown_pool');
    const { ctx } = r;
    const known = makePool(0);
    const late = makePool(1);
    await insertPools(ctx.source, 'public', [known]);
    const waiting = makeTrade(1, late);
    await insertTrades(ctx.source, 'public', [waiting, makeTrade(2, known)]);
    // A later version of the waiting trade (still for the unknown pool): the retry must not undo it.
    await ctx.source.query(`UPDATE order_book_trades SET price = 424242 WHERE id = $1`, [
      waiting.id,
    ]);
    const first = await waitFor(
      async () => {
        const l = await r.letters();
        return l.length === 2 ? l : undefined;
      },
      { timeoutMs: 20_000, what: 'two dead letters' },
    );
    // The newer letter supersedes the older one once the sink knows both (when that is wired).
    expect(first.every((l) => l.reasonCode === 'unknown_pool')).toBe(true);
    expect(first.filter((l) => l.state === 'pending').length).toBeGreaterThan(0);

    await insertPools(ctx.source, 'public', [late]);
    await expectSinkEqualsSource(ctx);
    const t = (await sinkTrades(ctx.sink)).find((x) => x.id === waiting.id);
    expect(t?.price).toBe('424242');
    const settled = await waitFor(
      async () => {
        const l = await r.letters();
        return l.every((x) => x.state === 'resolved') ? l : undefined;
      },
      { timeoutMs: 20_000, what: 'the dead letters to be resolved' },
    );
    expect(settled).toHaveLength(2);
    const dup = await ctx.sink.query('SELECT trade_id FROM analytics_trades WHERE trade_id = $1', [
      waiting.id,
    ]);
    expect(dup.rowCount).toBe(1);
  });

  it('a NULL price corrected at the source streams normally; retrying the old letter resolves it and keeps the new price', async () => {
    await using r = await runningWithLetters('dl_null_price');
    const { ctx, port } = r;
    const pool = makePool(0);
    await insertPools(ctx.source, 'public', [pool]);
    const bad = { ...makeTrade(1, pool), price: null };
    await insertTrades(ctx.source, 'public', [bad]);
    const [letter] = await waitFor(
      async () => {
        const l = await r.letters('?reason=null_price');
        return l.length === 1 ? l : undefined;
      },
      { timeoutMs: 20_000, what: 'the dead letter' },
    );
    await ctx.source.query(`UPDATE order_book_trades SET price = 1234 WHERE id = $1`, [bad.id]);
    await expectSinkEqualsSource(ctx);

    const retry = await call(port, 'POST', '/admin/dead-letters/retry', {
      token: TOKEN,
      json: { ids: [letter!.id] },
    });
    expect(retry.status, retry.text).toBe(200);
    // The retry re-reads the row: it maps now, and the corrected price stays
    // (or the letter was already settled by the UPDATE that superseded it).
    expect(retry.body).toMatchObject({ resolved: retry.body.selected, failed: 0 });
    await expectSinkEqualsSource(ctx);
    const rows = await sinkTrades(ctx.sink);
    expect(rows.filter((x) => x.id === bad.id)).toEqual([
      expect.objectContaining({ price: '1234' }),
    ]);
    const shown = await call(port, 'GET', `/admin/dead-letters/${letter!.id}`, { token: TOKEN });
    expect(shown.body).toMatchObject({ state: 'resolved', reasonCode: 'null_price' });

    // Settled letters cannot be discarded any more.
    const discarded = await call(port, 'POST', '/admin/dead-letters/discard', {
      token: TOKEN,
      json: { ids: [letter!.id], note: 'fixed at the source by UPDATE' },
    });
    expect(discarded.body).toEqual({ discarded: 0 });
  });

  it('list, show, retry, discard and purge work from the API and the CLI, and refuse bad input', async () => {
    await using r = await runningWithLetters('dl_ops');
    const { ctx, port, env } = r;
    const pool = makePool(0);
    await insertPools(ctx.source, 'public', [pool]);
    await insertTrades(ctx.source, 'public', [
      { ...makeTrade(1, pool), price: null },
      { ...makeTrade(2, pool), side: 'hold' },
      { ...makeTrade(3, pool), timestamp: null },
    ]);
    await waitFor(async () => ((await r.letters()).length === 3 ? true : undefined), {
      timeoutMs: 20_000,
      what: '3 letters',
    });

    const page = await call(port, 'GET', '/admin/dead-letters?limit=2', { token: TOKEN });
    expect((page.body.items as Letter[]).length).toBe(2);
    const next = await call(
      port,
      'GET',
      `/admin/dead-letters?limit=2&after=${page.body.next as number}`,
      { token: TOKEN },
    );
    expect((next.body.items as Letter[]).length).toBe(1);

    const list = await runCommand(env, ['dead-letters', 'list', '--reason', 'invalid_side']);
    expect(list.code, list.output).toBe(0);
    const listed = JSON.parse(list.output) as { items: Letter[] };
    expect(listed.items.map((l) => l.reasonCode)).toEqual(['invalid_side']);
    const id = listed.items[0]!.id;
    const show = await runCommand(env, ['dead-letters', 'show', String(id)]);
    expect(JSON.parse(show.output)).toMatchObject({ id, reasonCode: 'invalid_side' });
    const retry = await runCommand(env, ['dead-letters', 'retry', '--all']);
    expect(JSON.parse(retry.output)).toMatchObject({ selected: 3, resolved: 0, failed: 3 });
    // Letters that still fail make the command fail, for scripts.
    expect(retry.code).toBe(1);
    const discard = await runCommand(env, [
      'dead-letters',
      'discard',
      '--reason',
      'invalid_side',
      '--note',
      'test data',
    ]);
    expect(JSON.parse(discard.output)).toEqual({ discarded: 1 });
    const purgeCli = await runCommand(env, ['dead-letters', 'purge', '--older-than-days', '0']);
    expect(JSON.parse(purgeCli.output)).toEqual({ purged: 1 });
    // Pending (here: retried) ones are never purged.
    const left = await r.letters();
    expect(left.map((l) => l.state).sort()).toEqual(['retried', 'retried']);
    // A table filter is a name, never a pattern: `--table %` selects nothing, it is refused.
    const everything = await runCommand(env, [
      'dead-letters',
      'discard',
      '--table',
      '%',
      '--note',
      'oops',
    ]);
    expect(everything.code, everything.output).toBe(2);
    expect(everything.output).toMatch(/exact, not a pattern/);
    for (const [table, n] of [
      ['order_book_trades', 2],
      ['public.order_book_trades', 2],
      ['order_book_trade_', 0], // `_` is a character of the name, not LIKE's wildcard
    ] as const) {
      const byTable = await runCommand(env, ['dead-letters', 'list', '--table', table]);
      expect((JSON.parse(byTable.output) as { items: Letter[] }).items, table).toHaveLength(n);
    }
    expect((await r.letters()).length).toBe(2);
    const purgeApi = await call(port, 'POST', '/admin/dead-letters/purge', {
      token: TOKEN,
      json: { olderThanDays: 0 },
    });
    expect(purgeApi.body).toEqual({ purged: 0 });

    const bad: [string, string, Parameters<typeof call>[3], number][] = [
      ['GET', '/admin/dead-letters', {}, 401],
      ['GET', '/admin/dead-letters?state=lost', { token: TOKEN }, 400],
      ['GET', '/admin/dead-letters?limit=0', { token: TOKEN }, 400],
      ['GET', '/admin/dead-letters?bogus=1', { token: TOKEN }, 400],
      ['GET', '/admin/dead-letters/999999', { token: TOKEN }, 404],
      ['POST', '/admin/dead-letters/retry', { token: TOKEN, json: { ids: ['x'] } }, 400],
      ['POST', '/admin/dead-letters/discard', { token: TOKEN, json: { ids: [1] } }, 400],
      ['POST', '/admin/dead-letters/discard', { token: TOKEN, json: { note: 'everything' } }, 400],
      [
        'POST',
        '/admin/dead-letters/discard',
        { token: TOKEN, json: { table: 'pub%', note: 'a pattern' } },
        400,
      ],
      ['POST', '/admin/dead-letters/purge', { token: TOKEN, json: { olderThanDays: 'old' } }, 400],
    ];
    for (const [method, path, opts, want] of bad) {
      const a = await call(port, method, path, opts);
      expect(a.status, `${method} ${path} → ${a.text}`).toBe(want);
    }
    expect((await r.letters()).length).toBe(2);
    const cliBad = await runCommand(env, ['dead-letters', 'discard', String(id)]);
    expect(cliBad.code).toBe(2);
    const metrics = await call(port, 'GET', '/metrics');
    expect(metrics.text).toMatch(/slotline_dead_letters_total\{reason="null_price"\} 1/);

    // With the connector down, list and show read the sink database; changes are refused.
    expect((await r.c.stop()).code).toBe(0);
    const offline = await runCommand(env, ['dead-letters', 'list', '--state', 'retried']);
    expect(offline.code, offline.output).toBe(0);
    const listedOffline = JSON.parse(offline.output) as { note: string; items: Letter[] };
    expect(listedOffline.note).toMatch(/cannot reach the connector.*read from the sink database/);
    expect(listedOffline.items.map((l) => l.state)).toEqual(['retried', 'retried']);
    const one = listedOffline.items[0]!;
    const shownOffline = await runCommand(env, ['dead-letters', 'show', String(one.id)]);
    expect(shownOffline.code, shownOffline.output).toBe(0);
    expect(JSON.parse(shownOffline.output)).toMatchObject({ id: one.id, state: 'retried' });
    const missing = await runCommand(env, ['dead-letters', 'show', '999999']);
    expect(missing.code).toBe(2);
    expect(missing.output).toContain('no dead letter 999999');
    const retryOffline = await runCommand(env, ['dead-letters', 'retry', '--all']);
    expect(retryOffline.code).toBe(1);
    expect(retryOffline.output).toMatch(/through the running connector/);
  });
});
