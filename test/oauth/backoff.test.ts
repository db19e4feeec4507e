import { describe, expect, it } from 'vitest';
import { Backoff } from '../../src/oauth/backoff.js';

describe('Backoff', () => {
  it('doubles from the base to the ceiling, within [d/2, d], and resets', () => {
    const hi = new Backoff({ baseMs: 1000, maxMs: 8000, random: () => 1 });
    expect([hi.next(), hi.next(), hi.next(), hi.next(), hi.next()]).toEqual([1000, 2000, 4000, 8000, 8000]);
    const lo = new Backoff({ baseMs: 1000, maxMs: 8000, random: () => 0 });
    expect([lo.next(), lo.next(), lo.next()]).toEqual([500, 1000, 2000]);
    expect(lo.attempts).toBe(3);
    lo.reset();
    expect(lo.next()).toBe(500);
  });

  it('defaults to 1 s doubling up to 5 minutes', () => {
    const b = new Backoff({ random: () => 1 });
    const delays = Array.from({ length: 12 }, () => b.next());
    expect(delays[0]).toBe(1000);
    expect(Math.max(...delays)).toBe(300_000);
  });
});
