// The coordinator of a worker process (serve --workers N): the shared state is the primary's
// InProcessHub; every call is a message over the cluster IPC channel to the primary's IpcHost, which
// drives one hub member per worker. The rate check stays synchronous: the worker's BatchedRateGate
// spends permits granted in batches by the hub (one round trip per batch, not per message).
//
// Leases live in the hub and are renewed there by the worker's member (the primary is alive as long
// as anything is); when a worker dies the primary sees it exit and closes its member with release,
// so its slots return at once, not after the lease TTL. A lease the hub takes back is pushed to the
// worker as lease-lost, so onLost works as with the other coordinators.
import cluster from 'node:cluster';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../shared/log.js';
import { BatchedRateGate, type QuotaGrant, type QuotaSource } from './batched-rate.js';
import { HealthState } from './health.js';
import type { InProcessCoordinator, InProcessHub } from './in-process.js';
import type { IpcChannel } from './ipc-channel.js';
import { HeldLease, LeaseBook } from './lease.js';
import { Listeners } from './listeners.js';
import { localShare } from './local-share.js';
import {
  SHARED_STATE_UNREACHABLE,
  SharedStateUnavailable,
  type Coordinator,
  type Health,
  type Lease,
  type RateGate,
  type RefreshLineage,
  type RefreshLock,
  type RotationResult,
  type RotationWrite,
  type StoredAccessToken,
  type StoredAccountState,
  type Unsubscribe,
} from './types.js';

// --- the protocol (plain JSON; undefined members are dropped on the way, which reads back as undefined)

/** worker -> primary, answered by a reply with the same id */
export interface IpcRequest {
  xoc: 'req';
  id: number;
  op: keyof typeof OPS;
  a: Record<string, unknown>;
}
/** worker -> primary, no reply (releases, give-backs, announcements) */
export interface IpcCast {
  xoc: 'cast';
  op: 'unlease' | 'giveBack' | 'announce';
  a: Record<string, unknown>;
}
export interface IpcReply {
  xoc: 'res';
  id: number;
  v?: unknown;
  err?: { name: string; message: string };
}
/** primary -> worker */
export type IpcEvent =
  | { xoc: 'ev'; kind: 'lease-freed'; mailbox: string }
  | { xoc: 'ev'; kind: 'lease-lost'; id: string }
  | { xoc: 'ev'; kind: 'lease-wanted'; mailbox: string }
  | { xoc: 'ev'; kind: 'account-state'; mailbox: string; state: string }
  | { xoc: 'ev'; kind: 'accounts-changed' }
  | { xoc: 'ev'; kind: 'health'; health: Health };

type A = Record<string, any>;

/** The host's side of each request: what the worker's member does with it. */
const OPS = {
  lease: async (e: Endpoint, a: A) => e.acquireLease(a.mailbox, a.max),
  grant: async (e: Endpoint, a: A) => e.hub.grantPermits(a.mailbox, a.limit, a.want, a.validityMs),
  getAccessToken: (e: Endpoint, a: A) => e.member.getAccessToken(a.mailbox, a.lineage),
  putAccessToken: (e: Endpoint, a: A) => e.member.putAccessToken(a.mailbox, a.token, a.expiresAt, a.lineage),
  invalidateAccessToken: (e: Endpoint, a: A) => e.member.invalidateAccessToken(a.mailbox, a.token),
  lock: async (e: Endpoint, a: A) => e.acquireLock(a.mailbox, a.ttlMs),
  unlock: async (e: Endpoint, a: A) => e.releaseLock(a.mailbox, a.fence),
  waitForRefresh: (e: Endpoint, a: A) => e.member.waitForRefresh(a.mailbox, a.timeoutMs),
  getRefreshToken: (e: Endpoint, a: A) => e.member.getRefreshToken(a.mailbox, a.configured),
  rotateRefreshToken: (e: Endpoint, a: A) => e.member.rotateRefreshToken(a.mailbox, a.write),
  putAuthorizedRefreshToken: (e: Endpoint, a: A) => e.member.putAuthorizedRefreshToken(a.mailbox, a.token),
  getAccountState: (e: Endpoint, a: A) => e.member.getAccountState(a.mailbox),
  setAccountState: (e: Endpoint, a: A) => e.member.setAccountState(a.mailbox, a.state, a.lastError),
  deleteAccount: (e: Endpoint, a: A) => e.member.deleteAccount(a.mailbox),
  close: (e: Endpoint, a: A) => e.close({ release: a.release !== false }),
} satisfies Record<string, (e: Endpoint, a: A) => Promise<unknown>>;

