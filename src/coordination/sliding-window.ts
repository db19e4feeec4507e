// Exact sliding window over the last 60 s: the last `limit` accepted timestamps in a ring, O(1) per
// check. The same algorithm as the pool's own window; here it serves both the in-process gates and
// an instance's local share while the shared state is unreachable.
export const WINDOW_MS = 60_000;

export class SlidingWindow {
  private readonly ring: Float64Array;
  private next = 0;

  constructor(readonly limit: number) {
    this.ring = new Float64Array(Math.max(1, limit)).fill(-Infinity);
  }

  /** accept one event at `now` if fewer than `limit` were accepted in the last 60 s */
  take(now: number): boolean {
    // ring[next] is the oldest of the last `limit` accepted events
    if (now - this.ring[this.next]! < WINDOW_MS) return false;
    this.record(now);
    return true;
  }

  /** count an event that was allowed elsewhere, so a later take() sees it */
  record(now: number): void {
    this.ring[this.next] = now;
    this.next = this.next + 1 === this.ring.length ? 0 : this.next + 1;
  }
}
