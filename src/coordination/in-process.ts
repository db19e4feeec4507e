// The default coordinator: one process, today's behaviour. Tokens and rotated refresh tokens
// persist in the embedded StateStore; account state, leases, rate windows and refresh locks live in
// memory (a restart tries a needs_reauth account once more, as before). The rate check is synchronous and allocation-free (an exact sliding window).
//
// A hub holds the state and hands out members that share it: the proxy without workers uses one
// member; with workers, the primary keeps the hub and gives each worker a member that the worker
// drives over the cluster IPC channel, so the same state is global across the processes.
import { randomBytes } from 'node:crypto';
import type { Logger } from '../shared/log.js';
import type { StateStore } from '../state/store.js';
import { HealthState } from './health.js';
import { HeldLease, LeaseBook } from './lease.js';
import { Listeners } from './listeners.js';
import { SlidingWindow, WINDOW_MS } from './sliding-window.js';
import type {
  Coordinator,
  Health,
  Lease,
  RateGate,
  RefreshLineage,
  RefreshLock,
  RotationResult,
  RotationWrite,
  StoredAccessToken,
  StoredAccountState,
  Unsubscribe,
} from './types.js';

export interface InProcessOptions {
  store: StateStore;
  log: Logger;
  /** a member's leases expire this long after its last heartbeat (a worker that died) */
  leaseTtlMs?: number;
  /** default: a third of the TTL */
  heartbeatMs?: number;
  /** wall clock, ms (tests) */
  now?: () => number;
}

const DEFAULT_LEASE_TTL_MS = 30_000;
/** a member announces that it wants a slot of a mailbox at most this often */
const WANTED_EVERY_MS = 100;

class InProcessRateGate implements RateGate {
  private readonly window: SlidingWindow;
  constructor(
    readonly mailbox: string,
    readonly limit: number,
    private readonly now: () => number,
  ) {
    this.window = new SlidingWindow(limit);
  }
  take(): boolean {
    return this.window.take(this.now());
  }
}

/**
 * Rate permits granted in batches to gates that spend them elsewhere (worker processes: their
 * BatchedRateGate asks the primary's hub over IPC). As the Redis script: a grant counts for 60 s +
 * the permits' validity (a permit spent at the end of its validity still counts a full minute), and
 * unused permits given back leave the window at once. Separate from InProcessRateGate's ring: a hub
 * serves a mailbox either to in-process gates or to batched ones (with workers, only the latter).
 */
class PermitLedger {
  /** oldest first */
  private grants: { id: string; at: number; count: number }[] = [];
  private sum = 0;

  grant(now: number, limit: number, want: number, windowMs: number, id: string): [number, number] {
    const horizon = now - windowMs;
    let drop = 0;
    while (drop < this.grants.length && this.grants[drop]!.at <= horizon)
      this.sum -= this.grants[drop++]!.count;
    if (drop > 0) this.grants.splice(0, drop);
    const granted = Math.min(want, limit - this.sum);
    if (granted <= 0) {
      const first = this.grants[0];
      return [0, first ? first.at + windowMs - now : windowMs];
    }
    this.grants.push({ id, at: now, count: granted });
    this.sum += granted;
    return [granted, 0];
  }

  giveBack(id: string, unused: number): void {
    const i = this.grants.findIndex((g) => g.id === id);
    if (i < 0) return;
    const g = this.grants[i]!;
    const back = Math.min(g.count, unused);
    g.count -= back;
    this.sum -= back;
    if (g.count === 0) this.grants.splice(i, 1);
  }
}

interface LeaseRecord {
  owner: InProcessCoordinator;
  expiresAt: number;
}

interface LockRecord {
  owner: string;
  fence: number;
  expiresAt: number;
  waiters: (() => void)[];
}

export class InProcessHub {
  readonly store: StateStore;
  readonly log: Logger;
  readonly leaseTtlMs: number;
  readonly heartbeatMs: number;
  readonly now: () => number;
  private readonly members = new Set<InProcessCoordinator>();
  private readonly leases = new Map<string, Map<string, LeaseRecord>>();
  private readonly locks = new Map<string, LockRecord>();
  private readonly fences = new Map<string, number>();
  private readonly gates = new Map<string, InProcessRateGate>();
  private readonly ledgers = new Map<string, PermitLedger>();
  private grantSeq = 0;
  /** @internal */ readonly states = new Map<string, StoredAccountState>();

  constructor(opts: InProcessOptions) {
    this.store = opts.store;
    this.log = opts.log;
    this.leaseTtlMs = opts.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
    this.heartbeatMs = opts.heartbeatMs ?? Math.max(10, Math.floor(this.leaseTtlMs / 3));
    this.now = opts.now ?? Date.now;
  }

