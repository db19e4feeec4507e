// The coordinator for instances on several hosts: the shared state lives in Redis (state.redis).
// Guarantees and their limits during a partition: src/coordination/README.md.
//
// - Leases: a sorted set per mailbox scored by expiry; the heartbeat renews this instance's leases
//   in one script per mailbox, so a dead instance's slots return after the TTL.
// - Rates: permits taken in batches ahead (batched-rate.ts); no round trip per message.
// - Tokens: access tokens and rotated refresh tokens sealed as in the embedded store; one refresh
//   lock per mailbox with a fence that rises with every grant; a rotation is a compare-and-set that
//   checks both the token used and the fence, so it never forks. A rotation that cannot be written
//   (Redis unreachable after the provider answered) is kept locally and written, by the same
//   compare-and-set, before the heartbeat declares Redis reachable again.
// - Unreachable: degraded at once; leases and rates fall back to this instance's share, tokens to
//   the ones cached here; refreshes wait (SharedStateUnavailable), a rotation the provider already
//   made is kept (above). When Redis answers again the heartbeat re-registers the leases held,
//   writes what was kept back, wakes refreshes waiting for a lock that may be gone, and tells the
//   proxy to reload (events of the outage were missed).
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../shared/log.js';
import { fingerprint } from '../state/crypto.js';
import type { StateStore } from '../state/store.js';
import { BatchedRateGate, type QuotaGrant, type QuotaSource } from './batched-rate.js';
import { HeldLease, LeaseBook } from './lease.js';
import { Listeners } from './listeners.js';
import { localShare } from './local-share.js';
import { RedisKeys } from './redis-keys.js';
import { RedisLink } from './redis-link.js';
import { Sealer, newSalt } from './sealing.js';
import { WINDOW_MS } from './sliding-window.js';
import {
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

export interface RedisCoordinatorOptions {
  /** redis://[user:pass@]host:port/db */
  url: string;
  /** state.secretKey: the same on every instance (secrets are sealed with a key derived from it) */
  secretKey: string;
  /** how many instances share the mailboxes: each one's share of a limit while Redis is unreachable */
  instances: number;
  log: Logger;
  /** default 'xoauth2-proxy:' */
  keyPrefix?: string;
  /** rotated refresh tokens are also written here, and read from here when Redis has lost them */
  local?: StateStore;
  /** default 30 s: a dead instance's connection slots return within this */
  leaseTtlMs?: number;
  /** default a third of the lease TTL */
  heartbeatMs?: number;
  /** how often to try Redis again while degraded; default 1 s */
  probeMs?: number;
  /** default 2 s: a Redis that does not answer within this counts as unreachable */
  commandTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** how long a batch of rate permits may be spent; default 1 s */
  rateValidityMs?: number;
  /** the most permits one batch takes; default 64 */
  rateMaxBatch?: number;
  instanceId?: string;
}

/** the key check in Redis does not open under this instance's state.secretKey */
export class SecretKeyMismatch extends Error {
  readonly code = 'SECRET_KEY_MISMATCH';
  constructor() {
    super(
      'state.secretKey differs from the key the other instances use with this Redis (state.redis); ' +
        'every instance must have the same state.secretKey',
    );
    this.name = 'SecretKeyMismatch';
  }
}

/** a refused acquire is announced at most this often per mailbox */
const WANTED_EVERY_MS = 100;

type Event =
  | { kind: 'lease-freed'; from: string; mailbox: string }
  /** `from` was refused a slot of `mailbox`; `to` holds more than its part and should give one up */
  | { kind: 'lease-wanted'; from: string; mailbox: string; to: string }
  | { kind: 'refresh-done'; from: string; mailbox: string }
  | { kind: 'account-state'; from: string; mailbox: string; state: string }
  | { kind: 'accounts-changed'; from: string };

/** what the refresh hash's `origin` holds: as the embedded store's refresh_origin column */
function originOf(configured: RefreshLineage): string {
  return configured === undefined ? 'authorized' : fingerprint(configured);
}

interface LocalToken {
  token: string;
  expiresAt: number;
  lineage: string | undefined;
}

export class RedisCoordinator implements Coordinator, QuotaSource {
  readonly kind = 'redis';
  readonly instanceId: string;
  private readonly opts: RedisCoordinatorOptions;
  private readonly log: Logger;
  private readonly keys: RedisKeys;
  private readonly link: RedisLink;
  private readonly leaseTtlMs: number;
  private readonly heartbeatMs: number;
  private readonly probeMs: number;
  private readonly rateValidityMs: number;
  private readonly rateMaxBatch: number;
  private sealer: Sealer | undefined;
  private readonly book = new LeaseBook();
  private readonly gates = new Map<string, BatchedRateGate>();
  private readonly tokens = new Map<string, LocalToken>();
  private readonly states = new Map<string, StoredAccountState>();
  /** written while Redis was unreachable: sent on recovery */
  private readonly pendingStates = new Set<string>();
  private readonly pendingDeletes = new Set<string>();
  /** rotations the provider made while Redis could not take them: written before recovering */
  private readonly pendingRotations = new Map<string, RotationWrite>();
  /** access tokens got while Redis could not take them (their refresh was already made) */
  private readonly pendingTokens = new Set<string>();
  private pendingAnnounce = false;
  private readonly refreshWaiters = new Map<string, Set<() => void>>();
  private readonly freed: Listeners<[string]>;
  private readonly wanted: Listeners<[string]>;
  private readonly refreshDone: Listeners<[string]>;
  /** mailbox -> when this instance last announced it wanted a slot (at most every WANTED_EVERY_MS) */
  private readonly wantedAt = new Map<string, number>();
  private readonly accountState: Listeners<[string, string]>;
  private readonly accountsChanged: Listeners<[]>;
  /** monotonic ms when the last successful renewal was sent: our leases in Redis last until this + TTL */
  private renewedAt = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private unusable = false;
  private seq = 0;
  private closed = false;

  constructor(opts: RedisCoordinatorOptions) {
    if (!(opts.instances >= 1)) throw new Error('coordination: instances must be at least 1');
    this.opts = opts;
    this.log = opts.log;
    this.instanceId = opts.instanceId ?? `${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.keys = new RedisKeys(opts.keyPrefix ?? 'xoauth2-proxy:');
    this.leaseTtlMs = opts.leaseTtlMs ?? 30_000;
    this.heartbeatMs = opts.heartbeatMs ?? Math.max(10, Math.floor(this.leaseTtlMs / 3));
    this.probeMs = opts.probeMs ?? 1_000;
    this.rateValidityMs = opts.rateValidityMs ?? 1_000;
    this.rateMaxBatch = opts.rateMaxBatch ?? 64;
    const onError = (err: unknown) =>
      this.log.warn({ err: (err as Error)?.message }, 'coordination: a listener threw');
    this.freed = new Listeners(onError);
    this.wanted = new Listeners(onError);
    this.refreshDone = new Listeners(onError);
    this.accountState = new Listeners(onError);
    this.accountsChanged = new Listeners(onError);
    this.link = new RedisLink({
      url: opts.url,
      commandTimeoutMs: opts.commandTimeoutMs ?? 2_000,
      connectTimeoutMs: opts.connectTimeoutMs ?? opts.commandTimeoutMs ?? 2_000,
      channel: this.keys.events,
      log: this.log,
      onMessage: (m) => this.onEvent(m),
      onReady: () => void this.beat(),
    });
    this.link.health.onChange((h) => {
      if (h.state === 'degraded') this.schedule();
    });
  }

  /** Connects; when Redis cannot be reached the coordinator starts degraded and keeps trying. */
  async start(): Promise<void> {
    if (await this.link.connect()) await this.beat();
    if (this.unusable) throw new SecretKeyMismatch();
    this.schedule();
  }

  async close(opts: { release?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    if (opts.release !== false) {
      for (const g of this.gates.values()) g.close();
      const releases = this.book.all().map((l) => this.releaseInRedis(l));
      await Promise.allSettled(releases);
    }
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.beating?.catch(() => undefined);
    await this.link.close();
  }

  health(): Health {
    return this.link.health.get();
  }

  onHealth(listener: (health: Health) => void): Unsubscribe {
    return this.link.health.onChange(listener);
  }

  private get ok(): boolean {
    return this.link.health.ok && !this.closed;
  }

  // --- heartbeat -------------------------------------------------------------------------------

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.closed) return;
    this.timer = setTimeout(() => void this.beat(), this.ok ? this.heartbeatMs : this.probeMs);
    this.timer.unref();
  }

  /** renew the leases (and check Redis is there); recover from degraded when it answers */
  private beat(): Promise<void> {
    if (this.beating || this.closed) return this.beating ?? Promise.resolve();
    const run = async () => {
      try {
        const wasDegraded = !this.link.health.ok;
        if (wasDegraded || !this.sealer) await this.ensureMeta();
        // before anyone here (or elsewhere, as far as it can be helped) refreshes from Redis again
        if (wasDegraded) {
          await this.writePendingRotations();
          await this.writePendingTokens();
        }
        const sentAt = performance.now();
        await this.renewAll();
        this.renewedAt = sentAt;
        this.link.health.recover();
        if (wasDegraded) await this.recovered();
      } catch (err) {
        if (err instanceof SecretKeyMismatch) {
          this.unusable = true;
          this.log.error({ err: err.message }, 'shared state unusable');
          this.link.health.degrade('shared state unusable: state.secretKey differs from the other instances');
        } else if (!(err instanceof SharedStateUnavailable)) {
          this.log.error({ err: (err as Error).message }, 'coordination heartbeat failed');
        }
        this.shrinkToShare();
      }
    };
    this.beating = run().finally(() => {
      this.beating = undefined;
      this.schedule();
    });
    return this.beating;
  }

  /** the salt and key check beside the data (again after a Redis that lost its data) */
  private async ensureMeta(): Promise<void> {
    const meta = this.keys.meta;
    const salt = this.sealer?.salt ?? newSalt();
    const stored = await this.link.run('read the key salt', async (r) => {
      await r.hsetnx(meta, 'kdf_salt', salt);
      return r.hgetBuffer(meta, 'kdf_salt');
    });
    if (!stored) throw new SharedStateUnavailable('read the key salt');
    // deriving the key takes about 0.1 s (synchronous): at start and when the salt changed only
    if (!this.sealer || !this.sealer.salt.equals(stored))
      this.sealer = new Sealer(this.opts.secretKey, stored);
    const sealer = this.sealer;
    const check = await this.link.run('read the key check', async (r) => {
      await r.hsetnx(meta, 'key_check', sealer.keyCheck());
      return r.hgetBuffer(meta, 'key_check');
    });
    if (!check || !sealer.verifies(check)) throw new SecretKeyMismatch();
    this.unusable = false;
  }

  private async renewAll(): Promise<void> {
    const groups = this.book.groups();
    if (groups.length === 0) {
      await this.link.run('ping', (r) => r.ping());
      return;
    }
    let readded = 0;
    await Promise.all(
      groups.map(async ([mailbox, leases]) => {
        const max = leases[leases.length - 1]!.max;
        const out = await this.link.script<(number | string)[]>(
          'xoLeaseRenew',
          [this.keys.mailbox(mailbox).leases],
          [max, this.leaseTtlMs, ...leases.map((l) => l.id)],
        );
        readded += Number(out[0]);
        const lost = new Set(out.slice(1).map(String));
        for (const l of leases) if (lost.has(l.id)) this.lose(l, 'its slot went to another instance');
      }),
    );
    if (readded > 0) this.log.info({ leases: readded }, 'connection leases re-established in shared state');
  }

  /**
   * Degraded past the lease TTL: Redis (or the other instances) no longer count our leases, so
   * hold no more than this instance's share; the newest go first.
   */
  private shrinkToShare(): void {
    if (this.ok || performance.now() - this.renewedAt < this.leaseTtlMs) return;
    for (const [, leases] of this.book.groups()) {
      const share = localShare(leases[leases.length - 1]!.max, this.opts.instances);
      for (let i = leases.length - 1; i >= share; i--) this.lose(leases[i]!, 'over the local share');
    }
  }

  private lose(l: HeldLease, why: string): void {
    this.book.delete(l);
    this.log.warn({ mailbox: l.mailbox, why }, 'connection lease lost: its connection retires');
    l.lose();
  }

  /** Redis answers again: send what was kept back, and have the proxy reload what it missed */
  private async recovered(): Promise<void> {
    this.log.info('shared state reachable: sharing resumed');
    // refreshes waiting for a lock taken before the outage: it may be gone (a Redis that lost its
    // data, or a release that could not be sent) and its end announced nowhere; they look again
    for (const mailbox of [...this.refreshWaiters.keys()]) this.wakeRefreshWaiters(mailbox);
    for (const mailbox of [...this.pendingDeletes]) {
      this.pendingDeletes.delete(mailbox);
      await this.deleteInRedis(mailbox).catch(() => this.pendingDeletes.add(mailbox));
    }
    for (const mailbox of [...this.pendingStates]) {
      const s = this.states.get(mailbox);
      this.pendingStates.delete(mailbox);
      if (s) await this.writeState(mailbox, s).catch(() => this.pendingStates.add(mailbox));
    }
    if (this.pendingAnnounce) {
      this.pendingAnnounce = false;
      this.announceAccountsChanged();
    }
    this.accountsChanged.emit();
  }

  // --- events ----------------------------------------------------------------------------------

  private publish(e: Event): Promise<unknown> {
    return this.link.run('publish', (r) => r.publish(this.keys.events, JSON.stringify(e)));
  }

  private onEvent(message: string): void {
    let e: Event;
    try {
      e = JSON.parse(message) as Event;
    } catch {
      return;
    }
    const mine = e.from === this.instanceId;
    switch (e.kind) {
      case 'lease-freed':
        if (!mine) this.freed.emit(e.mailbox);
        break;
      case 'lease-wanted':
        if (e.to === this.instanceId) this.wanted.emit(e.mailbox);
        break;
      case 'refresh-done':
        this.wakeRefreshWaiters(e.mailbox);
        if (!mine) this.refreshDone.emit(e.mailbox);
        break;
      case 'account-state':
        if (!mine) this.accountState.emit(e.mailbox, e.state);
        break;
      case 'accounts-changed':
        if (!mine) this.accountsChanged.emit();
        break;
    }
  }

  // --- leases ----------------------------------------------------------------------------------

  async acquireLease(
    mailbox: string,
    max: number,
    onLost?: (lease: Lease) => void,
  ): Promise<Lease | undefined> {
    if (this.closed) return undefined;
    const id = `${this.instanceId}:${++this.seq}`;
    if (this.ok) {
      try {
        const got = await this.link.script<number>(
          'xoLeaseAcquire',
          [this.keys.mailbox(mailbox).leases],
          [id, max, this.leaseTtlMs],
        );
        if (got === 1) return this.issue(mailbox, id, max, onLost);
        this.announceWanted(mailbox);
        return undefined;
      } catch (err) {
        if (!(err instanceof SharedStateUnavailable)) throw err;
      }
    }
    // unreachable: this instance's share; the heartbeat registers it in Redis when it is back
    if (this.book.count(mailbox) >= localShare(max, this.opts.instances)) return undefined;
    return this.issue(mailbox, id, max, onLost);
  }

  private issue(mailbox: string, id: string, max: number, onLost?: (lease: Lease) => void): Lease {
    const lease = new HeldLease(mailbox, id, max, (l) => this.release(l), onLost);
    this.book.add(lease);
    return lease;
  }

  private release(l: HeldLease): void {
    this.book.delete(l);
    this.freed.emit(l.mailbox);
    // unreachable: the slot returns when its TTL ends
    if (this.ok) void this.releaseInRedis(l).catch(() => undefined);
  }

  private releaseInRedis(l: HeldLease): Promise<unknown> {
    const event: Event = { kind: 'lease-freed', from: this.instanceId, mailbox: l.mailbox };
    return this.link.script(
      'xoLeaseRelease',
      [this.keys.mailbox(l.mailbox).leases],
      [l.id, this.keys.events, JSON.stringify(event)],
    );
  }

  onLeaseWanted(listener: (mailbox: string) => void): Unsubscribe {
    return this.wanted.add(listener);
  }

  /**
   * Refused a slot: ask the instance holding the most of them to give one up, if this one holds none
   * or it holds two more (a fair split is left alone), as the in-process hub does. Lease ids are
   * `<instance id>:<seq>`; a lapsed lease still in the set only makes the choice approximate.
   */
  private announceWanted(mailbox: string): void {
    const now = Date.now();
    if (now - (this.wantedAt.get(mailbox) ?? -Infinity) < WANTED_EVERY_MS) return;
    this.wantedAt.set(mailbox, now);
    if (this.wantedAt.size > 10_000) this.wantedAt.clear();
    const key = this.keys.mailbox(mailbox).leases;
    void this.link
      .run('read the leases', (r) => r.zrange(key, 0, -1))
      .then((ids) => {
        const counts = new Map<string, number>();
        for (const id of ids) {
          const owner = id.slice(0, id.lastIndexOf(':'));
          counts.set(owner, (counts.get(owner) ?? 0) + 1);
        }
        const mine = counts.get(this.instanceId) ?? 0;
        let top: string | undefined;
        let most = 0;
        for (const [owner, n] of counts) if (owner !== this.instanceId && n > most) [top, most] = [owner, n];
        if (top !== undefined && (mine === 0 || most > mine + 1))
          return this.publish({ kind: 'lease-wanted', from: this.instanceId, mailbox, to: top });
      })
      .catch(() => undefined);
  }

  onLeaseFreed(listener: (mailbox: string) => void): Unsubscribe {
    return this.freed.add(listener);
  }

  // --- rates -----------------------------------------------------------------------------------

  rateGate(mailbox: string, limit: number): RateGate {
    const g = this.gates.get(mailbox);
    if (g && g.limit === limit) return g;
    g?.close();
    const fresh = new BatchedRateGate(mailbox, limit, this, {
      share: localShare(limit, this.opts.instances),
      validityMs: this.rateValidityMs,
      maxBatch: this.rateMaxBatch,
      now: () => performance.now(),
    });
    this.gates.set(mailbox, fresh);
    return fresh;
  }

  get reachable(): boolean {
    return this.ok;
  }

  async grant(mailbox: string, limit: number, want: number, validityMs: number): Promise<QuotaGrant> {
    const k = this.keys.mailbox(mailbox);
    const id = `${this.instanceId}:${++this.seq}`;
    const [granted, retryAfterMs] = await this.link.script<[number, number]>(
      'xoRateGrant',
      [k.rate, k.rateSum],
      [limit, want, WINDOW_MS + validityMs, id],
    );
    return { granted, grantId: `${id}|${granted}`, retryAfterMs };
  }

  giveBack(mailbox: string, grantId: string, unused: number): void {
    if (!this.ok) return;
    const k = this.keys.mailbox(mailbox);
    void this.link.script('xoRateGiveBack', [k.rate, k.rateSum], [grantId, unused]).catch(() => undefined);
  }

  // --- access tokens ---------------------------------------------------------------------------

  async getAccessToken(mailbox: string, lineage?: string): Promise<StoredAccessToken | undefined> {
    if (this.ok && this.sealer) {
      const sealer = this.sealer;
      try {
        const [v, exp, lin] = await this.link.run('read the access token', (r) =>
          r.hmgetBuffer(this.keys.mailbox(mailbox).token, 'v', 'exp', 'lin'),
        );
        if (!v || !exp) {
          this.tokens.delete(mailbox);
          return undefined;
        }
        const storedLineage = lin && lin.length > 0 ? lin.toString() : undefined;
        const token = sealer.open(mailbox, 'access_token', v);
        if (token === undefined) return undefined;
        const expiresAt = Number(exp.toString());
        this.tokens.set(mailbox, { token, expiresAt, lineage: storedLineage });
        if (lineage !== undefined && storedLineage !== lineage) return undefined;
        return { token, expiresAt };
      } catch (err) {
        if (!(err instanceof SharedStateUnavailable)) throw err;
      }
    }
    const t = this.tokens.get(mailbox);
    if (!t || (lineage !== undefined && t.lineage !== lineage)) return undefined;
    return { token: t.token, expiresAt: t.expiresAt };
  }

  /** kept here in any case; in Redis when it can be reached (a cache: a lost write costs a refresh) */
  async putAccessToken(mailbox: string, token: string, expiresAt: number, lineage?: string): Promise<void> {
    this.tokens.set(mailbox, { token, expiresAt, lineage });
    if (!this.ok || !this.sealer) {
      this.pendingTokens.add(mailbox);
      return;
    }
    this.pendingTokens.delete(mailbox);
    const sealed = this.sealer.seal(mailbox, 'access_token', token);
    const key = this.keys.mailbox(mailbox).token;
    await this.link
      .run('cache the access token', (r) =>
        r
          .multi()
          .hset(
            key,
            'v',
            sealed,
            'exp',
            Math.floor(expiresAt),
            'lin',
            lineage ?? '',
            'fp',
            fingerprint(token),
          )
          .pexpireat(key, Math.floor(expiresAt))
          .exec(),
      )
      .catch((err) => {
        if (!(err instanceof SharedStateUnavailable)) throw err;
        this.pendingTokens.add(mailbox);
      });
  }

  /**
   * The heartbeat, before it declares Redis reachable: the tokens got meanwhile, so the other
   * instances do not refresh again what was refreshed here (one another instance put since wins).
   */
  private async writePendingTokens(): Promise<void> {
    for (const mailbox of [...this.pendingTokens]) {
      const t = this.tokens.get(mailbox);
      this.pendingTokens.delete(mailbox);
      if (!t || t.expiresAt <= Date.now() || !this.sealer) continue;
      const sealed = this.sealer.seal(mailbox, 'access_token', t.token);
      const args = [sealed, Math.floor(t.expiresAt), t.lineage ?? '', fingerprint(t.token)];
      await this.link.script('xoTokenRestore', [this.keys.mailbox(mailbox).token], args).catch((err) => {
        if (err instanceof SharedStateUnavailable) {
          this.pendingTokens.add(mailbox); // still unreachable: the next heartbeat tries again
          throw err;
        }
        // a cache: losing it costs a refresh, and recovery must not wait for it
        this.log.warn({ mailbox, err: (err as Error).message }, 'cannot put back a kept access token');
      });
    }
  }

  async invalidateAccessToken(mailbox: string, token?: string): Promise<void> {
    const t = this.tokens.get(mailbox);
    if (t && (token === undefined || t.token === token)) {
      this.tokens.delete(mailbox);
      this.pendingTokens.delete(mailbox);
    }
    if (!this.ok) return;
    await this.link
      .script(
        'xoTokenInvalidate',
        [this.keys.mailbox(mailbox).token],
        [token === undefined ? '' : fingerprint(token)],
      )
      .catch((err) => {
        if (!(err instanceof SharedStateUnavailable)) throw err;
      });
  }

  // --- refresh lock and rotations ----------------------------------------------------------------

  async acquireRefreshLock(mailbox: string, ttlMs: number): Promise<RefreshLock | undefined> {
    if (!this.ok) throw new SharedStateUnavailable('take the refresh lock');
    const k = this.keys.mailbox(mailbox);
    const [fence] = await this.link.script<[number, number]>(
      'xoLockAcquire',
      [k.lock, k.fence],
      [this.instanceId, Math.max(1, Math.ceil(ttlMs))],
    );
    if (!fence) return undefined;
    const holder = `${this.instanceId}|${fence}`;
    const event: Event = { kind: 'refresh-done', from: this.instanceId, mailbox };
    let released: Promise<void> | undefined;
    return {
      mailbox,
      fence,
      release: () =>
        (released ??= this.link
          .script('xoLockRelease', [k.lock], [holder, this.keys.events, JSON.stringify(event)])
          .then(
            () => undefined,
            // unreachable: the lock ends with its TTL
            () => undefined,
          )
          .finally(() => this.wakeRefreshWaiters(mailbox))),
    };
  }

  onRefreshDone(listener: (mailbox: string) => void): Unsubscribe {
    return this.refreshDone.add(listener);
  }

  waitForRefresh(mailbox: string, timeoutMs: number): Promise<void> {
    if (!this.ok) return Promise.resolve();
    return new Promise((resolve) => {
      let set = this.refreshWaiters.get(mailbox);
      if (!set) this.refreshWaiters.set(mailbox, (set = new Set()));
      const waiters = set;
      let timer = setTimeout(done, timeoutMs);
      timer.unref();
      function done() {
        clearTimeout(timer);
        waiters.delete(done);
        resolve();
      }
      waiters.add(done);
      // listening first, then asking how long the holder has left: a release in between is not missed
      this.link
        .run('read the refresh lock', (r) => r.pttl(this.keys.mailbox(mailbox).lock))
        .then((pttl) => {
          if (!waiters.has(done)) return;
          if (pttl < 0) return done();
          clearTimeout(timer);
          timer = setTimeout(done, Math.min(timeoutMs, pttl));
          timer.unref();
        }, done);
    });
  }

  private wakeRefreshWaiters(mailbox: string): void {
    const set = this.refreshWaiters.get(mailbox);
    if (!set) return;
    this.refreshWaiters.delete(mailbox);
    for (const w of set) w();
  }

  async getRefreshToken(mailbox: string, configured: RefreshLineage): Promise<string | undefined> {
    if (!this.ok || !this.sealer) throw new SharedStateUnavailable('read the rotated refresh token');
    const sealer = this.sealer;
    const key = this.keys.mailbox(mailbox).refresh;
    const [v, origin] = await this.link.run('read the rotated refresh token', (r) =>
      r.hmgetBuffer(key, 'v', 'origin'),
    );
    if (!v) return this.seedFromLocal(mailbox, configured);
    if (origin?.toString() !== originOf(configured)) return undefined;
    const token = sealer.open(mailbox, 'refresh_token', v);
    // every instance keeps the latest rotation it has seen: if Redis loses its data, whichever
    // instance seeds it again (seedFromLocal) offers a current token, not one the provider retired
    if (token !== undefined) this.keepLocallyIfNew(mailbox, configured, token);
    return token;
  }

  private keepLocallyIfNew(mailbox: string, configured: RefreshLineage, token: string): void {
    const local = this.opts.local;
    if (!local) return;
    try {
      const mine =
        configured === undefined
          ? local.getAuthorizedRefreshToken(mailbox)
          : local.getRotatedRefreshToken(mailbox, configured);
      if (mine !== token) this.keepLocally(mailbox, configured, token);
    } catch (err) {
      this.log.warn({ mailbox, err: (err as Error).message }, 'cannot read the local refresh token');
    }
  }

  /**
   * Redis holds no refresh token for the mailbox (it lost its data?): offer the one this instance
   * wrote last, if any, and put it in Redis unless another instance did first (then use theirs).
   */
  private async seedFromLocal(mailbox: string, configured: RefreshLineage): Promise<string | undefined> {
    let mine: string | undefined;
    try {
      const local = this.opts.local;
      mine =
        configured === undefined
          ? local?.getAuthorizedRefreshToken(mailbox)
          : local?.getRotatedRefreshToken(mailbox, configured);
    } catch (err) {
      this.log.warn({ mailbox, err: (err as Error).message }, 'cannot read the local refresh token');
    }
    if (mine === undefined || !this.sealer) return undefined;
    const seeded = await this.link.script<number>(
      'xoSeedRefresh',
      [this.keys.mailbox(mailbox).refresh],
      [this.sealer.seal(mailbox, 'refresh_token', mine), fingerprint(mine), originOf(configured)],
    );
    if (seeded === 1) {
      this.log.warn({ mailbox }, 'shared state had no refresh token: restored the one this instance kept');
      return mine;
    }
    return this.getRefreshToken(mailbox, configured);
  }

  async rotateRefreshToken(mailbox: string, w: RotationWrite): Promise<RotationResult> {
    if (!this.sealer) throw new SharedStateUnavailable('store the rotated refresh token');
    // the provider has retired w.used already: a rotation Redis cannot take now is kept, not dropped
    if (!this.ok) return this.keepForLater(mailbox, w);
    try {
      return await this.writeRotation(mailbox, w);
    } catch (err) {
      if (!(err instanceof SharedStateUnavailable)) throw err;
      return this.keepForLater(mailbox, w);
    }
  }

  private async writeRotation(mailbox: string, w: RotationWrite): Promise<RotationResult> {
    const k = this.keys.mailbox(mailbox);
    const result = await this.link.script<RotationResult>(
      'xoRotate',
      [k.refresh, k.fence],
      [
        String(w.fence),
        originOf(w.configured),
        fingerprint(w.used),
        this.sealer!.seal(mailbox, 'refresh_token', w.next),
        fingerprint(w.next),
        w.configured === undefined ? '0' : '1',
      ],
    );
    if (result === 'ok') this.keepLocally(mailbox, w.configured, w.next);
    return result;
  }

  /** this instance's copy is what it seeds Redis with should Redis come back empty */
  private keepForLater(mailbox: string, w: RotationWrite): RotationResult {
    this.keepLocally(mailbox, w.configured, w.next);
    this.pendingRotations.set(mailbox, w);
    this.log.warn(
      { mailbox },
      'shared state unreachable: the rotated refresh token is kept until it answers',
    );
    return 'kept';
  }

  /** the heartbeat, before it declares Redis reachable; one it cannot reach stays pending */
  private async writePendingRotations(): Promise<void> {
    for (const [mailbox, w] of [...this.pendingRotations]) {
      let result: RotationResult;
      try {
        result = await this.writeRotation(mailbox, w);
      } catch (err) {
        if (err instanceof SharedStateUnavailable) throw err; // still unreachable: stays pending
        // not something a retry mends: the local copy stays, recovery must not wait for it
        this.pendingRotations.delete(mailbox);
        this.log.error({ mailbox, err: (err as Error).message }, 'cannot write a kept rotation');
        continue;
      }
      if (this.pendingRotations.get(mailbox) === w) this.pendingRotations.delete(mailbox);
      if (result !== 'ok')
        this.log.warn(
          { mailbox, result },
          'a rotation kept while Redis was unreachable was superseded there (another instance refreshed meanwhile)',
        );
    }
  }

  async putAuthorizedRefreshToken(mailbox: string, refreshToken: string): Promise<void> {
    if (!this.ok || !this.sealer) throw new SharedStateUnavailable('store the authorized refresh token');
    const sealed = this.sealer.seal(mailbox, 'refresh_token', refreshToken);
    const key = this.keys.mailbox(mailbox).refresh;
    await this.link.run('store the authorized refresh token', (r) =>
      r.hset(key, 'v', sealed, 'fp', fingerprint(refreshToken), 'origin', originOf(undefined)),
    );
    this.keepLocally(mailbox, undefined, refreshToken);
  }

  /** the local store's copy: what this instance offers if Redis ever loses the token */
  private keepLocally(mailbox: string, configured: RefreshLineage, token: string): void {
    const local = this.opts.local;
    if (!local) return;
    try {
      if (configured === undefined) local.putAuthorizedRefreshToken(mailbox, token);
      else local.putRotatedRefreshToken(mailbox, configured, token);
    } catch (err) {
      this.log.warn({ mailbox, err: (err as Error).message }, 'cannot keep the refresh token locally');
    }
  }

  // --- account state ---------------------------------------------------------------------------

  async getAccountState(mailbox: string): Promise<StoredAccountState | undefined> {
    if (this.ok && !this.pendingStates.has(mailbox)) {
      try {
        const h = await this.link.run('read the account state', (r) =>
          r.hgetall(this.keys.mailbox(mailbox).state),
        );
        if (!h.state) {
          this.states.delete(mailbox);
          return undefined;
        }
        const s: StoredAccountState = {
          state: h.state,
          ...(h.lastError ? { lastError: h.lastError } : {}),
          updatedAt: Number(h.updatedAt ?? 0),
        };
        this.states.set(mailbox, s);
        return s;
      } catch (err) {
        if (!(err instanceof SharedStateUnavailable)) throw err;
      }
    }
    return this.states.get(mailbox);
  }

  async setAccountState(mailbox: string, state: string, lastError?: string): Promise<void> {
    const s: StoredAccountState = {
      state,
      ...(lastError !== undefined ? { lastError } : {}),
      updatedAt: Date.now(),
    };
    this.states.set(mailbox, s);
    this.pendingDeletes.delete(mailbox);
    if (!this.ok) {
      this.pendingStates.add(mailbox);
      return;
    }
    await this.writeState(mailbox, s).catch((err) => {
      if (!(err instanceof SharedStateUnavailable)) throw err;
      this.pendingStates.add(mailbox);
    });
  }

  private writeState(mailbox: string, s: StoredAccountState): Promise<unknown> {
    const key = this.keys.mailbox(mailbox).state;
    const event: Event = { kind: 'account-state', from: this.instanceId, mailbox, state: s.state };
    return this.link.run('write the account state', (r) => {
      const m = r.multi().hset(key, 'state', s.state, 'updatedAt', s.updatedAt);
      if (s.lastError !== undefined) m.hset(key, 'lastError', s.lastError);
      else m.hdel(key, 'lastError');
      return m.publish(this.keys.events, JSON.stringify(event)).exec();
    });
  }

  onAccountState(listener: (mailbox: string, state: string) => void): Unsubscribe {
    return this.accountState.add(listener);
  }

  async deleteAccount(mailbox: string): Promise<void> {
    this.tokens.delete(mailbox);
    this.states.delete(mailbox);
    this.pendingStates.delete(mailbox);
    this.pendingRotations.delete(mailbox);
    this.pendingTokens.delete(mailbox);
    this.gates.get(mailbox)?.close();
    this.gates.delete(mailbox);
    try {
      this.opts.local?.deleteAccount(mailbox);
    } catch (err) {
      this.log.warn({ mailbox, err: (err as Error).message }, 'cannot delete the local account state');
    }
    if (!this.ok) {
      this.pendingDeletes.add(mailbox);
      return;
    }
    await this.deleteInRedis(mailbox).catch((err) => {
      if (!(err instanceof SharedStateUnavailable)) throw err;
      this.pendingDeletes.add(mailbox);
    });
  }

  /** tokens, rotation, state and rate history go; the fence stays (it must only ever rise) */
  private deleteInRedis(mailbox: string): Promise<unknown> {
    const k = this.keys.mailbox(mailbox);
    return this.link.run('delete the account', (r) => r.del(k.token, k.refresh, k.state, k.rate, k.rateSum));
  }

  // --- admin changes ---------------------------------------------------------------------------

  announceAccountsChanged(): void {
    if (!this.ok) {
      this.pendingAnnounce = true;
      return;
    }
    this.publish({ kind: 'accounts-changed', from: this.instanceId }).catch(() => {
      this.pendingAnnounce = true;
    });
  }

  onAccountsChanged(listener: () => void): Unsubscribe {
    return this.accountsChanged.add(listener);
  }
}
