// Live numbers for the status page: the last 5 minutes of throughput and latency, and the last
// errors. Recording is O(1) with no allocation per message: a ring of one-second buckets, each a
// few counters and a small fixed latency histogram, all in preallocated typed arrays.

export type LiveResult = 'delivered' | 'rejected' | 'deferred';

export interface LivePoint {
  /** start of the second, epoch milliseconds */
  t: number;
  delivered: number;
  rejected: number;
  deferred: number;
  /** latency quantiles of the messages finished in that second; null when there were none */
  p50Ms: number | null;
  p99Ms: number | null;
}

export interface LiveError {
  at: string;
  email: string;
  reply: string;
}

export interface LiveSummary {
  windowSec: number;
  delivered: number;
  rejected: number;
  deferred: number;
  throughputPerSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
}

export interface LiveSnapshot {
  now: string;
  /** one point per second, oldest first, ending with the current (partial) second */
  series: LivePoint[];
  /** the last 60 complete seconds */
  lastMinute: LiveSummary;
  /** newest first */
  recentErrors: LiveError[];
}

/** Upper bounds (ms) of the latency buckets; the last bucket is open-ended. */
export const LATENCY_BOUNDS_MS = [
  1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 20000, 60000,
] as const;
const NB = LATENCY_BOUNDS_MS.length + 1;
const RESULTS: readonly LiveResult[] = ['delivered', 'rejected', 'deferred'];
const ERROR_REPLY_MAX = 300;

export interface LiveStatsOptions {
  /** seconds kept (default 300) */
  windowSec?: number;
  /** errors kept (default 50) */
  maxErrors?: number;
  now?: () => number;
}

export class LiveStats {
  readonly windowSec: number;
  private readonly now: () => number;
  /** epoch second each slot currently holds (-1 = never used) */
  private readonly slotSecond: Float64Array;
  private readonly counts: Uint32Array; // windowSec * 3
  private readonly hist: Uint32Array; // windowSec * NB
  private readonly errors: (LiveError | undefined)[];
  private errorNext = 0;

  constructor(opts: LiveStatsOptions = {}) {
    this.windowSec = opts.windowSec ?? 300;
    this.now = opts.now ?? Date.now;
    this.slotSecond = new Float64Array(this.windowSec).fill(-1);
    this.counts = new Uint32Array(this.windowSec * 3);
    this.hist = new Uint32Array(this.windowSec * NB);
    this.errors = new Array<LiveError | undefined>(opts.maxErrors ?? 50).fill(undefined);
  }

  /** One finished message: `durationMs` from end of DATA to the reply sent to the client. */
  record(durationMs: number, result: LiveResult): void {
    const slot = this.slotFor(Math.floor(this.now() / 1000));
    this.counts[slot * 3 + (result === 'delivered' ? 0 : result === 'rejected' ? 1 : 2)]!++;
    this.hist[slot * NB + bucketOf(durationMs)]!++;
  }

  /** Remember a failure for the status page (the upstream's or the proxy's reply text). */
  recordError(email: string, reply: string): void {
    const text = reply.length > ERROR_REPLY_MAX ? reply.slice(0, ERROR_REPLY_MAX) + '...' : reply;
    this.errors[this.errorNext] = { at: new Date(this.now()).toISOString(), email, reply: text };
    this.errorNext = (this.errorNext + 1) % this.errors.length;
  }

  snapshot(): LiveSnapshot {
    const nowMs = this.now();
    const current = Math.floor(nowMs / 1000);
    const series: LivePoint[] = [];
    const minuteHist = new Uint32Array(NB);
    const minute = { delivered: 0, rejected: 0, deferred: 0 };
    for (let sec = current - this.windowSec + 1; sec <= current; sec++) {
      const slot = ((sec % this.windowSec) + this.windowSec) % this.windowSec;
      const live = this.slotSecond[slot] === sec;
      const c = (i: number) => (live ? this.counts[slot * 3 + i]! : 0);
      const h = live ? this.hist.subarray(slot * NB, slot * NB + NB) : undefined;
      series.push({
        t: sec * 1000,
        delivered: c(0),
        rejected: c(1),
        deferred: c(2),
        p50Ms: h ? quantile(h, 0.5) : null,
        p99Ms: h ? quantile(h, 0.99) : null,
      });
      if (live && sec < current && sec >= current - 60) {
        RESULTS.forEach((r, i) => (minute[r] += c(i)));
        for (let b = 0; b < NB; b++) minuteHist[b]! += h![b]!;
      }
    }
    const total = minute.delivered + minute.rejected + minute.deferred;
    const recentErrors: LiveError[] = [];
    for (let i = 1; i <= this.errors.length; i++) {
      const e = this.errors[(this.errorNext - i + this.errors.length) % this.errors.length];
      if (e) recentErrors.push(e);
    }
    return {
      now: new Date(nowMs).toISOString(),
      series,
      lastMinute: {
        windowSec: 60,
        ...minute,
        throughputPerSec: total / 60,
        p50Ms: quantile(minuteHist, 0.5),
        p99Ms: quantile(minuteHist, 0.99),
      },
      recentErrors,
    };
  }

  private slotFor(sec: number): number {
    const slot = sec % this.windowSec;
    if (this.slotSecond[slot] !== sec) {
      // The slot held an older second (or none): reuse it. Constant work, no allocation.
      this.slotSecond[slot] = sec;
      this.counts.fill(0, slot * 3, slot * 3 + 3);
      this.hist.fill(0, slot * NB, slot * NB + NB);
    }
    return slot;
  }
}

function bucketOf(ms: number): number {
  // A linear scan of 19 bounds is as fast as a binary search at this size.
  for (let i = 0; i < LATENCY_BOUNDS_MS.length; i++) if (ms <= LATENCY_BOUNDS_MS[i]!) return i;
  return NB - 1;
}

/** Quantile from bucket counts, interpolated linearly inside the bucket; null when empty. */
export function quantile(h: ArrayLike<number>, q: number): number | null {
  let total = 0;
  for (let i = 0; i < h.length; i++) total += h[i]!;
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < h.length; i++) {
    const n = h[i]!;
    if (n > 0 && seen + n >= rank) {
      const lo = i === 0 ? 0 : LATENCY_BOUNDS_MS[i - 1]!;
      // the open-ended last bucket reports its lower bound: "at least this slow"
      if (i >= LATENCY_BOUNDS_MS.length) return lo;
      const hi = LATENCY_BOUNDS_MS[i]!;
      return Math.round((lo + ((rank - seen) / n) * (hi - lo)) * 10) / 10;
    }
    seen += n;
  }
  return LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 1]!;
}