  member(instanceId = `in-process:${process.pid}:${randomBytes(3).toString('hex')}`): InProcessCoordinator {
    const m = new InProcessCoordinator(this, instanceId);
    this.members.add(m);
    return m;
  }

  /** @internal */ detach(m: InProcessCoordinator): void {
    this.members.delete(m);
  }

  /** @internal */ broadcast(from: InProcessCoordinator, deliver: (m: InProcessCoordinator) => void): void {
    for (const m of this.members) if (m !== from) deliver(m);
  }

  // --- leases ---

  /** @internal */ liveLeases(mailbox: string): Map<string, LeaseRecord> {
    let map = this.leases.get(mailbox);
    if (!map) this.leases.set(mailbox, (map = new Map()));
    const now = this.now();
    for (const [id, r] of map) if (r.expiresAt <= now) map.delete(id);
    return map;
  }

  /** @internal */ acquireLease(
    owner: InProcessCoordinator,
    mailbox: string,
    id: string,
    max: number,
  ): boolean {
    const map = this.liveLeases(mailbox);
    if (map.size >= max) return false;
    map.set(id, { owner, expiresAt: this.now() + this.leaseTtlMs });
    return true;
  }

  /**
   * @internal Who should give up a slot of `mailbox` for `requester` (refused): the member holding
   * the most, if the requester holds none (it would wait for its acquire timeout) or the holder has
   * at least two more than the requester. A fair split is left alone, so two busy members do not
   * hand a slot back and forth.
   */
  wantedFrom(requester: InProcessCoordinator, mailbox: string): InProcessCoordinator | undefined {
    const counts = new Map<InProcessCoordinator, number>();
    for (const r of this.liveLeases(mailbox).values()) counts.set(r.owner, (counts.get(r.owner) ?? 0) + 1);
    const mine = counts.get(requester) ?? 0;
    let top: InProcessCoordinator | undefined;
    let most = 0;
    // a member that is gone (a dead worker whose leases wait out their TTL) cannot give one up
    for (const [m, n] of counts) if (m !== requester && this.members.has(m) && n > most) [top, most] = [m, n];
    return top && (mine === 0 || most > mine + 1) ? top : undefined;
  }

  /** @internal */ releaseLease(owner: InProcessCoordinator, mailbox: string, id: string): void {
    const map = this.leases.get(mailbox);
    if (!map?.delete(id)) return;
    if (map.size === 0) this.leases.delete(mailbox);
    this.broadcast(owner, (m) => m.leaseFreed(mailbox));
    owner.leaseFreed(mailbox);
  }

  /** @internal renew, or re-add when it expired meanwhile and there is room; false: lost */
  renewLease(owner: InProcessCoordinator, mailbox: string, id: string, max: number): boolean {
    const map = this.liveLeases(mailbox);
    const r = map.get(id);
    if (r) {
      r.expiresAt = this.now() + this.leaseTtlMs;
      return true;
    }
    return this.acquireLease(owner, mailbox, id, max);
  }

  // --- rate ---

  /** @internal */ rateGate(mailbox: string, limit: number): RateGate {
    const g = this.gates.get(mailbox);
    if (g && g.limit === limit) return g;
    const fresh = new InProcessRateGate(mailbox, limit, this.now);
    this.gates.set(mailbox, fresh);
    return fresh;
  }

  /**
   * Up to `want` of `limit` permits per minute for a batched gate (a worker's), valid `validityMs`;
   * granted 0: retry after `retryAfterMs`.
   */
  grantPermits(
    mailbox: string,
    limit: number,
    want: number,
    validityMs: number,
  ): { granted: number; grantId: string; retryAfterMs: number } {
    let l = this.ledgers.get(mailbox);
    if (!l) this.ledgers.set(mailbox, (l = new PermitLedger()));
    const grantId = `g${++this.grantSeq}`;
    const [granted, retryAfterMs] = l.grant(this.now(), limit, want, WINDOW_MS + validityMs, grantId);
    return { granted, grantId, retryAfterMs };
  }

  /** return the unused permits of a grant: they leave the window at once */
  giveBackPermits(mailbox: string, grantId: string, unused: number): void {
    this.ledgers.get(mailbox)?.giveBack(grantId, unused);
  }

  /** @internal */ forgetMailbox(mailbox: string): void {
    this.gates.delete(mailbox);
    this.ledgers.delete(mailbox);
    this.states.delete(mailbox);
  }

  // --- refresh locks ---

