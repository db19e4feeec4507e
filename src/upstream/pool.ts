// The connection pool of one account (docs/design.md, principle 4): an idle LIFO stack (warm
// connections stay warm), a FIFO of waiters with deadlines, and counters per connection state. Every
// change of a connection's state goes through transition(), which keeps the counters right (the
// idle/busy gauge reads them at scrape time). Acquire and release never scan: entries of
// connections that died while idle, and waiters that timed out, are skipped lazily when reached. Never more than maxConnections connections open,
// connecting or closing for the account. A spent connection retires once a replacement can
// authenticate, within a bounded grace (RETIRE_GRACE_MS). So that no message waits for a
// connection to be set up (connect + TLS + EHLO + AUTH, the tail of the latency), the first one
// opens when a client logs in (prepare), and a replacement opens shortly before a busy
// connection is spent (SPARE_LEAD_MS). With several instances (workers, hosts) the limits are
// global: every connection holds one of the mailbox's leases from the Coordinator, taken before
// its setup and given back when it is closed; the rate limit is the Coordinator's gate.
import type { Logger } from '../shared/log.js';
import type { ConnectionCounts, Metrics } from '../metrics/metrics.js';
import { SmtpError } from '../shared/smtp-reply.js';
import {
  ConnectError,
  UpstreamConnection,
  oneLine,
  sharedTlsReuse,
  type ConnectionState,
  type TlsReuse,
} from './connection.js';
import { smtpError, smtpErrorCausedBy } from '../shared/replies.js';
import type { DeliveryResult, Envelope, PoolStats, TokenSource, UpstreamAccount } from './types.js';
import type { Coordinator, RateGate } from '../coordination/types.js';

/** What a pool needs of the Coordinator: the global connection slots and the rate gate. */
export type PoolCoordination = Pick<
  Coordinator,
  'acquireLease' | 'onLeaseFreed' | 'onLeaseWanted' | 'rateGate'
>;

export interface PoolDeps {
  tokens: TokenSource;
  log: Logger;
  metrics: Metrics;
  coord: PoolCoordination;
}

/** Every global slot of the mailbox is held (by other instances): wait for one to be freed. */
class LeaseDenied extends Error {}

/**
 * While the mailbox's global slots are all held elsewhere, waiting messages try again when a slot is
 * announced free (onLeaseFreed) or, since announcements are best effort, after this long.
 */
export const LEASE_RETRY_MS = 250;

/**
 * Another instance was refused a slot of the mailbox while this one holds more than its fair part
 * (onLeaseWanted): for this long, the next connection released with no message waiting is closed,
 * so the slot goes where the mail is (the other instance retries every LEASE_RETRY_MS).
 */
export const LEASE_OWED_MS = 1000;

interface Waiter {
  resolve: (c: UpstreamConnection | Promise<UpstreamConnection>) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | undefined;
  settled: boolean;
  /** performance.now() by which it must have a connection (kept when it queues again for a lease) */
  deadline: number;
}

/**
 * How long a connection due for retirement (it reached maxMessagesPerConnection or maxAge) keeps
 * serving while no replacement can authenticate because the access token cannot be had, the token
 * endpoint being down: closing it then would only make the next messages defer on the token error.
 * 5 minutes is the token manager's default backoff ceiling, so at least one more refresh attempt
 * falls inside the grace. Hard bounds, whatever the grace: a connection carries at most
 * 2 x maxMessagesPerConnection messages and lives at most 2 x maxAge.
 */
export const RETIRE_GRACE_MS = 5 * 60_000;

/**
 * A replacement opens this long (at least) before a busy connection is expected to be spent, at
 * the pace of its messages so far, or 4 x the last setup time when that is longer. One that would
 * sit idle for more than half the idle timeout is not opened (a quiet account waits instead).
 */
export const SPARE_LEAD_MS = 1000;

