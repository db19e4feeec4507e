// Access tokens per account (DESIGN principle 5): a cached token is returned without I/O; one
// refresh in flight per account, shared by every waiter; a timer renews each token ahead of its
// expiry (with jitter) so the hot path only ever waits for an account's very first token.
//
// Failure policy:
// - invalid_grant, invalid_client, unauthorized_client (HTTP 400/401): the credentials are dead and
//   retrying cannot revive them. The account goes to `needs_reauth`; getToken rejects at once with
//   451 4.7.0 and no request is made again until setAccounts gives the account different
//   credentials (refresh token, client id/secret, tenant or provider endpoint). After a process
//   restart one attempt is made again. Other accounts are unaffected.
// - anything else (network, timeout, 5xx, 429, malformed response): state `error`, 451 4.4.3, and
//   per-account exponential backoff with jitter; during the backoff getToken fails fast. If a still
//   valid token is cached (a proactive refresh failed), it keeps being served and the retry is timed
//   to happen before it expires.
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { tokenUrl } from '../config/providers.js';
import type { ProviderConfig } from '../config/types.js';
import type { Metrics } from '../metrics/metrics.js';
import type { StateStore } from '../state/store.js';
import type { Logger } from '../shared/log.js';
import type { SmtpError } from '../shared/smtp-reply.js';
import { Backoff } from './backoff.js';
import { smtpError } from '../shared/replies.js';
import { TokenClient, TokenGrantError, type RefreshResult } from './token-client.js';

export interface TokenAccount {
  email: string;
  provider: ProviderConfig;
  clientId: string;
  clientSecret?: string;
  refreshToken: string;
  tenant?: string;
}

export type TokenState = 'ok' | 'refreshing' | 'needs_reauth' | 'error' | 'unknown';

export interface TokenStatus {
  state: TokenState;
  expiresAt?: number;
  lastError?: string;
  refreshes: number;
}

export interface TokenManagerOptions {
  store: StateStore;
  log: Logger;
  metrics: Metrics;
  /** renew this long before expiry at most (capped at a quarter of the token's lifetime) */
  refreshAheadMs: number;
  requestTimeoutMs: number;
  warmupConcurrency: number;
  now?: () => number;
  /** jitter source (tests) */
  random?: () => number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

/** A token counts as expired this long before its real expiry (capped at a tenth of its lifetime). */
const SAFETY_MARGIN_MS = 30_000;
/** setTimeout's ceiling (about 24.8 days); longer waits are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface CachedToken {
  value: string;
  expiresAt: number;
  /** hot-path validity limit: expiresAt minus the safety margin */
  validUntil: number;
  lifetimeMs: number;
}

interface Entry {
  readonly email: string;
  account: TokenAccount;
  /** hash of everything that, when changed, makes the cached tokens worthless */
  readonly credentialKey: string;
  /** the refresh token to use: the configured one or the latest rotation of it */
  refreshToken: string;
  state: TokenState;
  token?: CachedToken;
  inflight?: Promise<string>;
  timer?: NodeJS.Timeout;
  /** when the armed timer should act; re-armed when beyond setTimeout's range */
  timerAt: number;
  timerCapped: boolean;
  backoff: Backoff;
  retryAt: number;
  /** the error getToken rejects with while in needs_reauth or backoff */
  failure?: SmtpError;
  lastError?: string;
  refreshes: number;
  dropped: boolean;
}

function credentialKey(a: TokenAccount): string {
  const parts = [
    a.provider.name,
    a.provider.tokenUrl,
    a.provider.scope,
    a.tenant ?? a.provider.tenant,
    a.clientId,
    a.clientSecret ?? '',
    a.refreshToken,
  ];
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
}

function cached(value: string, expiresAt: number, lifetimeMs: number): CachedToken {
  const margin = Math.min(SAFETY_MARGIN_MS, lifetimeMs / 10);
  return { value, expiresAt, validUntil: expiresAt - margin, lifetimeMs };
}

export class TokenManager {
  private readonly entries = new Map<string, Entry>();
  private readonly store: StateStore;
  private readonly log: Logger;
  private readonly metrics: Metrics;
  private readonly client: TokenClient;
  private readonly refreshAheadMs: number;
  private readonly warmupConcurrency: number;
  private readonly now: () => number;
  /**
   * Accounts waiting out a backoff after a transient failure, per provider. When any account of the
   * provider refreshes successfully the endpoint is evidently back, and they may all retry at once:
   * otherwise a 30 s outage left mailboxes deferring for their whole backoff (up to minutes) after it
   * ended (found by the chaos suite's token-endpoint-down scenario).
   */
  private readonly backingOff = new Map<string, Set<Entry>>();
  private readonly random: () => number;
  private readonly backoffBaseMs?: number;
  private readonly backoffMaxMs?: number;
  private closed = false;