  private liveLock(mailbox: string): LockRecord | undefined {
    const l = this.locks.get(mailbox);
    if (!l) return undefined;
    if (l.expiresAt > this.now()) return l;
    this.endLock(mailbox, l);
    return undefined;
  }

  private endLock(mailbox: string, l: LockRecord): void {
    if (this.locks.get(mailbox) === l) this.locks.delete(mailbox);
    const ws = l.waiters;
    l.waiters = [];
    for (const w of ws) w();
  }

  /** @internal */ acquireLock(owner: string, mailbox: string, ttlMs: number): number | undefined {
    if (this.liveLock(mailbox)) return undefined;
    const fence = (this.fences.get(mailbox) ?? 0) + 1;
    this.fences.set(mailbox, fence);
    this.locks.set(mailbox, { owner, fence, expiresAt: this.now() + ttlMs, waiters: [] });
    return fence;
  }

  /** @internal */ releaseLock(owner: string, mailbox: string, fence: number): void {
    const l = this.locks.get(mailbox);
    if (l && l.owner === owner && l.fence === fence) this.endLock(mailbox, l);
  }

  /** @internal */ releaseLocksOf(owner: string): void {
    for (const [mailbox, l] of this.locks) if (l.owner === owner) this.endLock(mailbox, l);
  }

  /** @internal */ waitForLock(mailbox: string, timeoutMs: number): Promise<void> {
    const l = this.liveLock(mailbox);
    if (!l) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, Math.min(timeoutMs, l.expiresAt - this.now())));
      timer.unref();
      function done() {
        clearTimeout(timer);
        resolve();
      }
      l.waiters.push(done);
    });
  }

  /** @internal */ currentFence(mailbox: string): number {
    return this.fences.get(mailbox) ?? 0;
  }
}

export class InProcessCoordinator implements Coordinator {
  readonly kind = 'in-process';
  private readonly book = new LeaseBook();
  private readonly health_: HealthState;
  private readonly freed: Listeners<[string]>;
  private readonly wanted: Listeners<[string]>;
  /** mailbox -> when this member last announced it wanted a slot (at most every WANTED_EVERY_MS) */
  private readonly wantedAt = new Map<string, number>();
  private readonly accountState: Listeners<[string, string]>;
  private readonly accountsChanged: Listeners<[]>;
  private heartbeat: NodeJS.Timeout | undefined;
  private seq = 0;
  private closed = false;

  constructor(
    private readonly hub: InProcessHub,
    readonly instanceId: string,
  ) {
    const onError = (err: unknown) =>
      hub.log.warn({ err: (err as Error)?.message }, 'coordination: a listener threw');
    this.health_ = new HealthState(onError);
    this.freed = new Listeners(onError);
    this.wanted = new Listeners(onError);
    this.accountState = new Listeners(onError);
    this.accountsChanged = new Listeners(onError);
  }

  async start(): Promise<void> {}

