import { describe, expect, it } from 'vitest';
import { PoolCache } from './pools.js';

const pool = (id: string, orderBook: string | null, coin: string | null) => ({
  id,
  orderBook,
  coin,
});

describe('PoolCache', () => {
  it('joins by order_book', () => {
    const c = new PoolCache('order_book');
    c.set(pool('p1', '0xob1', 'ETH'));
    expect(c.symbolOf('0xob1')).toBe('ETH');
    expect(c.symbolOf('p1')).toBeUndefined();
    expect(c.has('0xob1')).toBe(true);
  });

  it('joins by id', () => {
    const c = new PoolCache('id');
    c.set(pool('p1', '0xob1', 'ETH'));
    expect(c.symbolOf('p1')).toBe('ETH');
    expect(c.symbolOf('0xob1')).toBeUndefined();
  });

  it('a pool without a coin is known with a null symbol', () => {
    const c = new PoolCache('order_book');
    c.set(pool('p1', '0xob1', null));
    expect(c.symbolOf('0xob1')).toBeNull();
    expect(c.has('0xob1')).toBe(true);
  });

  it("updating a pool's order_book forgets the old key", () => {
    const c = new PoolCache('order_book');
    c.set(pool('p1', '0xold', 'ETH'));
    c.set(pool('p1', '0xnew', 'WETH'));
    expect(c.symbolOf('0xold')).toBeUndefined();
    expect(c.symbolOf('0xnew')).toBe('WETH');
    expect(c.size).toBe(1);
    c.set(pool('p1', null, 'WETH'));
    expect(c.symbolOf('0xnew')).toBeUndefined();
    expect(c.size).toBe(0);
  });

  it('updating the coin keeps the key', () => {
    const c = new PoolCache('order_book');
    c.set(pool('p1', '0xob', 'ETH'));
    c.set(pool('p1', '0xob', 'WETH'));
    expect(c.symbolOf('0xob')).toBe('WETH');
    expect(c.size).toBe(1);
  });

  it('delete forgets the pool by id', () => {
    const c = new PoolCache('order_book');
    c.set(pool('p1', '0xob1', 'ETH'));
    c.set(pool('p2', '0xob2', 'BTC'));
    c.delete('p1');
    expect(c.symbolOf('0xob1')).toBeUndefined();
    expect(c.symbolOf('0xob2')).toBe('BTC');
    c.delete('unknown');
    expect(c.size).toBe(1);
    // a deleted pool can come back
    c.set(pool('p1', '0xob1', 'ETH'));
    expect(c.symbolOf('0xob1')).toBe('ETH');
  });

  it('setIfAbsent does not override a known pool or join value', () => {
    const c = new PoolCache('order_book');
    c.set(pool('p1', '0xob1', 'ETH'));
    c.setIfAbsent(pool('p1', '0xob1', 'OTHER'));
    c.setIfAbsent(pool('p1', '0xelse', 'OTHER'));
    c.setIfAbsent(pool('p9', '0xob1', 'OTHER'));
    expect(c.symbolOf('0xob1')).toBe('ETH');
    expect(c.symbolOf('0xelse')).toBeUndefined();
    c.setIfAbsent(pool('p2', '0xob2', 'BTC'));
    expect(c.symbolOf('0xob2')).toBe('BTC');
  });

  it('clear forgets everything', () => {
    const c = new PoolCache('id');
    c.set(pool('p1', null, 'ETH'));
    c.clear();
    expect(c.size).toBe(0);
    expect(c.symbolOf('p1')).toBeUndefined();
  });
});
