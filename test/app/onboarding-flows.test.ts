// The table of web flows waiting for the provider's redirect: one answer per state, a marker for a
// reload, expiry after the TTL, a bound on how many wait at once.
import { describe, expect, it } from 'vitest';
import { FlowTable, type PendingFlow } from '../../src/app/onboarding-flows.js';

function flow(state: string): PendingFlow {
  return {
    state,
    verifier: 'v'.repeat(43),
    bindingDigest: Buffer.alloc(32),
    email: 'alice@example.com',
    provider: 'google',
    redirectUri: 'https://relay.example.com/oauth/callback',
    startedBy: { admin: true },
    startedAt: 0,
  };
}

function table(opts: { ttlMs?: number; max?: number } = {}) {
  let now = 1_000_000;
  const t = new FlowTable({ ...opts, now: () => now });
  return { t, advance: (ms: number) => (now += ms) };
}

describe('FlowTable', () => {
  it('answers a state once: the flow, then "finished", and an unknown state is "none"', () => {
    const { t } = table();
    expect(t.add(flow('state-a'))).toBe(true);
    const first = t.take('state-a');
    expect(first.found).toBe('pending');
    expect(first.found === 'pending' && first.flow.email).toBe('alice@example.com');
    expect(t.take('state-a')).toEqual({ found: 'finished' });
    expect(t.take('state-b')).toEqual({ found: 'none' });
    expect(t.take('')).toEqual({ found: 'none' });
  });

  it('a state that differs in one character, or is a prefix, finds nothing', () => {
    const { t } = table();
    t.add(flow('abcdefgh'));
    expect(t.take('abcdefgH').found).toBe('none');
    expect(t.take('abcdefg').found).toBe('none');
    expect(t.take('abcdefgh').found).toBe('pending');
  });

  it('flows expire after the TTL, and so do the finished markers', () => {
    const { t, advance } = table({ ttlMs: 1000 });
    t.add(flow('old'));
    advance(600);
    t.add(flow('young'));
    t.add(flow('done'));
    t.take('done');
    advance(500); // old: 1100 ms
    expect(t.take('old').found).toBe('none');
    expect(t.take('young').found).toBe('pending');
    expect(t.take('done').found).toBe('finished');
    advance(1000);
    expect(t.take('done').found).toBe('none');
    expect(t.size).toBe(0);
  });

  it('refuses a new flow while `max` are waiting, until one expires', () => {
    const { t, advance } = table({ ttlMs: 1000, max: 3 });
    expect([t.add(flow('1')), t.add(flow('2')), t.add(flow('3'))]).toEqual([true, true, true]);
    expect(t.add(flow('4'))).toBe(false);
    advance(1001);
    expect(t.add(flow('4'))).toBe(true);
    expect(t.size).toBe(1);
  });
});
