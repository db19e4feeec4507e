import { describe, expect, it } from 'vitest';
import { LiveStats, quantile, LATENCY_BOUNDS_MS } from '../../src/metrics/live.js';

function clock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('LiveStats', () => {
  it('counts per second and result, over a 300 s window, oldest first', () => {
    const c = clock();
    const s = new LiveStats({ now: c.now });
    s.record(10, 'delivered');
    s.record(10, 'delivered');
    s.record(3000, 'deferred');
    c.advance(1000);
    s.record(5, 'rejected');
    const snap = s.snapshot();
    expect(snap.series).toHaveLength(300);
    const [prev, cur] = snap.series.slice(-2);
    expect(prev).toMatchObject({ delivered: 2, deferred: 1, rejected: 0 });
    expect(cur).toMatchObject({ delivered: 0, deferred: 0, rejected: 1 });
    expect(cur!.t - prev!.t).toBe(1000);
    expect(snap.series[0]).toMatchObject({ delivered: 0, p99Ms: null });
    // the last complete minute holds the first second only
    expect(snap.lastMinute).toMatchObject({ delivered: 2, deferred: 1, rejected: 0 });
    expect(snap.lastMinute.throughputPerSec).toBeCloseTo(3 / 60);
  });

  it('p50/p99 from the per-second histogram', () => {
    const c = clock();
    const s = new LiveStats({ now: c.now });
    for (let i = 0; i < 98; i++) s.record(8, 'delivered'); // bucket (5,10]
    s.record(900, 'delivered'); // (750,1000]
    s.record(900, 'delivered');
    const p = s.snapshot().series.at(-1)!;
    expect(p.p50Ms).toBeGreaterThan(5);
    expect(p.p50Ms).toBeLessThanOrEqual(10);
    expect(p.p99Ms).toBeGreaterThan(750);
    expect(p.p99Ms).toBeLessThanOrEqual(1000);
  });

  it('old seconds fall out of the window and reused slots start empty', () => {
    const c = clock();
    const s = new LiveStats({ now: c.now });
    s.record(1, 'delivered');
    c.advance(300_000); // same slot, 300 s later
    expect(s.snapshot().series.reduce((n, p) => n + p.delivered, 0)).toBe(0);
    s.record(1, 'rejected');
    const last = s.snapshot().series.at(-1)!;
    expect(last).toMatchObject({ delivered: 0, rejected: 1 });
  });

  it('recent errors: newest first, at most 50, long replies cut', () => {
    const c = clock();
    const s = new LiveStats({ now: c.now });
    for (let i = 0; i < 60; i++) s.recordError(`u${i}@x.io`, `451 4.4.1 error ${i}`);
    s.recordError('long@x.io', 'x'.repeat(1000));
    const errs = s.snapshot().recentErrors;
    expect(errs).toHaveLength(50);
    expect(errs[0]!.email).toBe('long@x.io');
    expect(errs[0]!.reply.length).toBeLessThan(400);
    expect(errs[1]!.email).toBe('u59@x.io');
    expect(errs[49]!.email).toBe('u11@x.io');
  });

  it('quantile of the open-ended bucket reports its lower bound; empty is null', () => {
    const h = new Array(LATENCY_BOUNDS_MS.length + 1).fill(0);
    expect(quantile(h, 0.99)).toBeNull();
    h[h.length - 1] = 1;
    expect(quantile(h, 0.99)).toBe(60000);
  });
});
