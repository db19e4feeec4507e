// Latency recording with HdrHistogram: microsecond resolution, 3 significant digits, values up to
// 10 minutes; percentiles reported in milliseconds.
import hdr from 'hdr-histogram-js';

export interface LatencyMs {
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

const HIGHEST_US = 600_000_000;

/** ms with microsecond precision (3 decimals) */
const ms3 = (us: number) => Math.round(us) / 1000;

export class LatencyRecorder {
  private readonly h = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: HIGHEST_US,
    numberOfSignificantValueDigits: 3,
    autoResize: false,
    useWebAssembly: false,
  });

  recordMs(ms: number): void {
    this.h.recordValue(Math.min(HIGHEST_US, Math.max(1, Math.round(ms * 1000))));
  }

  get count(): number {
    return this.h.totalCount;
  }

  percentileMs(p: number): number {
    return this.h.totalCount ? ms3(this.h.getValueAtPercentile(p)) : 0;
  }

  summary(): LatencyMs {
    if (!this.h.totalCount) return { p50: 0, p95: 0, p99: 0, max: 0, mean: 0 };
    return {
      p50: this.percentileMs(50),
      p95: this.percentileMs(95),
      p99: this.percentileMs(99),
      max: ms3(this.h.maxValue),
      mean: ms3(this.h.mean),
    };
  }
}
