// A rate gate for a coordinator whose shared window is remote (Redis, or the primary over IPC). The
// message path must not wait for a round trip per message: the gate takes permits from the shared
// window in small batches ahead of need and spends them synchronously.
//
// Batch size follows the traffic (doubles when a batch is used up in time, halves when permits are
// left over), so a quiet mailbox takes one permit at a time (exact, nothing held back from the other
// instances) and a busy one pays one round trip per batch. A permit is valid for `validityMs` from
// the moment it was asked for; the shared window counts each grant for 60 s + validityMs, so any
// 60 s holds at most `limit` messages across instances. Unused permits are given back when they lapse.
//
// While the source is unreachable, the gate spends what it still holds (already counted globally)
// and then its local share: floor(limit / instances) per sliding minute, counting every message this
// instance sent in the last minute, healthy or not.
import { SlidingWindow } from './sliding-window.js';
import type { RateGate } from './types.js';

export interface QuotaGrant {
  /** 0..want */
  granted: number;
  /** names the grant for giveBack */
  grantId: string;
  /** when granted is 0: how long until the window has room again (ms) */
  retryAfterMs: number;
}

export interface QuotaSource {
  /** false while the shared window cannot be reached */
  readonly reachable: boolean;
  /** up to `want` permits of `limit` per minute; rejects when unreachable */
  grant(mailbox: string, limit: number, want: number, validityMs: number): Promise<QuotaGrant>;
  /** return `unused` permits of a grant (best effort) */
  giveBack(mailbox: string, grantId: string, unused: number): void;
}

export interface BatchedRateGateOptions {
  /** this instance's share while the source is unreachable */
  share: number;
  validityMs: number;
  maxBatch: number;
  /** monotonic ms */
  now: () => number;
}

interface Batch {
  grantId: string;
  left: number;
  expiresAt: number;
  timer: NodeJS.Timeout | undefined;
}

/** a waiter gives up after this many grants that others spent first (then: over the limit) */
const MAX_ROUNDS = 8;

export class BatchedRateGate implements RateGate {
  private batches: Batch[] = [];
  private want = 1;
  private pending: Promise<void> | undefined;
  private waiting = 0;
  /** the shared window was full: refuse without asking until then */
  private fullUntil = -Infinity;
  private readonly local: SlidingWindow;
  private closed = false;

  constructor(
    readonly mailbox: string,
    readonly limit: number,
    private readonly source: QuotaSource,
    private readonly opts: BatchedRateGateOptions,
  ) {
    this.local = new SlidingWindow(opts.share);
  }

  take(): boolean | Promise<boolean> {
    const now = this.opts.now();
    if (this.spend(now)) return true;
    if (!this.source.reachable) return this.local.take(now);
    if (now < this.fullUntil) return false;
    return this.takeRemote();
  }

  /** stop: give back every permit held */
  close(): void {
    this.closed = true;
    for (const b of this.batches) this.lapse(b);
    this.batches = [];
  }

  /** permits held and still valid (tests, status) */
  held(): number {
    const now = this.opts.now();
    let n = 0;
    for (const b of this.batches) if (now < b.expiresAt) n += b.left;
    return n;
  }

  private spend(now: number): boolean {
    while (this.batches.length > 0) {
      const b = this.batches[0]!;
      if (now >= b.expiresAt || b.left === 0) {
        this.batches.shift();
        this.lapse(b);
        continue;
      }
      b.left--;
      this.local.record(now);
      if (b.left === 0) {
        this.batches.shift();
        this.lapse(b);
      }
      this.prefetch();
      return true;
    }
    return false;
  }

  /** steady traffic: ask for the next batch while half of this one is still unspent */
  private prefetch(): void {
    if (this.pending || this.closed || this.want < 2 || !this.source.reachable) return;
    let left = 0;
    for (const b of this.batches) left += b.left;
    if (left <= this.want >> 1) this.fetch();
  }

  private async takeRemote(): Promise<boolean> {
    this.waiting++;
    try {
      for (let round = 0; round < MAX_ROUNDS; round++) {
        await (this.pending ?? this.fetch());
        const now = this.opts.now();
        if (this.spend(now)) return true;
        if (!this.source.reachable) return this.local.take(now);
        if (now < this.fullUntil) return false;
      }
      return false;
    } finally {
      this.waiting--;
    }
  }

  private fetch(): Promise<void> {
    const want = Math.min(this.opts.maxBatch, Math.max(this.want, this.waiting), this.limit);
    const askedAt = this.opts.now();
    const p = this.source.grant(this.mailbox, this.limit, want, this.opts.validityMs).then(
      (g) => {
        if (g.granted > 0) {
          const b: Batch = {
            grantId: g.grantId,
            left: g.granted,
            expiresAt: askedAt + this.opts.validityMs,
            timer: undefined,
          };
          // lapse on time even when no message comes to notice, so the permits go back
          b.timer = setTimeout(() => this.expire(b), this.opts.validityMs);
          b.timer.unref();
          this.batches.push(b);
          if (this.closed) this.close();
        } else {
          this.fullUntil = this.opts.now() + Math.min(g.retryAfterMs, this.opts.validityMs);
        }
      },
      // the source has marked itself unreachable; the waiters fall back to the local share
      () => undefined,
    );
    const tracked = p.finally(() => {
      if (this.pending === tracked) this.pending = undefined;
    });
    this.pending = tracked;
    return tracked;
  }

  private expire(b: Batch): void {
    const i = this.batches.indexOf(b);
    if (i < 0) return;
    this.batches.splice(i, 1);
    this.lapse(b);
  }

  /** a batch is done: adapt the batch size and give back what is left */
  private lapse(b: Batch): void {
    if (b.timer) clearTimeout(b.timer);
    b.timer = undefined;
    if (b.left === 0) {
      this.want = Math.min(this.opts.maxBatch, this.want * 2);
      return;
    }
    this.want = Math.max(1, this.want >> 1);
    const unused = b.left;
    b.left = 0;
    this.source.giveBack(this.mailbox, b.grantId, unused);
  }
}