const isMsg = (m: unknown): m is { xoc: string } =>
  typeof m === 'object' && m !== null && typeof (m as { xoc?: unknown }).xoc === 'string';

// --- the primary's side ----------------------------------------------------------------------

/** One worker's member of the hub, driven by that worker's messages. */
class Endpoint {
  readonly member: InProcessCoordinator;
  private readonly leases = new Map<string, Lease>();
  private readonly locks = new Map<string, RefreshLock>();
  private readonly unsubs: Unsubscribe[] = [];
  private closed: Promise<void> | undefined;

  constructor(
    readonly hub: InProcessHub,
    private readonly channel: IpcChannel,
    instanceId: string,
    private readonly log: Logger,
  ) {
    this.member = hub.member(instanceId);
    const ev = (e: IpcEvent) => channel.send(e);
    this.unsubs.push(
      this.member.onLeaseFreed((mailbox) => ev({ xoc: 'ev', kind: 'lease-freed', mailbox })),
      this.member.onLeaseWanted((mailbox) => ev({ xoc: 'ev', kind: 'lease-wanted', mailbox })),
      this.member.onAccountState((mailbox, state) =>
        ev({ xoc: 'ev', kind: 'account-state', mailbox, state }),
      ),
      this.member.onAccountsChanged(() => ev({ xoc: 'ev', kind: 'accounts-changed' })),
      this.member.onHealth((health) => ev({ xoc: 'ev', kind: 'health', health })),
      channel.onMessage((m) => this.handle(m)),
    );
  }

  private handle(m: unknown): void {
    if (!isMsg(m) || this.closed) return;
    if (m.xoc === 'cast') return this.cast(m as IpcCast);
    if (m.xoc !== 'req') return;
    const { id, op, a } = m as IpcRequest;
    const fn = OPS[op] as ((e: Endpoint, a: A) => Promise<unknown>) | undefined;
    const reply = (r: Omit<IpcReply, 'xoc' | 'id'>) => this.channel.send({ xoc: 'res', id, ...r });
    if (!fn) return reply({ err: { name: 'Error', message: `coordination: unknown request ${String(op)}` } });
    let p: Promise<unknown>;
    try {
      p = fn(this, a ?? {});
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (v) => reply({ v }),
      (err: unknown) => {
        const e = err instanceof Error ? err : new Error(String(err));
        reply({ err: { name: e.name, message: e.message } });
      },
    );
  }

  private cast(m: IpcCast): void {
    const a = m.a ?? {};
    if (m.op === 'unlease') {
      const l = this.leases.get(a.id as string);
      this.leases.delete(a.id as string);
      l?.release();
    } else if (m.op === 'giveBack') {
      this.hub.giveBackPermits(a.mailbox as string, a.grantId as string, a.unused as number);
    } else if (m.op === 'announce') {
      this.member.announceAccountsChanged();
    }
  }

  async acquireLease(mailbox: string, max: number): Promise<string | undefined> {
    const lease = await this.member.acquireLease(mailbox, max, (l) => {
      this.leases.delete(l.id);
      this.channel.send({ xoc: 'ev', kind: 'lease-lost', id: l.id } satisfies IpcEvent);
    });
    if (!lease) return undefined;
    this.leases.set(lease.id, lease);
    return lease.id;
  }

  async acquireLock(mailbox: string, ttlMs: number): Promise<number | undefined> {
    const lock = await this.member.acquireRefreshLock(mailbox, ttlMs);
    if (!lock) return undefined;
    this.locks.set(`${mailbox}\0${lock.fence}`, lock);
    return lock.fence;
  }

  async releaseLock(mailbox: string, fence: number): Promise<void> {
    const key = `${mailbox}\0${fence}`;
    const lock = this.locks.get(key);
    this.locks.delete(key);
    await lock?.release();
  }

