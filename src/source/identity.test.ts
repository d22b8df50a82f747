import { describe, expect, it } from 'vitest';
import { judgeIdentity, sourceChanged, sourceRewound } from './identity.js';

const a = { systemId: '7301234567890123456', timeline: 1 };

describe('source identity', () => {
  it('is the same server only with the same system identifier', () => {
    expect(judgeIdentity(a, { ...a })).toBe('same');
    expect(judgeIdentity(a, { ...a, timeline: 2 })).toBe('new_timeline');
    expect(judgeIdentity(a, { systemId: '7301234567890123457', timeline: 1 })).toBe('other_server');
    expect(judgeIdentity(null, a)).toBe('unrecorded');
  });

  it('refuses another server naming the fix', () => {
    const e = sourceChanged('slotline', a, { systemId: '1', timeline: 1 });
    expect(e.code).toBe('source_changed');
    expect(e.retriable).toBe(false);
    expect(e.message).toMatch(/slotline setup --resnapshot/);
  });

  it('refuses a server rewound behind the checkpoint naming the fix', () => {
    const e = sourceRewound('slotline', 0x1000n, 0x2000n);
    expect(e.code).toBe('source_changed');
    expect(e.message).toMatch(/0\/1000, before the sink's checkpoint 0\/2000/);
    expect(e.message).toMatch(/slotline setup --resnapshot/);
  });
});