  constructor(opts: TokenManagerOptions) {
    this.store = opts.store;
    this.log = opts.log;
    this.metrics = opts.metrics;
    this.refreshAheadMs = opts.refreshAheadMs;
    this.warmupConcurrency = Math.max(1, Math.floor(opts.warmupConcurrency));
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.backoffBaseMs = opts.backoffBaseMs;
    this.backoffMaxMs = opts.backoffMaxMs;
    this.client = new TokenClient({ timeoutMs: opts.requestTimeoutMs });
  }

  /**
   * Start-up and every reload: add new accounts, drop removed ones, reset only changed ones. The
   * store keeps nothing of an account no longer configured, however it went (admin API, `accounts
   * remove`, an edit of the file, or while the proxy was stopped): every path ends here.
   */
  setAccounts(accounts: readonly TokenAccount[]): void {
    const next = new Map<string, TokenAccount>();
    for (const a of accounts) next.set(a.email, a);
    for (const [email, entry] of this.entries) {
      const a = next.get(email);
      if (!a) {
        this.drop(entry);
        this.entries.delete(email);
      } else if (credentialKey(a) !== entry.credentialKey) {
        this.drop(entry);
        this.entries.set(email, this.createEntry(email, a));
        this.log.info({ email }, 'account credentials changed: token state reset');
      } else {
        entry.account = a; // same credentials: keep the token, the timer and any needs_reauth verdict
      }
    }
    for (const [email, a] of next) {
      if (!this.entries.has(email)) this.entries.set(email, this.createEntry(email, a));
    }
    this.storeWrite('delete the tokens of removed accounts', () => {
      const gone = this.store.retainAccounts(next.keys());
      if (gone.length)
        this.log.info({ accounts: gone.length }, 'deleted the stored tokens of removed accounts');
    });
  }

  getToken(email: string): Promise<string> {
    const entry = this.entries.get(email);
    if (!entry) return Promise.reject(smtpError('UNKNOWN_ACCOUNT', email));
    const t = entry.token;
    if (t !== undefined && this.now() < t.validUntil) return Promise.resolve(t.value);
    if (entry.inflight) return entry.inflight;
    if (entry.state === 'needs_reauth') return Promise.reject(entry.failure);
    if (entry.failure && this.now() < entry.retryAt) return Promise.reject(entry.failure);
    return this.startRefresh(entry);
  }

  /** The upstream rejected `token`: forget it if it is still the current one (later calls no-op). */
  invalidate(email: string, token: string): void {
    const entry = this.entries.get(email);
    if (!entry?.token || entry.token.value !== token) return;
    entry.token = undefined;
    this.disarm(entry);
    this.storeWrite('delete access token', () => this.store.deleteAccessToken(entry.email));
    this.log.info({ email: entry.email }, 'access token rejected upstream: it will be refreshed');
  }