  /** the worker closed its coordinator, or (release: true) the worker is gone */
  close(opts: { release: boolean }): Promise<void> {
    this.closed ??= (async () => {
      for (const u of this.unsubs) u();
      await this.member.close(opts);
      this.leases.clear();
      this.locks.clear();
      this.log.debug(
        { instance: this.member.instanceId, release: opts.release },
        'coordination: worker detached',
      );
    })();
    return this.closed;
  }
}

/** The primary's half: one hub member per worker channel. */
export class IpcHost {
  private readonly endpoints = new Map<string, Endpoint>();

  constructor(
    readonly hub: InProcessHub,
    private readonly log: Logger,
  ) {}

  /**
   * Serve a worker's coordinator on `channel` as hub member `instanceId`. Call the returned close
   * when the worker exits (release: its leases and locks return at once).
   */
  attach(channel: IpcChannel, instanceId: string): { close(opts?: { release?: boolean }): Promise<void> } {
    this.endpoints
      .get(instanceId)
      ?.close({ release: true })
      .catch(() => undefined);
    const e = new Endpoint(this.hub, channel, instanceId, this.log);
    this.endpoints.set(instanceId, e);
    return {
      close: async (opts = {}) => {
        if (this.endpoints.get(instanceId) === e) this.endpoints.delete(instanceId);
        await e.close({ release: opts.release !== false });
      },
    };
  }

  /** members served now (status, tests) */
  get workers(): string[] {
    return [...this.endpoints.keys()];
  }

  async close(): Promise<void> {
    await Promise.all([...this.endpoints.values()].map((e) => e.close({ release: true })));
    this.endpoints.clear();
  }
}

// --- the worker's side -----------------------------------------------------------------------

export interface IpcCoordinatorOptions {
  channel: IpcChannel;
  log: Logger;
  /** the workers sharing the mailboxes: each one's share of a limit if the primary cannot be reached */
  instances: number;
  /** default `worker:<cluster worker id>` (the id the primary gives its member) */
  instanceId?: string;
  /** default 10 s: the primary is on this host; a request longer than this has gone astray */
  requestTimeoutMs?: number;
  /** how long a batch of rate permits may be spent; default 1 s */
  rateValidityMs?: number;
  /** the most permits one batch takes; default 64 */
  rateMaxBatch?: number;
}

interface Pending {
  resolve(v: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
  what: string;
}

function remoteError(err: { name: string; message: string }): Error {
  const e = new Error(err.message);
  e.name = err.name;
  if (err.name === 'SharedStateUnavailable') Object.assign(e, { code: 'SHARED_STATE_UNREACHABLE' });
  return e;
}

export class IpcCoordinator implements Coordinator, QuotaSource {
  readonly kind = 'ipc';
  readonly instanceId: string;
  private readonly channel: IpcChannel;
  private readonly opts: IpcCoordinatorOptions;
  private readonly requestTimeoutMs: number;
  private readonly book = new LeaseBook();
  private readonly byId = new Map<string, HeldLease>();
  private readonly gates = new Map<string, BatchedRateGate>();
  private readonly pending = new Map<number, Pending>();
  private readonly health_: HealthState;
  private readonly freed: Listeners<[string]>;
  private readonly wanted: Listeners<[string]>;
  private readonly accountState: Listeners<[string, string]>;
  private readonly accountsChanged: Listeners<[]>;
  private readonly unsubs: Unsubscribe[] = [];
  private seq = 0;
  private closing = false;
  private gone = false;

  constructor(opts: IpcCoordinatorOptions) {
    if (!(opts.instances >= 1)) throw new Error('coordination: instances must be at least 1');
    this.opts = opts;
    this.channel = opts.channel;
    this.instanceId = opts.instanceId ?? `worker:${cluster.worker?.id ?? process.pid}`;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 10_000;
    const onError = (err: unknown) =>
      opts.log.warn({ err: (err as Error)?.message }, 'coordination: a listener threw');
    this.health_ = new HealthState(onError);
    this.freed = new Listeners(onError);
    this.wanted = new Listeners(onError);
    this.accountState = new Listeners(onError);
    this.accountsChanged = new Listeners(onError);
    this.unsubs.push(
      this.channel.onMessage((m) => this.onMessage(m)),
      this.channel.onClose(() => this.lostPrimary()),
    );
    if (!this.channel.connected) this.lostPrimary();
  }

