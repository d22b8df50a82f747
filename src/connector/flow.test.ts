import { describe, expect, it } from 'vitest';
import { FlowControl } from './flow.js';

function socket() {
  const s = { reading: true, pause: () => (s.reading = false), resume: () => (s.reading = true) };
  return s;
}

describe('FlowControl', () => {
  it('reads only when no reason is held', () => {
    const f = new FlowControl();
    const s = socket();
    f.attach(s);
    f.hold('backpressure');
    f.hold('operator');
    expect(s.reading).toBe(false);
    f.release('backpressure');
    expect(s.reading).toBe(false);
    expect(f.reasons()).toEqual(['operator']);
    f.release('operator');
    expect(s.reading).toBe(true);
  });

  it('an operator resume while the queue is full resumes once the queue drains', () => {
    const f = new FlowControl();
    const s = socket();
    f.attach(s);
    f.hold('operator');
    f.hold('backpressure');
    f.release('operator');
    expect(s.reading).toBe(false);
    f.release('backpressure');
    expect(s.reading).toBe(true);
  });

  it('a pause given between streams holds for the next one', () => {
    const f = new FlowControl();
    f.hold('operator');
    const s = socket();
    f.attach(s);
    expect(s.reading).toBe(false);
    f.attach(null);
    f.release('operator');
    const next = socket();
    f.attach(next);
    expect(next.reading).toBe(true);
  });

  it('tells listeners about every change', () => {
    const f = new FlowControl();
    const seen: boolean[] = [];
    f.onChange((p) => seen.push(p));
    f.hold('stopping');
    f.hold('stopping');
    f.release('stopping');
    expect(seen).toEqual([true, false]);
  });
});