  /**
   * Fetches tokens for accounts without a valid one, `warmupConcurrency` at a time.
   * ok: accounts holding a valid token afterwards (including ones that already had one);
   * failed: the rest (needs_reauth, in backoff, or the refresh failed).
   */
  async warmup(): Promise<{ ok: number; failed: number }> {
    const all = [...this.entries.values()];
    const todo = all.filter((e) => !(e.token && this.now() < e.token.validUntil));
    let ok = all.length - todo.length;
    let failed = 0;
    let i = 0;
    const worker = async () => {
      while (i < todo.length) {
        const e = todo[i++]!;
        if (e.dropped) continue;
        try {
          await this.getToken(e.email);
          ok++;
        } catch {
          failed++;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.warmupConcurrency, todo.length) }, worker));
    return { ok, failed };
  }

  status(email: string): TokenStatus {
    const e = this.entries.get(email);
    if (!e) return { state: 'unknown', refreshes: 0 };
    return {
      state: e.state,
      ...(e.token ? { expiresAt: e.token.expiresAt } : {}),
      ...(e.lastError !== undefined ? { lastError: e.lastError } : {}),
      refreshes: e.refreshes,
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const e of this.entries.values()) this.disarm(e);
    this.client.close();
  }

  // --- internals ---

  private createEntry(email: string, account: TokenAccount): Entry {
    let refreshToken = account.refreshToken;
    try {
      refreshToken = this.store.getRotatedRefreshToken(email, account.refreshToken) ?? account.refreshToken;
    } catch (err) {
      this.log.warn(
        { email, err: (err as Error).message },
        'cannot read the rotated refresh token from the store',
      );
    }
    const entry: Entry = {
      email,
      account,
      credentialKey: credentialKey(account),
      refreshToken,
      state: 'unknown',
      timerAt: 0,
      timerCapped: false,
      backoff: new Backoff({ baseMs: this.backoffBaseMs, maxMs: this.backoffMaxMs, random: this.random }),
      retryAt: 0,
      refreshes: 0,
      dropped: false,
    };
    this.metrics.accounts.inc({ state: 'unknown' });
    // A restart (or a reload that restores earlier credentials) reuses a stored, still valid token
    // issued for exactly these credentials, so start-up does not refresh every account at once.
    try {
      const stored = this.store.getAccessToken(email, entry.credentialKey);
      const now = this.now();
      if (stored) {
        // the original lifetime is unknown; the remaining one serves for margin and jitter
        const t = cached(stored.token, stored.expiresAt, stored.expiresAt - now);
        if (now < t.validUntil) {
          entry.token = t;
          this.setState(entry, 'ok');
          this.scheduleProactive(entry);
        }
      }
    } catch (err) {
      this.log.warn(
        { email, err: (err as Error).message },
        'cannot read the cached access token from the store',
      );
    }
    return entry;
  }

  /** A refresh of `entry` worked: its provider's other accounts in backoff may retry now. */
  private endpointAnswered(entry: Entry): void {
    const provider = entry.account.provider.name;
    const waiting = this.backingOff.get(provider);
    if (!waiting) return;
    this.backingOff.delete(provider);
    waiting.delete(entry);
    let released = 0;
    for (const e of waiting) {
      if (e.dropped || e.state !== 'error') continue;
      e.retryAt = 0;
      e.backoff.reset();
      released++;
    }
    if (released)
      this.log.info(
        { provider, accounts: released },
        'token endpoint answers again: accounts in backoff retry now',
      );
  }

  private drop(entry: Entry): void {
    entry.dropped = true;
    this.backingOff.get(entry.account.provider.name)?.delete(entry);
    this.disarm(entry);
    this.metrics.accounts.dec({ state: entry.state });
  }

  private setState(entry: Entry, state: TokenState): void {
    if (entry.state === state) return;
    if (!entry.dropped) {
      this.metrics.accounts.dec({ state: entry.state });
      this.metrics.accounts.inc({ state });
    }
    entry.state = state;
  }

  private storeWrite(what: string, fn: () => void): void {
    if (this.closed) return;
    try {
      fn();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, `state store: cannot ${what}`);
    }
  }

  private startRefresh(entry: Entry): Promise<string> {
    const p = this.refresh(entry);
    entry.inflight = p;
    const clear = () => {
      if (entry.inflight === p) entry.inflight = undefined;
    };
    p.then(clear, clear);
    return p;
  }

  private async refresh(entry: Entry): Promise<string> {
    const account = entry.account;
    const provider = account.provider.name;
    const configured = account.refreshToken;
    const used = entry.refreshToken;
    const startedAt = this.now();
    const t0 = performance.now();
    this.setState(entry, 'refreshing');
    let res: RefreshResult;
    try {
      res = await this.client.refresh({
        tokenUrl: tokenUrl(account.provider, account.tenant),
        clientId: account.clientId,
        clientSecret: account.clientSecret,
        refreshToken: used,
        scope: account.provider.scope,
      });
    } catch (err) {
      this.observeDuration(provider, t0);
      throw this.onFailure(entry, err);
    }
    this.observeDuration(provider, t0);

    if (res.refreshToken !== undefined && res.refreshToken !== used) {
      // Persist before use: the provider may have retired the old refresh token already, so losing
      // the new one in a crash would leave the mailbox needing re-authorization.
      try {
        if (!this.closed) this.store.putRotatedRefreshToken(entry.email, configured, res.refreshToken);
      } catch (err) {
        this.adoptRotated(entry.email, configured, res.refreshToken);
        this.log.error(
          { email: entry.email, err: (err as Error).message },
          'cannot persist the rotated refresh token',
        );
        throw this.onFailure(
          entry,
          new TokenGrantError('transient', 'could not persist the rotated refresh token'),
        );
      }
      this.adoptRotated(entry.email, configured, res.refreshToken);
      // removed while this refresh was in flight: setAccounts already deleted the rest of its row
      if (!this.entries.has(entry.email))
        this.storeWrite('delete the tokens of a removed account', () =>
          this.store.deleteAccount(entry.email),
        );
    }

    if (entry.dropped || this.closed) return res.accessToken; // reset meanwhile: serve who asked, cache nothing

    const expiresAt = startedAt + res.expiresInSec * 1000;
    entry.token = cached(res.accessToken, expiresAt, expiresAt - startedAt);
    entry.failure = undefined;
    entry.lastError = undefined;
    entry.retryAt = 0;
    entry.backoff.reset();
    this.endpointAnswered(entry);
    entry.refreshes++;
    this.metrics.tokenRefreshTotal.inc({ provider, result: 'success' });
    this.setState(entry, 'ok');
    this.storeWrite('save access token', () =>
      this.store.putAccessToken(entry.email, res.accessToken, expiresAt, entry.credentialKey),
    );
    this.scheduleProactive(entry);
    this.log.debug(
      {
        email: entry.email,
        provider,
        expiresInSec: res.expiresInSec,
        rotated: res.refreshToken !== undefined,
      },
      'access token refreshed',
    );
    return res.accessToken;
  }

  /** A rotation applies to whichever entry still descends from the same configured refresh token. */
  private adoptRotated(email: string, configured: string, rotated: string): void {
    const cur = this.entries.get(email);
    if (cur && cur.account.refreshToken === configured) cur.refreshToken = rotated;
  }

  private onFailure(entry: Entry, err: unknown): SmtpError {
    const provider = entry.account.provider.name;
    const ge =
      err instanceof TokenGrantError
        ? err
        : new TokenGrantError('transient', `unexpected ${(err as Error)?.name ?? 'error'}`);
    const permanent = ge.kind === 'permanent';
    this.metrics.tokenRefreshTotal.inc({ provider, result: permanent ? 'invalid_grant' : 'error' });
    const failure = permanent
      ? smtpError('NEEDS_REAUTH', entry.email)
      : smtpError('TOKEN_REFRESH_FAILED', entry.email, ge.reason);
    if (entry.dropped || this.closed) return failure;

    entry.failure = failure;
    entry.lastError = ge.reason;
    if (permanent) {
      entry.token = undefined;
      this.disarm(entry);
      this.setState(entry, 'needs_reauth');
      this.storeWrite('delete access token', () => this.store.deleteAccessToken(entry.email));
      this.log.error(
        { email: entry.email, provider, reason: ge.reason },
        'refresh token rejected: the mailbox needs re-authorization (no retries until its credentials change)',
      );
    } else {
      const delay = entry.backoff.next();
      entry.retryAt = this.now() + delay;
      const waiting = this.backingOff.get(provider) ?? new Set<Entry>();
      waiting.add(entry);
      this.backingOff.set(provider, waiting);
      this.setState(entry, 'error');
      // a proactive refresh failed while the current token is still good: try again before it expires
      if (entry.token && entry.retryAt < entry.token.validUntil) this.arm(entry, entry.retryAt);
      this.log.warn(
        {
          email: entry.email,
          provider,
          reason: ge.reason,
          retryInMs: delay,
          failures: entry.backoff.attempts,
        },
        'access token refresh failed',
      );
    }
    return failure;
  }

  private observeDuration(provider: string, t0: number): void {
    this.metrics.tokenRefreshDurationSeconds.observe({ provider }, (performance.now() - t0) / 1000);
  }

  /** ahead = min(refreshAheadMs, lifetime/4) + up to 10% of the lifetime, so accounts don't herd */
  private scheduleProactive(entry: Entry): void {
    const t = entry.token!;
    const ahead = Math.min(this.refreshAheadMs, t.lifetimeMs / 4) + this.random() * 0.1 * t.lifetimeMs;
    this.arm(entry, t.expiresAt - ahead);
  }

  private arm(entry: Entry, at: number): void {
    this.disarm(entry);
    if (this.closed || entry.dropped) return;
    const delay = Math.max(0, at - this.now());
    entry.timerAt = at;
    entry.timerCapped = delay > MAX_TIMER_MS;
    entry.timer = setTimeout(() => this.onTimer(entry), Math.min(delay, MAX_TIMER_MS));
    entry.timer.unref();
  }

  private disarm(entry: Entry): void {
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = undefined;
  }

  private onTimer(entry: Entry): void {
    entry.timer = undefined;
    if (this.closed || entry.dropped) return;
    if (entry.timerCapped) return this.arm(entry, entry.timerAt);
    if (entry.inflight || entry.state === 'needs_reauth') return;
    if (this.now() < entry.retryAt) return this.arm(entry, entry.retryAt);
    // errors are already recorded in the entry; nobody awaits a proactive refresh
    this.startRefresh(entry).catch(() => undefined);
  }
}
