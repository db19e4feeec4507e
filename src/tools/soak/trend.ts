// Growth-trend verdicts for the soak: a robust slope (Theil-Sen: the median of pairwise slopes, so
// one GC spike or fault burst cannot fake or hide a trend) over the samples after warm-up,
// projected to an hour and compared with a limit per series.

export interface Point {
  /** seconds since the start of the run */
  t: number;
  v: number;
}

export interface TrendRule {
  series: string;
  unit: string;
  /** the larger of an absolute growth per hour and a fraction of the series' median */
  maxGrowthPerHour: number;
  maxGrowthFractionPerHour?: number;
}

export interface TrendVerdict {
  series: string;
  unit: string;
  samples: number;
  median: number;
  /** projected growth per hour (Theil-Sen slope * 3600); null when not judged */
  slopePerHour: number | null;
  limitPerHour: number;
  verdict: 'ok' | 'growing' | 'not judged';
  why?: string;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Median of the slopes of all pairs with distinct t. O(n^2): 360 samples (1 h at 10 s) = 65k pairs. */
export function theilSenSlope(points: readonly Point[]): number {
  const slopes: number[] = [];
  for (let i = 0; i < points.length; i++) {
    for (let j = i + 1; j < points.length; j++) {
      const dt = points[j]!.t - points[i]!.t;
      if (dt !== 0) slopes.push((points[j]!.v - points[i]!.v) / dt);
    }
  }
  return slopes.length ? median(slopes) : 0;
}

export interface JudgeOptions {
  /** samples before this many seconds are warm-up and ignored */
  warmupSec: number;
  /** fewer judged samples than this, or a judged span shorter than minSpanSec: not judged */
  minSamples: number;
  minSpanSec: number;
}

export function judgeTrend(points: readonly Point[], rule: TrendRule, o: JudgeOptions): TrendVerdict {
  const judged = points.filter((p) => p.t >= o.warmupSec && Number.isFinite(p.v));
  const med = median(judged.map((p) => p.v));
  const limit = Math.max(rule.maxGrowthPerHour, (rule.maxGrowthFractionPerHour ?? 0) * (med || 0));
  const base = {
    series: rule.series,
    unit: rule.unit,
    samples: judged.length,
    median: med,
    limitPerHour: limit,
  };
  const span = judged.length ? judged[judged.length - 1]!.t - judged[0]!.t : 0;
  if (judged.length < o.minSamples || span < o.minSpanSec) {
    return {
      ...base,
      slopePerHour: null,
      verdict: 'not judged',
      why: `${judged.length} samples over ${Math.round(span)} s after warm-up (need ${o.minSamples} over ${o.minSpanSec} s)`,
    };
  }
  const perHour = theilSenSlope(judged) * 3600;
  if (perHour > limit) {
    return {
      ...base,
      slopePerHour: perHour,
      verdict: 'growing',
      why: `${rule.series} grows ${fmt(perHour)} ${rule.unit}/h (limit ${fmt(limit)} ${rule.unit}/h)`,
    };
  }
  return { ...base, slopePerHour: perHour, verdict: 'ok' };
}

const fmt = (n: number) => (Math.abs(n) >= 100 ? n.toFixed(0) : n.toPrecision(3));