  async close(opts: { release?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopHeartbeat();
    if (opts.release !== false) {
      for (const l of this.book.all()) l.release();
      this.hub.releaseLocksOf(this.instanceId);
    }
    this.hub.detach(this);
  }

  health(): Health {
    return this.health_.get();
  }

  onHealth(listener: (health: Health) => void): Unsubscribe {
    return this.health_.onChange(listener);
  }

  // --- leases ---

  async acquireLease(
    mailbox: string,
    max: number,
    onLost?: (lease: Lease) => void,
  ): Promise<Lease | undefined> {
    if (this.closed) return undefined;
    const id = `${this.instanceId}:${++this.seq}`;
    if (!this.hub.acquireLease(this, mailbox, id, max)) {
      this.announceWanted(mailbox);
      return undefined;
    }
    const lease = new HeldLease(
      mailbox,
      id,
      max,
      (l) => {
        this.book.delete(l);
        this.hub.releaseLease(this, mailbox, id);
      },
      onLost,
    );
    this.book.add(lease);
    this.startHeartbeat();
    return lease;
  }

  onLeaseFreed(listener: (mailbox: string) => void): Unsubscribe {
    return this.freed.add(listener);
  }

  /** @internal */ leaseFreed(mailbox: string): void {
    this.freed.emit(mailbox);
  }

  onLeaseWanted(listener: (mailbox: string) => void): Unsubscribe {
    return this.wanted.add(listener);
  }

  /** a refused acquire: ask the holders to give up an idle connection (a pool retries every 250 ms) */
  private announceWanted(mailbox: string): void {
    const now = this.hub.now();
    if (now - (this.wantedAt.get(mailbox) ?? -Infinity) < WANTED_EVERY_MS) return;
    this.wantedAt.set(mailbox, now);
    const holder = this.hub.wantedFrom(this, mailbox);
    holder?.wanted.emit(mailbox);
  }

  private startHeartbeat(): void {
    if (this.heartbeat || this.closed) return;
    this.heartbeat = setInterval(() => this.renew(), this.hub.heartbeatMs);
    this.heartbeat.unref();
  }

  private stopHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  private renew(): void {
    const all = this.book.all();
    if (all.length === 0) return this.stopHeartbeat();
    for (const l of all) {
      if (this.hub.renewLease(this, l.mailbox, l.id, l.max)) continue;
      this.book.delete(l);
      l.lose();
    }
  }

  // --- rate ---

  rateGate(mailbox: string, limit: number): RateGate {
    return this.hub.rateGate(mailbox, limit);
  }

  // --- access tokens (the store's calls are synchronous; async here so a failure rejects) ---

  async getAccessToken(mailbox: string, lineage?: string): Promise<StoredAccessToken | undefined> {
    return this.hub.store.getAccessToken(mailbox, lineage);
  }

  async putAccessToken(mailbox: string, token: string, expiresAt: number, lineage?: string): Promise<void> {
    this.hub.store.putAccessToken(mailbox, token, expiresAt, lineage);
  }

  async invalidateAccessToken(mailbox: string, token?: string): Promise<void> {
    const store = this.hub.store;
    if (token !== undefined && store.getAccessToken(mailbox)?.token !== token) return;
    store.deleteAccessToken(mailbox);
  }

  // --- refresh ---

  async acquireRefreshLock(mailbox: string, ttlMs: number): Promise<RefreshLock | undefined> {
    const fence = this.hub.acquireLock(this.instanceId, mailbox, ttlMs);
    if (fence === undefined) return undefined;
    const hub = this.hub;
    const owner = this.instanceId;
    return {
      mailbox,
      fence,
      async release() {
        hub.releaseLock(owner, mailbox, fence);
      },
    };
  }

  waitForRefresh(mailbox: string, timeoutMs: number): Promise<void> {
    return this.hub.waitForLock(mailbox, timeoutMs);
  }

  async getRefreshToken(mailbox: string, configured: RefreshLineage): Promise<string | undefined> {
    const store = this.hub.store;
    return configured === undefined
      ? store.getAuthorizedRefreshToken(mailbox)
      : store.getRotatedRefreshToken(mailbox, configured);
  }

  async rotateRefreshToken(mailbox: string, w: RotationWrite): Promise<RotationResult> {
    if (this.hub.currentFence(mailbox) !== w.fence) return 'fenced';
    const store = this.hub.store;
    if (w.configured === undefined) {
      // an authorized token rotates only while it is still the one stored (a new authorization wins)
      if (store.getAuthorizedRefreshToken(mailbox) !== w.used) return 'stale';
      store.putAuthorizedRefreshToken(mailbox, w.next);
      return 'ok';
    }
    const stored = store.getRotatedRefreshToken(mailbox, w.configured);
    // absent: the first rotation of this lineage (or the state was lost): the fence alone decides
    if (stored !== undefined && stored !== w.used) return 'stale';
    store.putRotatedRefreshToken(mailbox, w.configured, w.next);
    return 'ok';
  }

  async putAuthorizedRefreshToken(mailbox: string, refreshToken: string): Promise<void> {
    this.hub.store.putAuthorizedRefreshToken(mailbox, refreshToken);
  }

  // --- account state ---

  async getAccountState(mailbox: string): Promise<StoredAccountState | undefined> {
    return this.hub.states.get(mailbox);
  }

  async setAccountState(mailbox: string, state: string, lastError?: string): Promise<void> {
    this.hub.states.set(mailbox, {
      state,
      ...(lastError !== undefined ? { lastError } : {}),
      updatedAt: this.hub.now(),
    });
    this.hub.broadcast(this, (m) => m.accountState.emit(mailbox, state));
  }

  onAccountState(listener: (mailbox: string, state: string) => void): Unsubscribe {
    return this.accountState.add(listener);
  }

  async deleteAccount(mailbox: string): Promise<void> {
    this.hub.store.deleteAccount(mailbox);
    this.hub.forgetMailbox(mailbox);
  }

  // --- admin changes ---

  announceAccountsChanged(): void {
    this.hub.broadcast(this, (m) => m.accountsChanged.emit());
  }

  onAccountsChanged(listener: () => void): Unsubscribe {
    return this.accountsChanged.add(listener);
  }
}

/** The proxy's default: a hub with one member. */
export function createInProcessCoordinator(opts: InProcessOptions): InProcessCoordinator {
  return new InProcessHub(opts).member();
}