  async start(): Promise<void> {}

  async close(opts: { release?: boolean } = {}): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const g of this.gates.values()) g.close();
    this.gates.clear();
    // the primary releases them all with the member; locally they are released without a message each
    for (const l of this.book.all()) l.release();
    this.byId.clear();
    if (!this.gone) {
      await this.request('close', { release: opts.release !== false }, 'close').catch(() => undefined);
    }
    for (const u of this.unsubs) u();
    this.failPending('close');
  }

  health(): Health {
    return this.health_.get();
  }

  onHealth(listener: (health: Health) => void): Unsubscribe {
    return this.health_.onChange(listener);
  }

  // --- the channel ---

  private request<T>(
    op: IpcRequest['op'],
    a: Record<string, unknown>,
    what: string,
    timeoutMs?: number,
  ): Promise<T> {
    if (this.gone) return Promise.reject(new SharedStateUnavailable(what));
    const id = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new SharedStateUnavailable(`${what} (no answer from the primary)`));
      }, timeoutMs ?? this.requestTimeoutMs);
      timer.unref();
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer, what });
      this.channel.send({ xoc: 'req', id, op, a } satisfies IpcRequest);
    });
  }

  private cast(op: IpcCast['op'], a: Record<string, unknown>): void {
    if (!this.gone) this.channel.send({ xoc: 'cast', op, a } satisfies IpcCast);
  }

  private onMessage(m: unknown): void {
    if (!isMsg(m)) return;
    if (m.xoc === 'res') {
      const r = m as IpcReply;
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      clearTimeout(p.timer);
      if (r.err) p.reject(remoteError(r.err));
      else p.resolve(r.v);
      return;
    }
    if (m.xoc !== 'ev') return;
    const e = m as IpcEvent;
    switch (e.kind) {
      case 'lease-freed':
        return this.freed.emit(e.mailbox);
      case 'lease-wanted':
        return this.wanted.emit(e.mailbox);
      case 'lease-lost': {
        const l = this.byId.get(e.id);
        if (!l) return;
        this.byId.delete(e.id);
        this.book.delete(l);
        return l.lose();
      }
      case 'account-state':
        return this.accountState.emit(e.mailbox, e.state);
      case 'accounts-changed':
        return this.accountsChanged.emit();
      case 'health':
        // the hub's own health (always ok today); ours also says whether the primary is there
        if (!this.gone) {
          if (e.health.state === 'ok') this.health_.recover();
          else this.health_.degrade(e.health.reason);
        }
    }
  }

  private failPending(what: string): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(new SharedStateUnavailable(`${p.what} (${what})`));
    }
  }

  /** The primary is gone (it exited, or the channel broke): the worker is on its own until it exits. */
  private lostPrimary(): void {
    if (this.gone) return;
    this.gone = true;
    this.health_.degrade(SHARED_STATE_UNREACHABLE);
    this.failPending('the primary is gone');
    // its slots in the hub are gone with the primary; the connections finish their message and retire
    for (const l of this.book.all()) {
      this.book.delete(l);
      this.byId.delete(l.id);
      l.lose();
    }
  }

  // --- leases ---

  async acquireLease(
    mailbox: string,
    max: number,
    onLost?: (lease: Lease) => void,
  ): Promise<Lease | undefined> {
    if (this.closing || this.gone) return undefined;
    let id: string | undefined;
    try {
      id = await this.request<string | undefined>('lease', { mailbox, max }, 'take a connection lease');
    } catch (err) {
      if (err instanceof Error && err.name === 'SharedStateUnavailable') return undefined;
      throw err;
    }
    if (id === undefined) return undefined;
    const lease = new HeldLease(
      mailbox,
      id,
      max,
      (l) => {
        this.book.delete(l);
        this.byId.delete(l.id);
        if (!this.closing) this.cast('unlease', { id: l.id });
      },
      onLost,
    );
    if (this.closing || this.gone) {
      // closed while the request was out: give the slot straight back
      this.cast('unlease', { id });
      return undefined;
    }
    this.book.add(lease);
    this.byId.set(id, lease);
    return lease;
  }

  onLeaseFreed(listener: (mailbox: string) => void): Unsubscribe {
    return this.freed.add(listener);
  }

  onLeaseWanted(listener: (mailbox: string) => void): Unsubscribe {
    return this.wanted.add(listener);
  }

  // --- rate ---

  rateGate(mailbox: string, limit: number): RateGate {
    const g = this.gates.get(mailbox);
    if (g && g.limit === limit) return g;
    g?.close();
    const fresh = new BatchedRateGate(mailbox, limit, this, {
      share: localShare(limit, this.opts.instances),
      validityMs: this.opts.rateValidityMs ?? 1000,
      maxBatch: this.opts.rateMaxBatch ?? 64,
      now: () => performance.now(),
    });
    this.gates.set(mailbox, fresh);
    return fresh;
  }

  get reachable(): boolean {
    return !this.gone;
  }

  grant(mailbox: string, limit: number, want: number, validityMs: number): Promise<QuotaGrant> {
    return this.request<QuotaGrant>('grant', { mailbox, limit, want, validityMs }, 'take rate permits');
  }

  giveBack(mailbox: string, grantId: string, unused: number): void {
    this.cast('giveBack', { mailbox, grantId, unused });
  }

  // --- access tokens ---

  getAccessToken(mailbox: string, lineage?: string): Promise<StoredAccessToken | undefined> {
    return this.request('getAccessToken', { mailbox, lineage }, 'read the access token');
  }

  putAccessToken(mailbox: string, token: string, expiresAt: number, lineage?: string): Promise<void> {
    return this.request('putAccessToken', { mailbox, token, expiresAt, lineage }, 'cache the access token');
  }

  invalidateAccessToken(mailbox: string, token?: string): Promise<void> {
    return this.request('invalidateAccessToken', { mailbox, token }, 'invalidate the access token');
  }

  // --- refresh ---

  async acquireRefreshLock(mailbox: string, ttlMs: number): Promise<RefreshLock | undefined> {
    const fence = await this.request<number | undefined>('lock', { mailbox, ttlMs }, 'take the refresh lock');
    if (fence === undefined) return undefined;
    let released: Promise<void> | undefined;
    return {
      mailbox,
      fence,
      release: () =>
        (released ??= this.request<void>('unlock', { mailbox, fence }, 'release the refresh lock').catch(
          () => undefined, // the primary is gone: so is the lock
        )),
    };
  }

  async waitForRefresh(mailbox: string, timeoutMs: number): Promise<void> {
    await this.request(
      'waitForRefresh',
      { mailbox, timeoutMs },
      'wait for a refresh',
      timeoutMs + this.requestTimeoutMs,
    ).catch(
      () => undefined, // as a wait that timed out: the caller looks again
    );
  }

  getRefreshToken(mailbox: string, configured: RefreshLineage): Promise<string | undefined> {
    return this.request('getRefreshToken', { mailbox, configured }, 'read the refresh token');
  }

  rotateRefreshToken(mailbox: string, write: RotationWrite): Promise<RotationResult> {
    return this.request('rotateRefreshToken', { mailbox, write }, 'store the rotated refresh token');
  }

  putAuthorizedRefreshToken(mailbox: string, refreshToken: string): Promise<void> {
    return this.request(
      'putAuthorizedRefreshToken',
      { mailbox, token: refreshToken },
      'store the authorization',
    );
  }

  // --- account state ---

  getAccountState(mailbox: string): Promise<StoredAccountState | undefined> {
    return this.request('getAccountState', { mailbox }, 'read the account state');
  }

  setAccountState(mailbox: string, state: string, lastError?: string): Promise<void> {
    return this.request('setAccountState', { mailbox, state, lastError }, 'store the account state');
  }

  onAccountState(listener: (mailbox: string, state: string) => void): Unsubscribe {
    return this.accountState.add(listener);
  }

  deleteAccount(mailbox: string): Promise<void> {
    return this.request('deleteAccount', { mailbox }, 'delete the account');
  }

  // --- admin changes ---

  announceAccountsChanged(): void {
    this.cast('announce', {});
  }

  onAccountsChanged(listener: () => void): Unsubscribe {
    return this.accountsChanged.add(listener);
  }
}
