// All accounts' pools. A reload replaces only the pools whose settings changed (docs/design.md, principle 7);
// the old pool drains: idle connections QUIT now, busy ones when their message finishes.
import type { Logger } from '../shared/log.js';
import type { Metrics } from '../metrics/metrics.js';
import { AccountPool, type PoolCoordination } from './pool.js';
import { smtpError } from '../shared/replies.js';
import type { DeliveryResult, Envelope, PoolStats, TokenSource, UpstreamAccount } from './types.js';

export type { UpstreamAccount, TokenSource, Envelope, DeliveryResult, PoolStats } from './types.js';

const LINE_BREAK = /[\r\n]/;

export class UpstreamPools {
  private pools = new Map<string, AccountPool>();
  private readonly retiring = new Set<AccountPool>();
  private closed = false;

  constructor(
    private readonly opts: { tokens: TokenSource; log: Logger; metrics: Metrics; coord: PoolCoordination },
  ) {
    // a slot freed anywhere (this process, a worker, another host) may unblock the mailbox's waiters
    opts.coord.onLeaseFreed((email) => {
      this.pools.get(email)?.leaseFreed();
      for (const p of this.retiring) if (p.account.email === email) p.leaseFreed();
    });
    // another instance was refused a slot this one holds more than its part of
    opts.coord.onLeaseWanted?.((email) => this.pools.get(email)?.leaseWanted());
  }

  setAccounts(accounts: readonly UpstreamAccount[]): void {
    const next = new Map<string, AccountPool>();
    for (const a of accounts) {
      const key = settingsKey(a);
      const old = this.pools.get(a.email);
      if (old && old.key === key) {
        next.set(a.email, old);
        continue;
      }
      const pool = new AccountPool(a, key, this.opts);
      if (old) this.retire(old);
      next.set(a.email, pool);
    }
    for (const [email, pool] of this.pools) if (!next.has(email)) this.retire(pool);
    this.pools = next;
  }

  /** Rejects with an SmtpError when the message cannot go to a pool; not async: the pool's promise is the answer. */
  deliver(email: string, envelope: Envelope, message: readonly Buffer[]): Promise<DeliveryResult> {
    if (this.closed) return Promise.reject(smtpError('SHUTTING_DOWN'));
    const pool = this.pools.get(email);
    if (!pool) return Promise.reject(smtpError('UNKNOWN_ACCOUNT', email));
    // the addresses go into command lines verbatim: a line break would smuggle a command
    if (LINE_BREAK.test(envelope.from)) return Promise.reject(smtpError('BAD_ADDRESS', envelope.from));
    for (let i = 0; i < envelope.to.length; i++) {
      if (LINE_BREAK.test(envelope.to[i])) return Promise.reject(smtpError('BAD_ADDRESS', envelope.to[i]));
    }
    return pool.deliver(envelope, message);
  }

  /** A client of `email` has logged in: get its first upstream connection ready (AccountPool.prepare). */
  prepare(email: string): void {
    if (!this.closed) this.pools.get(email)?.prepare();
  }

  stats(email: string): PoolStats | undefined {
    return this.pools.get(email)?.stats();
  }

  /** Stop new deliveries, QUIT idle connections, let busy ones finish for up to timeoutMs, then cut them. */
  async close(timeoutMs: number): Promise<void> {
    this.closed = true;
    const all = [...this.pools.values(), ...this.retiring];
    for (const p of all) p.drain();
    const drained = Promise.all(all.map((p) => p.whenDrained()));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      drained.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.opts.log.warn({ timeoutMs }, 'upstream connections still busy at shutdown deadline; closing them');
      for (const p of all) p.forceClose();
      await drained;
    }
  }

  private retire(pool: AccountPool): void {
    this.retiring.add(pool);
    pool.drain();
    void pool.whenDrained().then(() => this.retiring.delete(pool));
  }
}

/** Everything that shapes a pool's connections; equal keys keep the pool (and its warm connections). */
function settingsKey(a: UpstreamAccount): string {
  return JSON.stringify([
    a.providerName,
    a.smtp.host,
    a.smtp.port,
    a.smtp.security,
    a.smtp.ca ?? null,
    a.smtp.rejectUnauthorized,
    a.smtp.chunking ?? true,
    a.ehloName,
    a.sourceAddress ?? null,
    a.maxConnections,
    a.maxMessagesPerConnection,
    a.messagesPerMinute,
    a.idleTimeoutMs,
    a.maxAgeMs,
    a.retireGraceMs ?? null,
    a.acquireTimeoutMs,
    a.commandTimeoutMs,
  ]);
}