export class AccountPool {
  private readonly max: number;
  private idle: UpstreamConnection[] = [];
  /** connections per state (closed ones are gone); changed only by newConnection() and transition() */
  private readonly count: Record<Exclude<ConnectionState, 'closed'>, number> = {
    connecting: 0,
    idle: 0,
    busy: 0,
    retiring: 0,
    closing: 0,
  };
  private waiters: (Waiter | undefined)[] = [];
  private waitHead = 0;
  private waitingCount = 0;
  /** every connection this pool owns in any state, for a forced close */
  private readonly all = new Set<UpstreamConnection>();
  private draining = false;
  private killed = false;
  private spareConnecting = false;
  /** how long the last connection took to set up (token, connect, TLS, EHLO, AUTH), ms */
  private setupMs = 0;
  /**
   * how long the last connection took from its token in hand to ready (connect, TLS, EHLO, AUTH),
   * ms: what one more connection costs, without a token refresh or lease wait the setup waited for
   */
  private connectMs = 0;
  /** moving average of a message's time on its connection (send to final reply), ms; 0: none yet */
  private serviceMs = 0;
  private rampTimer: NodeJS.Timeout | undefined;
  private drainedWaiters: (() => void)[] = [];
  private readonly rate: RateGate | null;
  /** a lease was refused: no new connection until a slot is announced free or LEASE_RETRY_MS passed */
  private leaseBlocked = false;
  private leaseRetry: NodeJS.Timeout | undefined;
  /** another instance is owed one of the mailbox's slots until then (epoch ms; 0: none) */
  private owedUntil = 0;
  /** no spare connection until then: it would take back the slot just given up */
  private noSpareUntil = 0;
  private readonly tls: TlsReuse;
  private readonly log: Logger;
  /** the provider's idle/busy counts that the upstream_connections gauge reads at scrape time */
  private readonly gaugeCounts: ConnectionCounts;
  // prom-client children resolved once, so the hot path does no label lookups
  private readonly connectOk;
  private readonly connectError;
  private readonly connectAuthFailed;
  private readonly waitSeconds;
  private readonly bytes;

  constructor(
    readonly account: UpstreamAccount,
    /** the settings fingerprint; a changed fingerprint means a fresh pool */
    readonly key: string,
    private readonly deps: PoolDeps,
  ) {
    this.max = Math.max(1, account.maxConnections);
    // the same gate (and history) as a previous pool of the mailbox while the limit is the same
    this.rate =
      account.messagesPerMinute > 0 ? deps.coord.rateGate(account.email, account.messagesPerMinute) : null;
    this.tls = sharedTlsReuse(account.smtp, account.sourceAddress);
    this.log = deps.log.child({ account: account.email });
    const m = deps.metrics;
    const provider = account.providerName;
    this.gaugeCounts = m.connectionsOf(provider);
    this.connectOk = m.upstreamConnectsTotal.labels({ provider, result: 'success' });
    this.connectError = m.upstreamConnectsTotal.labels({ provider, result: 'error' });
    this.connectAuthFailed = m.upstreamConnectsTotal.labels({ provider, result: 'auth_failed' });
    this.waitSeconds = m.poolWaitOf(provider);
    this.bytes = m.messageBytesOf(provider);
  }

  stats(): PoolStats {
    return {
      idle: this.count.idle,
      busy: this.count.busy,
      connecting: this.count.connecting,
      waiting: this.waitingCount,
    };
  }

  async deliver(env: Envelope, message: readonly Buffer[]): Promise<DeliveryResult> {
    if (this.rate) {
      // synchronous whenever the gate can answer locally (no I/O on the message path)
      const ok = this.rate.take();
      if (ok !== true && (ok === false || !(await ok)))
        throw smtpError('RATE_LIMITED', this.account.email, this.account.messagesPerMinute);
    }
    // an idle connection comes without a promise (the common case under load)
    const got = this.acquire(false);
    let conn = got instanceof UpstreamConnection ? got : await got;
    let retried = false;
    for (;;) {
      const reused = conn.messages > 0;
      let result: DeliveryResult;
      const sent = performance.now();
      try {
        result = await conn.send(env, message);
        const took = performance.now() - sent;
        this.serviceMs = this.serviceMs > 0 ? this.serviceMs + (took - this.serviceMs) / 8 : took;
      } catch (err) {
        // no final reply to the body: the upstream did not take the message
        this.release(conn);
        if (reused && !retried && !this.killed) {
          retried = true;
          this.log.info(
            { reason: (err as Error).message },
            'reused upstream connection failed; retrying once',
          );
          conn = await this.acquire(true);
          continue;
        }
        this.log.warn({ reason: (err as Error).message }, 'upstream connection lost before the final reply');
        throw smtpErrorCausedBy(err, 'UPSTREAM_CONNECTION_LOST');
      }
      this.release(conn);
      if (result.kind === 'delivered') {
        let n = 0;
        for (let i = 0; i < message.length; i++) n += message[i].length;
        this.bytes.inc(n);
      }
      return result;
    }
  }

