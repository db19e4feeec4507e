import { describe, expect, it } from 'vitest';
import {
  judgeTrend,
  median,
  theilSenSlope,
  type Point,
  type TrendRule,
} from '../../../src/tools/soak/trend.js';
import { promSum } from '../../../src/tools/harness/prom.js';
import { pickFault, quietSec, seededRandom } from '../../../src/tools/soak/faults.js';

const MiB = 1024 * 1024;
const rss: TrendRule = {
  series: 'rss',
  unit: 'bytes',
  maxGrowthPerHour: 32 * MiB,
  maxGrowthFractionPerHour: 0.1,
};
const judge = { warmupSec: 60, minSamples: 12, minSpanSec: 300 };
/** one sample every 10 s for `minutes`, value f(t) */
const series = (minutes: number, f: (t: number) => number): Point[] =>
  Array.from({ length: minutes * 6 + 1 }, (_, i) => ({ t: i * 10, v: f(i * 10) }));

describe('soak trend detection', () => {
  it('takes the median slope, so single spikes do not fake or hide a trend', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
    const line = series(30, (t) => 100 + 2 * t);
    expect(theilSenSlope(line)).toBeCloseTo(2);
    // a few huge outliers (GC, a fault burst) barely move it
    const spiky = line.map((p, i) => (i % 20 === 7 ? { ...p, v: p.v + 1e6 } : p));
    expect(theilSenSlope(spiky)).toBeCloseTo(2, 0);
  });

  it('passes a flat, noisy memory series and fails a slow leak', () => {
    let seed = 1;
    const noise = () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5) * 8 * MiB;
    const flat = judgeTrend(
      series(60, () => 120 * MiB + noise()),
      rss,
      judge,
    );
    expect(flat.verdict).toBe('ok');
    // 1 MiB a minute = 60 MiB/h, over the max(32 MiB, 10% of ~150 MiB) limit
    const leak = judgeTrend(
      series(60, (t) => 120 * MiB + (t / 60) * MiB + noise()),
      rss,
      judge,
    );
    expect(leak.verdict).toBe('growing');
    expect(leak.why).toMatch(/^rss grows/);
    expect(leak.slopePerHour! / MiB).toBeGreaterThan(50);
  });

  it('ignores the warm-up and does not judge a run too short to tell', () => {
    // steep growth only during the first minute (heap warming up), flat after
    const warm = judgeTrend(
      series(30, (t) => (t < 60 ? t * MiB : 60 * MiB)),
      rss,
      judge,
    );
    expect(warm.verdict).toBe('ok');
    const short = judgeTrend(
      series(2, (t) => t * MiB),
      rss,
      judge,
    );
    expect(short.verdict).toBe('not judged');
    expect(short.slopePerHour).toBeNull();
  });
});

describe('soak helpers', () => {
  it('sums a Prometheus metric over its label sets and does not confuse longer names', () => {
    const text = [
      '# HELP process_open_fds x',
      'process_open_fds 42',
      'process_open_fds_limit 1024',
      'xoauth2_proxy_upstream_connections{provider="sim",state="idle"} 3',
      'xoauth2_proxy_upstream_connections{provider="sim",state="busy"} 4',
    ].join('\n');
    expect(promSum(text, 'process_open_fds')).toBe(42);
    expect(promSum(text, 'xoauth2_proxy_upstream_connections')).toBe(7);
    expect(promSum(text, 'nodejs_heap_size_used_bytes')).toBeUndefined();
  });

  it('replays the same fault schedule from the same seed', () => {
    const plan = (seed: number) => {
      const r = seededRandom(seed);
      return Array.from({ length: 20 }, () => ({ quiet: quietSec(r, 60), fault: pickFault(r) }));
    };
    expect(plan(42)).toEqual(plan(42));
    expect(plan(42)).not.toEqual(plan(43));
    const kinds = new Set(plan(42).map((p) => p.fault.name));
    expect(kinds.size).toBeGreaterThanOrEqual(4);
    for (const p of plan(7)) {
      expect(p.quiet).toBeGreaterThanOrEqual(5);
      expect(p.fault.durationSec).toBeGreaterThan(0);
    }
  });
});
