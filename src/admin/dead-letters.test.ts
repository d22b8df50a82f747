import { describe, expect, it } from 'vitest';
import { InvalidRequest } from '../errors.js';
import { parseFilter } from './dead-letters.js';

describe('parseFilter', () => {
  it('takes a table name, with or without its schema', () => {
    expect(parseFilter({ table: 'order_book_trades' }).table).toBe('order_book_trades');
    expect(parseFilter({ table: 'public.pools' }).table).toBe('public.pools');
  });

  it.each(['%', 'pool%', 'a b', "pools' OR 1=1", 'x.y.z'])(
    'refuses %j: a filter is exact, never a pattern',
    (table) => {
      expect(() => parseFilter({ table })).toThrow(InvalidRequest);
      expect(() => parseFilter({ table })).toThrow(/exact, not a pattern/);
    },
  );
});