  /**
   * A client of this account has logged in: open its first connection now, in the background, so
   * its first message does not wait for the setup. Nothing when the pool has any connection.
   */
  prepare(): void {
    if (this.total() > 0 || this.waitingCount > 0) return;
    this.openSpare();
  }

  /** stop reusing: QUIT idle connections now, busy ones when their message finishes; waiters are still served */
  drain(): void {
    this.draining = true;
    let c: UpstreamConnection | null;
    while ((c = this.popIdle()) !== null) this.retire(c);
    this.checkDrained();
  }

  whenDrained(): Promise<void> {
    if (this.isDrained()) return Promise.resolve();
    return new Promise((resolve) => this.drainedWaiters.push(resolve));
  }

  /** drain deadline passed: fail the waiters, cut every connection */
  forceClose(): void {
    this.draining = true;
    this.killed = true;
    let w: Waiter | null;
    while ((w = this.shiftWaiter()) !== null) w.reject(smtpError('SHUTTING_DOWN'));
    for (const c of this.all) {
      c.destroy();
      // do not wait for the token answer that would decide its fate
      if (c.state === 'retiring') this.retire(c);
    }
    this.checkDrained();
  }

  // -- acquire / release --------------------------------------------------------------------------

  /** A connection for a message, now busy: at once when one is idle, else a promise; the wait is observed. */
  private acquire(fresh: boolean): UpstreamConnection | Promise<UpstreamConnection> {
    const started = performance.now();
    let got: UpstreamConnection | Promise<UpstreamConnection>;
    try {
      got = this.acquireNow(fresh);
    } catch (err) {
      this.observeWait(started);
      throw err;
    }
    if (got instanceof UpstreamConnection) {
      this.observeWait(started);
      return got;
    }
    return got.finally(() => this.observeWait(started));
  }

  private observeWait(started: number): void {
    this.waitSeconds.observe((performance.now() - started) / 1000);
  }

  private acquireNow(fresh: boolean): Promise<UpstreamConnection> | UpstreamConnection {
    if (this.killed) throw smtpError('SHUTTING_DOWN');
    if (!fresh) {
      const c = this.takeIdle();
      if (c) return c;
    } else if (this.total() >= this.max) {
      // a retry wants a new connection: give up an unproven idle one to free its slot
      const c = this.popIdle();
      if (c) this.retire(c);
    }
    // a replacement is already on its way, or a spent connection may be kept: wait for it rather
    // than open one more
    if ((this.spareConnecting || this.count.retiring > 0) && !fresh) return this.enqueue();
    if (this.total() < this.max && !this.leaseBlocked) {
      if (fresh || !this.waitBeatsOpening()) return this.connectOrWait();
      this.armRamp();
    }
    return this.enqueue();
  }

  /**
   * A busy connection will be free sooner than a new one can be set up (connect + TLS + EHLO +
   * AUTH): so a burst (the first message of each of 100 clients at once) does not open a connection
   * per message, each a handshake at the provider and OpenSSL buffers here. The wait is judged from
   * the last connection's setup with its token in hand (a first setup that waited for a token
   * refresh would make waiting look better than it is) and the recent time per message (before the
   * first: a quarter of the setup, which is at least four round trips to a message's one). Not
   * judged before a first setup.
   */
  private waitBeatsOpening(): boolean {
    const setup = this.connectMs;
    const serving = this.count.busy + this.count.connecting;
    if (setup <= 0 || serving === 0) return false;
    const perMessage = this.serviceMs > 0 ? this.serviceMs : setup / 4;
    return ((this.waitingCount + 1) * perMessage) / serving < setup;
  }

  /**
   * Messages that chose to wait for a busy connection: if some are still waiting one setup time
   * later, the estimate was wrong for them (a slow upstream, a load that keeps every connection
   * busy), so a connection opens for them, one per setup time while the queue lasts, up to the limit.
   */
  private armRamp(): void {
    if (this.rampTimer) return;
    this.rampTimer = setTimeout(
      () => {
        this.rampTimer = undefined;
        if (this.waitingCount === 0 || this.draining || this.killed) return;
        this.openSpare();
        this.armRamp();
      },
      Math.max(1, this.connectMs),
    );
    this.rampTimer.unref();
  }

