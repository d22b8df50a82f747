import { InvalidRequest } from '../errors.js';

import {
  DEAD_LETTER_STATES,
  type DeadLetterFilter,
  type DeadLetterState,
} from '../deadletters/types.js';

const MAX_IDS = 10_000;

function when(v: unknown, name: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0)
    return new Date(v * 1000).toISOString();
  if (typeof v === 'string' && v.length < 64) {
    if (/^\d+$/.test(v)) return new Date(Number(v) * 1000).toISOString();
    if (!Number.isNaN(Date.parse(v))) return new Date(Date.parse(v)).toISOString();
  }
  throw new InvalidRequest(`${name} must be unix seconds or an ISO 8601 time`);
}

function short(v: unknown, name: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string' && v.length > 0 && v.length <= 256) return v;
  throw new InvalidRequest(`${name} must be a non-empty string of at most 256 characters`);
}

/** Validates a filter from a query string or a JSON body. Throws InvalidRequest. */
export function parseFilter(
  input: Record<string, unknown>,
  allowed: string[] = [],
): DeadLetterFilter {
  const known = new Set(['ids', 'reason', 'table', 'state', 'from', 'to', ...allowed]);
  for (const k of Object.keys(input))
    if (!known.has(k)) throw new InvalidRequest(`unknown field ${JSON.stringify(k)}`);
  const f: DeadLetterFilter = {};
  if (input.ids !== undefined) {
    const raw = typeof input.ids === 'string' ? input.ids.split(',') : input.ids;
    if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_IDS) {
      throw new InvalidRequest(`ids must be a non-empty list of at most ${MAX_IDS} ids`);
    }
    f.ids = raw.map((x) => {
      const n = typeof x === 'string' && /^\d+$/.test(x) ? Number(x) : x;
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1)
        throw new InvalidRequest('ids must be positive integers');
      return n;
    });
  }
  const reason = short(input.reason, 'reason');
  if (reason !== undefined) f.reason = reason;
  const table = short(input.table, 'table');
  if (table !== undefined) {
    // A name, not a pattern: filters select exactly what they name.
    if (!/^([A-Za-z_][A-Za-z0-9_$]*\.)?[A-Za-z_][A-Za-z0-9_$]*$/.test(table))
      throw new InvalidRequest(
        `table must be a table name such as order_book_trades or public.pools (exact, not a pattern); got ${JSON.stringify(table)}`,
      );
    f.table = table;
  }
  if (input.state !== undefined) {
    if (!DEAD_LETTER_STATES.includes(input.state as DeadLetterState)) {
      throw new InvalidRequest(`state must be one of ${DEAD_LETTER_STATES.join(', ')}`);
    }
    f.state = input.state as DeadLetterState;
  }
  const from = when(input.from, 'from');
  if (from !== undefined) f.from = from;
  const to = when(input.to, 'to');
  if (to !== undefined) f.to = to;
  return f;
}

/** A list request's query: the filter, `limit` (default 100) and `after` (an id, default 0). */
export function parseListQuery(query: Record<string, string>): {
  filter: DeadLetterFilter;
  limit: number;
  after: number;
} {
  const { limit, after, ...rest } = query;
  const int = (v: string, name: string) => {
    if (!/^\d{1,9}$/.test(v)) throw new InvalidRequest(`${name} must be a whole number`);
    return Number(v);
  };
  return {
    filter: parseFilter(rest),
    limit: limit === undefined ? 100 : int(limit, 'limit'),
    after: after === undefined ? 0 : int(after, 'after'),
  };
}
