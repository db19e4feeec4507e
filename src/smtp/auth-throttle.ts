// Per-address brake on failed client authentications: after a few failures each further reply is
// delayed (doubling), and past a hard limit the address is refused (`421 4.7.0`) until its window
// expires. The table is bounded so an attacker with many addresses cannot grow it without end.

export interface AuthThrottleOptions {
  /** failures tolerated before replies are slowed */
  freeFailures: number;
  /** failures after which the address is refused */
  refuseAfter: number;
  /** how long failures are remembered, and how long a refusal lasts */
  windowMs: number;
  baseDelayMs: number;
  maxDelayMs: number;
  maxEntries: number;
}

const DEFAULTS: AuthThrottleOptions = {
  freeFailures: 3,
  refuseAfter: 20,
  windowMs: 15 * 60_000,
  baseDelayMs: 500,
  maxDelayMs: 8_000,
  maxEntries: 100_000,
};

interface Entry {
  failures: number;
  firstAt: number;
}

export class AuthThrottle {
  private readonly opts: AuthThrottleOptions;
  // Map keeps insertion order: the oldest entry is first, so eviction is O(1).
  private readonly entries = new Map<string, Entry>();

  constructor(
    opts: Partial<AuthThrottleOptions> = {},
    private readonly now: () => number = Date.now,
  ) {
    this.opts = { ...DEFAULTS, ...opts };
  }

  private entry(addr: string): Entry | undefined {
    const e = this.entries.get(addr);
    if (e && this.now() - e.firstAt > this.opts.windowMs) {
      this.entries.delete(addr);
      return undefined;
    }
    return e;
  }

  /** true when this address has failed too often and must be refused */
  isRefused(addr: string): boolean {
    const e = this.entry(addr);
    return e !== undefined && e.failures >= this.opts.refuseAfter;
  }

  /** Record a failure; returns how long to wait before answering it. */
  recordFailure(addr: string): number {
    let e = this.entry(addr);
    if (!e) {
      if (this.entries.size >= this.opts.maxEntries) {
        const oldest = this.entries.keys().next().value;
        if (oldest !== undefined) this.entries.delete(oldest);
      }
      e = { failures: 0, firstAt: this.now() };
      this.entries.set(addr, e);
    }
    e.failures++;
    const over = e.failures - this.opts.freeFailures;
    if (over <= 0) return 0;
    return Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * 2 ** (over - 1));
  }

  recordSuccess(addr: string): void {
    const e = this.entries.get(addr);
    // A success does not wipe a refusal: a guessed password after 20 failures still waits.
    if (e && e.failures < this.opts.refuseAfter) this.entries.delete(addr);
  }

  get size(): number {
    return this.entries.size;
  }
}