  /**
   * A new connection for the caller, or a place in the queue when every global slot is held; a
   * waiter that queues again keeps its deadline.
   */
  private connectOrWait(
    deadline = performance.now() + this.account.acquireTimeoutMs,
  ): Promise<UpstreamConnection> {
    return this.connectFor().catch((err: unknown) => {
      if (!(err instanceof LeaseDenied)) throw err;
      return this.enqueue(deadline);
    });
  }

  /** a lease was refused: retry when a slot is announced free, or after LEASE_RETRY_MS */
  private blockOnLeases(): void {
    this.leaseBlocked = true;
    if (this.leaseRetry) return;
    this.leaseRetry = setTimeout(() => this.leaseFreed(), LEASE_RETRY_MS);
    this.leaseRetry.unref();
  }

  /**
   * Another instance is owed a slot of this mailbox (the coordinator's onLeaseWanted): close the
   * least recently used idle connection now, or else the next one released with no message waiting.
   */
  leaseWanted(): void {
    if (this.draining || this.killed || this.total() === 0) return;
    this.noSpareUntil = Date.now() + LEASE_OWED_MS;
    for (const c of this.idle) {
      if (c.state !== 'idle') continue;
      this.log.debug('another instance is owed a connection slot: closing an idle connection');
      return this.retire(c);
    }
    this.owedUntil = Date.now() + LEASE_OWED_MS;
  }

  /** true (once) while a slot is owed to another instance */
  private payOwed(): boolean {
    const owed = Date.now() < this.owedUntil;
    this.owedUntil = 0;
    return owed;
  }

  /** one of the mailbox's global slots was given back somewhere (UpstreamPools dispatches it) */
  leaseFreed(): void {
    if (!this.leaseBlocked) return;
    this.leaseBlocked = false;
    clearTimeout(this.leaseRetry);
    this.leaseRetry = undefined;
    this.slotFreed();
  }

  /** LIFO pop of the newest idle connection (entries of ones that left the idle state are skipped); it stays idle */
  private popIdle(): UpstreamConnection | null {
    const stack = this.idle;
    while (stack.length > 0) {
      const c = stack.pop()!;
      if (c.state === 'idle') return c;
    }
    return null;
  }

  /** the newest idle connection that may carry another message, now busy; the spoiled or spent ones on the way retire */
  private takeIdle(): UpstreamConnection | null {
    let c: UpstreamConnection | null;
    while ((c = this.popIdle()) !== null) {
      if (!c.reusable) this.retire(c);
      else if (this.spent(c)) this.retireSpent(c);
      else {
        this.transition(c, 'busy');
        return c;
      }
    }
    return null;
  }

  private release(c: UpstreamConnection): void {
    if (!c.reusable || c.lease?.state === 'lost' || (this.draining && this.waitingCount === 0))
      this.retire(c);
    else if (this.owedUntil !== 0 && this.waitingCount === 0 && this.payOwed()) this.retire(c);
    else if (this.spent(c)) this.retireSpent(c);
    else {
      if (this.count.idle === 0 && this.dueSoon(c)) this.openSpare();
      this.putBack(c);
    }
  }

  /** back to work: straight to the first waiter (it stays busy; FIFO among waiters), else idle */
  private putBack(c: UpstreamConnection): void {
    const w = this.shiftWaiter();
    if (w) w.resolve(c);
    else this.transition(c, 'idle');
  }

  /**
   * The one place a connection changes state. It keeps the per-state counters and the provider's
   * idle/busy counts (the gauge's) right, puts an idle connection on the stack, sets the socket's inactivity limit for the
   * new state, and gives a closed connection's slot on. Closed is final.
   */
  private transition(c: UpstreamConnection, to: ConnectionState): void {
    const from = c.state;
    if (from === to || from === 'closed') return;
    c.state = to;
    this.count[from]--;
    if (from === 'idle') this.gaugeCounts.idle--;
    else if (from === 'busy') this.gaugeCounts.busy--;
    if (to === 'closed') {
      this.all.delete(c);
      c.lease?.release();
      c.lease = undefined;
      this.slotFreed();
      return;
    }
    this.count[to]++;
    if (to === 'idle') {
      this.gaugeCounts.idle++;
      c.setTimeout(this.account.idleTimeoutMs > 0 ? this.account.idleTimeoutMs : 0);
      this.idle.push(c);
      // stale entries can pile up only when idle connections keep dying without a pop in between
      if (this.idle.length > 2 * this.max + 16) this.idle = this.idle.filter((x) => x.state === 'idle');
    } else if (to === 'busy') {
      this.gaugeCounts.busy++;
      c.setTimeout(this.account.commandTimeoutMs);
    }
  }

