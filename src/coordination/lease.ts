// A lease as its holder sees it; the coordinator that issued it keeps the shared record.
import type { Lease, LeaseState } from './types.js';

export class HeldLease implements Lease {
  private current: LeaseState = 'held';
  constructor(
    readonly mailbox: string,
    readonly id: string,
    readonly max: number,
    private readonly onRelease: (lease: HeldLease) => void,
    private readonly onLost: ((lease: Lease) => void) | undefined,
  ) {}

  get state(): LeaseState {
    return this.current;
  }

  release(): void {
    if (this.current !== 'held') return;
    this.current = 'released';
    this.onRelease(this);
  }

  /** the slot went to someone else: tell the holder (once) */
  lose(): void {
    if (this.current !== 'held') return;
    this.current = 'lost';
    this.onLost?.(this);
  }
}

/** An instance's held leases by mailbox. */
export class LeaseBook {
  private readonly byMailbox = new Map<string, Set<HeldLease>>();

  add(l: HeldLease): void {
    let set = this.byMailbox.get(l.mailbox);
    if (!set) this.byMailbox.set(l.mailbox, (set = new Set()));
    set.add(l);
  }

  delete(l: HeldLease): void {
    const set = this.byMailbox.get(l.mailbox);
    if (!set) return;
    set.delete(l);
    if (set.size === 0) this.byMailbox.delete(l.mailbox);
  }

  count(mailbox: string): number {
    return this.byMailbox.get(mailbox)?.size ?? 0;
  }

  /** held leases per mailbox, oldest first (a Set keeps insertion order) */
  groups(): [string, HeldLease[]][] {
    return [...this.byMailbox].map(([m, set]) => [m, [...set]]);
  }

  all(): HeldLease[] {
    const out: HeldLease[] = [];
    for (const set of this.byMailbox.values()) out.push(...set);
    return out;
  }
}
