import { describe, expect, it } from 'vitest';
import { AuthThrottle } from '../../src/smtp/auth-throttle.js';
import { TrustedNetworks } from '../../src/smtp/trusted-networks.js';

describe('AuthThrottle', () => {
  it('lets a few failures pass, then slows with doubling delays, then refuses', () => {
    const t = new AuthThrottle({ freeFailures: 2, refuseAfter: 6, baseDelayMs: 100, maxDelayMs: 300 });
    const delays = Array.from({ length: 5 }, () => t.recordFailure('192.0.2.1'));
    expect(delays).toEqual([0, 0, 100, 200, 300]);
    expect(t.isRefused('192.0.2.1')).toBe(false);
    t.recordFailure('192.0.2.1');
    expect(t.isRefused('192.0.2.1')).toBe(true);
    expect(t.isRefused('192.0.2.2')).toBe(false);
  });

  it('forgets failures after the window, and a success clears the count but not a refusal', () => {
    let now = 0;
    const t = new AuthThrottle({ freeFailures: 0, refuseAfter: 3, windowMs: 1000 }, () => now);
    t.recordFailure('a');
    t.recordSuccess('a');
    expect(t.recordFailure('a')).toBeGreaterThan(0);
    t.recordFailure('a');
    t.recordFailure('a');
    t.recordSuccess('a');
    expect(t.isRefused('a')).toBe(true);
    now = 1001;
    expect(t.isRefused('a')).toBe(false);
  });

  it('stays bounded', () => {
    const t = new AuthThrottle({ maxEntries: 100 });
    for (let i = 0; i < 1000; i++) t.recordFailure(`10.0.${i >> 8}.${i & 255}`);
    expect(t.size).toBe(100);
  });
});

describe('TrustedNetworks', () => {
  it('matches IPv4 and IPv6 CIDRs and IPv4-mapped addresses', () => {
    const n = new TrustedNetworks(['10.1.0.0/16', '2001:db8::/32', '192.0.2.7']);
    expect(n.has('10.1.2.3')).toBe(true);
    expect(n.has('::ffff:10.1.2.3')).toBe(true);
    expect(n.has('10.2.0.1')).toBe(false);
    expect(n.has('2001:db8::1')).toBe(true);
    expect(n.has('192.0.2.7')).toBe(true);
    expect(n.has('192.0.2.8')).toBe(false);
    expect(new TrustedNetworks([]).has('127.0.0.1')).toBe(false);
  });
});