  /** expected to be spent within the lead (SPARE_LEAD_MS) */
  private dueSoon(c: UpstreamConnection): boolean {
    const a = this.account;
    const lead = Math.min(
      Math.max(SPARE_LEAD_MS, 4 * this.setupMs),
      a.idleTimeoutMs > 0 ? a.idleTimeoutMs / 2 : Infinity,
    );
    const now = Date.now();
    if (a.maxAgeMs > 0 && a.maxAgeMs - (now - c.createdAt) <= Math.min(lead, a.maxAgeMs / 2)) return true;
    const max = a.maxMessagesPerConnection;
    // the pace is judged on a tenth of the connection's messages at least (2 at the fewest)
    if (max <= 0 || c.messages < Math.max(2, Math.ceil(max / 10))) return false;
    return ((max - c.messages) * (now - c.readyAt)) / c.messages <= lead;
  }

  /** reached maxMessagesPerConnection or maxAge */
  private spent(c: UpstreamConnection): boolean {
    const a = this.account;
    return (
      (a.maxMessagesPerConnection > 0 && c.messages >= a.maxMessagesPerConnection) ||
      (a.maxAgeMs > 0 && Date.now() - c.createdAt > a.maxAgeMs)
    );
  }

  private total(): number {
    const n = this.count;
    return n.connecting + n.idle + n.busy + n.retiring + n.closing;
  }

  /** QUIT (or cut) a connection; its slot counts until the socket is closed */
  private retire(c: UpstreamConnection): void {
    this.transition(c, 'closing');
    void c.quit().then(() => this.transition(c, 'closed'));
  }

  /** a slot opened up: waiters that found no connection get a new one, in FIFO order */
  private slotFreed(): void {
    // a replacement on its way will serve the first waiter
    while (
      this.waitingCount > (this.spareConnecting ? 1 : 0) &&
      this.total() < this.max &&
      !this.leaseBlocked &&
      !this.killed
    ) {
      const w = this.shiftWaiter();
      if (!w) break;
      w.resolve(this.connectOrWait(w.deadline));
    }
    this.checkDrained();
  }

  private onConnClose(c: UpstreamConnection): void {
    // busy: release() sees it spoiled; closing: retire()'s quit() settles; connecting: connectFor() fails
    if (c.state === 'idle') this.transition(c, 'closed');
  }

  /** the connection's global slot went to another instance: it retires after its current message */
  private leaseLost(c: UpstreamConnection): void {
    this.log.warn({ state: c.state }, 'connection lease lost: the connection retires');
    if (c.state === 'idle') this.retire(c);
  }

  private onIdleTimeout(c: UpstreamConnection): void {
    if (c.state === 'idle') this.retire(c);
  }

  private enqueue(deadline = performance.now() + this.account.acquireTimeoutMs): Promise<UpstreamConnection> {
    return new Promise((resolve, reject) => {
      const w: Waiter = { resolve, reject, timer: undefined, settled: false, deadline };
      w.timer = setTimeout(
        () => {
          if (w.settled) return;
          w.settled = true;
          this.waitingCount--;
          reject(smtpError('POOL_TIMEOUT', this.account.email, this.account.acquireTimeoutMs));
          this.checkDrained();
        },
        Math.max(0, deadline - performance.now()),
      );
      this.waiters.push(w);
      this.waitingCount++;
    });
  }

  private shiftWaiter(): Waiter | null {
    while (this.waitHead < this.waiters.length) {
      const w = this.waiters[this.waitHead]!;
      this.waiters[this.waitHead++] = undefined;
      if (this.waitHead === this.waiters.length) {
        this.waiters.length = 0;
        this.waitHead = 0;
      } else if (this.waitHead > 1024 && this.waitHead * 2 > this.waiters.length) {
        this.waiters = this.waiters.slice(this.waitHead);
        this.waitHead = 0;
      }
      if (w.settled) continue;
      w.settled = true;
      clearTimeout(w.timer);
      this.waitingCount--;
      return w;
    }
    return null;
  }

