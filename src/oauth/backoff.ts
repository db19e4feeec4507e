// Per-account exponential backoff with "equal jitter": each delay is drawn from [d/2, d] where d
// doubles per consecutive failure up to a ceiling. The floor of d/2 keeps a failing endpoint from
// being retried too soon; the random half spreads many accounts that failed together.

export interface BackoffOptions {
  baseMs?: number;
  maxMs?: number;
  random?: () => number;
}

export class Backoff {
  private failures = 0;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;

  constructor(opts: BackoffOptions = {}) {
    this.baseMs = opts.baseMs ?? 1000;
    this.maxMs = opts.maxMs ?? 5 * 60_000;
    this.random = opts.random ?? Math.random;
  }

  /** consecutive failures so far */
  get attempts(): number {
    return this.failures;
  }

  /** record a failure; returns how long to wait before the next attempt */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.failures, 30));
    this.failures++;
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2);
  }

  reset(): void {
    this.failures = 0;
  }
}