  private isDrained(): boolean {
    return this.draining && this.total() === 0 && this.waitingCount === 0;
  }

  private checkDrained(): void {
    if (this.drainedWaiters.length === 0 || !this.isDrained()) return;
    const ws = this.drainedWaiters;
    this.drainedWaiters = [];
    for (const w of ws) w();
  }

  // -- retirement -----------------------------------------------------------------------------------

  /**
   * A healthy connection is spent. It retires once a replacement can authenticate, which is known
   * when the replacement's access token is in hand: normally at once (a cached token). The
   * replacement is not connected first: in a full pool it could only take this connection's slot,
   * and alongside it would make maxMessagesPerConnection inexact whenever tokens are fine. Without
   * a token the connection goes back to work within its grace (RETIRE_GRACE_MS) and asks again
   * when it is next released or taken; during an outage the token manager answers that at once.
   */
  private retireSpent(c: UpstreamConnection): void {
    if (!this.mayKeep(c)) return this.retireSpentNow(c, 'its grace is over');
    this.transition(c, 'retiring');
    this.deps.tokens.getToken(this.account.email).then(
      () => this.retiringDecided(c, null),
      (err: unknown) => this.retiringDecided(c, err instanceof Error ? err : new Error(String(err))),
    );
  }

  private retiringDecided(c: UpstreamConnection, tokenError: Error | null): void {
    if (c.state !== 'retiring') return; // cut by forceClose meanwhile
    if (!c.reusable) return this.retire(c);
    if (tokenError === null) return this.retireSpentNow(c, 'a replacement can authenticate');
    if (!this.mayKeep(c)) return this.retireSpentNow(c, 'its grace is over');
    if (c.keptUntil === 0) {
      c.keptUntil = Date.now() + (this.account.retireGraceMs ?? RETIRE_GRACE_MS);
      this.log.warn(
        { reason: tokenError.message, messages: c.messages, ageMs: Date.now() - c.createdAt },
        'upstream connection kept in service past its limits: no replacement can authenticate',
      );
    }
    this.putBack(c);
  }

  /** within the bounds of keeping a spent connection (RETIRE_GRACE_MS), and the pool is not closing */
  private mayKeep(c: UpstreamConnection): boolean {
    const a = this.account;
    const now = Date.now();
    return !(
      this.draining ||
      this.killed ||
      (c.keptUntil > 0 && now >= c.keptUntil) ||
      (a.maxMessagesPerConnection > 0 && c.messages >= 2 * a.maxMessagesPerConnection) ||
      (a.maxAgeMs > 0 && now - c.createdAt >= 2 * a.maxAgeMs)
    );
  }

  private retireSpentNow(c: UpstreamConnection, why: string): void {
    if (c.keptUntil > 0) this.log.info({ messages: c.messages }, `kept upstream connection retires: ${why}`);
    this.retire(c);
    this.replaceSpent();
  }

  // -- connection setup -----------------------------------------------------------------------------

  /**
   * A healthy connection was retired for its message count or age. If that left the pool without
   * an idle connection, open the replacement now, in the background, so the next message does not
   * wait for connect + TLS + EHLO + AUTH (at 8 msg/s per mailbox and 100 messages per connection,
   * that wait was the proxy's p99: docs/performance.md).
   */
  private replaceSpent(): void {
    // messages that waited to see whether the spent connection stays get new ones, if slots are free
    if (this.waitingCount > 0) return this.slotFreed();
    if (this.count.idle > 0) return;
    this.openSpare();
  }

  /**
   * Open a connection in the background, if a slot is free and none is on its way. Ready, it
   * serves the first waiter, or waits idle under the ones already idle, so that a connection
   * close to its limits carries its last messages before the spare takes over.
   */
  private openSpare(): void {
    if (
      this.spareConnecting ||
      this.draining ||
      this.killed ||
      this.leaseBlocked ||
      this.total() >= this.max ||
      Date.now() < this.noSpareUntil
    )
      return;
    this.spareConnecting = true;
    this.connectFor().then(
      (c) => {
        this.spareConnecting = false;
        if (this.waitingCount > 0 || this.draining) return this.release(c);
        this.transition(c, 'idle');
        if (this.idle.at(-1) === c && this.idle.length > 1) this.idle.unshift(this.idle.pop()!);
      },
      () => {
        // connectFor() logged and counted it (or no global slot was free); a message that waited
        // for this spare connects on its own
        this.spareConnecting = false;
        this.slotFreed();
      },
    );
  }

  /**
   * Set up a connection for the caller that triggered it: lease, token, connect + TLS + EHLO, AUTH
   * XOAUTH2. It arrives busy. A rejected token is invalidated and replaced once, on a new
   * connection. LeaseDenied: every global slot of the mailbox is held (by other instances).
   */
  private async connectFor(): Promise<UpstreamConnection> {
    const a = this.account;
    const { host, port } = a.smtp;
    const started = performance.now();
    let c = this.newConnection();
    try {
      c.lease = await this.deps.coord.acquireLease(a.email, this.max, () => this.leaseLost(c));
    } catch (err) {
      c.lease = undefined;
      this.log.warn({ err: (err as Error).message }, 'cannot take a connection lease');
    }
    if (!c.lease || this.killed) {
      // blocked first, so the slot given back below does not start another attempt at once
      if (!this.killed) this.blockOnLeases();
      c.destroy();
      this.transition(c, 'closed');
      if (this.killed) throw smtpError('SHUTTING_DOWN');
      throw new LeaseDenied();
    }
    for (let attempt = 0; ; attempt++) {
      let failure: SmtpError;
      try {
        if (this.killed) throw smtpError('SHUTTING_DOWN');
        // token errors are already precise SmtpErrors (4.4.3, 4.7.0 re-authorization): pass them on
        const token = await this.deps.tokens.getToken(a.email);
        if (this.killed) throw smtpError('SHUTTING_DOWN');
        const connecting = performance.now();
        await c.connect();
        const out = await c.authenticate(a.email, token);
        if (out.kind === 'ok') {
          this.setupMs = performance.now() - started;
          this.connectMs = performance.now() - connecting;
          c.readyAt = Date.now();
          this.connectOk.inc();
          this.log.debug({ host, port }, 'upstream connection ready');
          this.transition(c, 'busy');
          return c;
        }
        const upstream = oneLine(out.reply);
        if (out.kind === 'token_rejected') {
          this.connectAuthFailed.inc();
          this.deps.tokens.invalidate(a.email, token);
          this.log.warn({ upstream, attempt }, 'upstream rejected the access token');
          await c.quit();
          if (attempt === 0) {
            // the next connection takes this one's slot before it is given up
            const next = this.newConnection();
            next.lease = c.lease;
            c.lease = undefined;
            this.transition(c, 'closed');
            c = next;
            continue;
          }
          failure =
            this.deps.tokens.authRejected?.(a.email, upstream) ??
            smtpError('UPSTREAM_AUTH_REJECTED', a.email);
        } else {
          if (out.kind === 'temporary') {
            this.connectError.inc();
            failure = smtpError('UPSTREAM_AUTH_TEMPFAIL', host, port, upstream);
          } else {
            this.connectAuthFailed.inc();
            failure = smtpError('UPSTREAM_AUTH_FAILED', a.email, upstream);
          }
          this.log.warn({ upstream }, 'upstream refused authentication');
          await c.quit();
        }
      } catch (err) {
        c.destroy();
        if (err instanceof SmtpError) {
          failure = err;
        } else {
          this.connectError.inc();
          const reason =
            err instanceof ConnectError
              ? err.reason
              : `connection lost during AUTH (${(err as Error).message})`;
          this.log.warn({ host, port, reason }, 'upstream connection failed');
          failure = smtpErrorCausedBy(err, 'UPSTREAM_UNREACHABLE', host, port, reason);
        }
      }
      this.transition(c, 'closed');
      throw failure;
    }
  }

  /** a new connection, counted as connecting from now on */
  private newConnection(): UpstreamConnection {
    const a = this.account;
    const c = new UpstreamConnection({
      smtp: a.smtp,
      ehloName: a.ehloName,
      localAddress: a.sourceAddress,
      commandTimeoutMs: a.commandTimeoutMs,
      tls: this.tls,
    });
    c.onClose = () => this.onConnClose(c);
    c.onIdleTimeout = () => this.onIdleTimeout(c);
    this.count.connecting++;
    this.all.add(c);
    return c;
  }
}
