// Access tokens per account (docs/design.md, principle 5): a cached token is returned without I/O; one
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
//
// Token sources (what `status().source` says):
// - `file`: the refresh token configured in the accounts file (and its rotations, in the store).
// - `store`: no refresh token in the file; the one `accounts authorize` (or the web onboarding)
//   sealed in the state store, and its rotations. Without one the account is `needs_authorization`
//   (451 4.7.0 saying to run `accounts authorize`). A new authorization replaces the entry at once:
//   syncAuthorizations(), called on every reload and when the authorize command signals.
// - `client_credentials` (Microsoft app-only) and `service_account` (Google JWT bearer): one token
//   per mailbox, refreshed ahead like the others, nothing to rotate. Their permanent failures name
//   what the administrator must grant (GRANT_FAILED); since the fix happens at the provider, not in
//   our config, they are retried after APP_ONLY_RETRY_MS (or at once on a reload). An upstream that
//   refuses a fresh app-only token at SMTP AUTH means the mailbox was not granted: authRejected().
//
// Shared mode (`shared`: workers or Redis, src/coordination): the entry's token stays the hot-path
// cache, but every refresh goes through refreshOnce: the shared cache first (another instance may
// have refreshed already), then the refresh lock, so one instance refreshes per mailbox and token
// lifetime; a rotated refresh token is stored by compare-and-set under the lock's fence before it
// is used. needs_reauth verdicts are shared, so one instance's dead grant stops the others' tries.
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
import { TokenClient, TokenGrantError } from './token-client.js';
import { clientCredentialsGrant, type ClientAuthentication } from './grants/client-credentials.js';
import { GrantError, grantFailureText } from './grants/errors.js';
import { jwtBearerGrant } from './grants/jwt-bearer.js';
import type { Coordinator } from '../coordination/types.js';
import { refreshOnce } from '../coordination/refresh-flight.js';
import type { ServiceAccountKey } from './grants/service-account-key.js';

interface TokenAccountBase {
  email: string;
  provider: ProviderConfig;
  tenant?: string;
}

/** A delegated account: a mailbox owner's consent, kept as a refresh token. */
export interface RefreshTokenAccount extends TokenAccountBase {
  appOnly?: undefined;
  clientId: string;
  clientSecret?: string;
  /** absent: the one an authorization stored in the state store (source `store`) */
  refreshToken?: string;
}

/** How an app-only account gets its token; built from the provider's `auth` by app/credentials.ts. */
export type AppOnlyGrant =
  | {
      grant: 'client_credentials';
      /** the app's tenant, `{tenant}` substituted */
      tokenUrl: string;
      clientId: string;
      scope: string;
      auth: ClientAuthentication;
      /** changes whenever the secret, certificate or key changes (part of the credential key) */
      fingerprint: string;
    }
  | { grant: 'jwt_bearer'; key: ServiceAccountKey; scope: string; fingerprint: string };

/** An account of an app-only provider: the mailbox is only the XOAUTH2 user (or the JWT `sub`). */
export interface AppOnlyAccount extends TokenAccountBase {
  appOnly: AppOnlyGrant;
}

export type TokenAccount = RefreshTokenAccount | AppOnlyAccount;

export type TokenState = 'ok' | 'refreshing' | 'needs_authorization' | 'needs_reauth' | 'error' | 'unknown';

/** Where an account's tokens come from (accounts list, the admin API and the status page show it). */
export type TokenSource = 'file' | 'store' | 'client_credentials' | 'service_account';

export interface TokenStatus {
  state: TokenState;
  /** absent for accounts no longer (or not yet) configured */
  source?: TokenSource;
  expiresAt?: number;
  lastError?: string;
  refreshes: number;
}

/**
 * How long an app-only mailbox whose grant was refused waits before it is tried again: the fix is
 * made at the provider (consent, delegation, a mailbox permission), which this process cannot see.
 */
export const APP_ONLY_RETRY_MS = 60_000;

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
  /** several instances: refresh through the shared cache, lock and rotation CAS (see the top) */
  shared?: Coordinator;
}

interface TokenResponse {
  accessToken: string;
  expiresInSec: number;
  /** a rotation the provider returned */
  refreshToken?: string;
  /** shared mode: the rotation is already stored (compare-and-set) */
  rotationStored?: boolean;
  /** shared mode: another instance's token from the shared cache; no request was made here */
  fromCache?: boolean;
  /**
   * shared mode: when the token request was sent (epoch ms), later than the refresh's start when it
   * first waited for another instance's lock; the lifetime is counted from here
   */
  requestedAt?: number;
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
  readonly source: TokenSource;
  /** hash of everything that, when changed, makes the cached tokens worthless */
  readonly credentialKey: string;
  /**
   * the refresh token to use: the configured one or the latest rotation of it, or the authorized one
   * from the store; undefined for app-only accounts and while `needs_authorization`
   */
  refreshToken?: string;
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
  /** shared mode: the access token the upstream rejected last (not to be taken from the cache again) */
  rejected?: string;
  /** shared mode: needs_reauth came from (or was told to) the other instances */
  sharedVerdict?: boolean;
  /** shared mode: a new authorization found in the local store, to be put in the shared state first */
  unsharedAuthorization?: string;
}

function sourceOf(a: TokenAccount): TokenSource {
  if (a.appOnly) return a.appOnly.grant === 'client_credentials' ? 'client_credentials' : 'service_account';
  return a.refreshToken === undefined ? 'store' : 'file';
}

function credentialKey(a: TokenAccount): string {
  const parts = a.appOnly
    ? a.appOnly.grant === 'client_credentials'
      ? [a.provider.name, 'client_credentials', a.appOnly.tokenUrl, a.appOnly.clientId, a.appOnly.scope]
      : [a.provider.name, 'jwt_bearer', a.appOnly.key.tokenUri, a.appOnly.key.clientEmail, a.appOnly.scope]
    : [
        a.provider.name,
        a.provider.tokenUrl,
        a.provider.scope,
        a.tenant ?? a.provider.tenant,
        a.clientId,
        a.clientSecret ?? '',
        // a store-held token is compared on its own (syncAuthorizations); the file's is the lineage
        a.refreshToken ?? '(store)',
      ];
  if (a.appOnly) parts.push(a.appOnly.fingerprint);
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
  private readonly shared?: Coordinator;
  private readonly requestTimeoutMs: number;
  private readonly unsubscribe: (() => void)[] = [];
  private closed = false;

  constructor(opts: TokenManagerOptions) {
    this.shared = opts.shared;
    this.requestTimeoutMs = opts.requestTimeoutMs;
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
    if (this.shared) {
      this.unsubscribe.push(
        this.shared.onAccountState((email, state) => this.sharedState(email, state)),
        this.shared.onHealth((h) => {
          if (h.state === 'ok') this.sharedStateBack();
        }),
      );
      const done = this.shared.onRefreshDone?.((email) => this.followRefresh(email));
      if (done) this.unsubscribe.push(done);
    }
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
        this.sharedWrite('forget a removed account', (c) => c.deleteAccount(email));
      } else if (credentialKey(a) !== entry.credentialKey) {
        this.drop(entry);
        this.entries.set(email, this.createEntry(email, a));
        this.log.info({ email }, 'account credentials changed: token state reset');
      } else {
        entry.account = a; // same credentials: keep the token, the timer and any needs_reauth verdict
        // ...except an app-only refusal: a reload is how an operator says "granted now, try again"
        if (entry.source !== 'file' && entry.source !== 'store' && entry.state === 'needs_reauth')
          entry.retryAt = 0;
      }
    }
    for (const [email, a] of next) {
      if (!this.entries.has(email)) this.entries.set(email, this.createEntry(email, a));
    }
    this.syncAuthorizations();
    this.storeWrite('delete the tokens of removed accounts', () => {
      const gone = this.store.retainAccounts(next.keys());
      if (gone.length)
        this.log.info({ accounts: gone.length }, 'deleted the stored tokens of removed accounts');
    });
  }

  /**
   * Accounts whose refresh token lives in the store: adopt a new authorization found there (the
   * `accounts authorize` command or the web onboarding wrote it), replacing the entry, so a mailbox
   * in needs_authorization or needs_reauth works again at once. Returns the accounts replaced.
   */
  syncAuthorizations(): string[] {
    const replaced: string[] = [];
    for (const [email, entry] of this.entries) {
      if (entry.source !== 'store') continue;
      let stored: string | undefined;
      try {
        stored = this.store.getAuthorizedRefreshToken(email);
      } catch (err) {
        this.log.warn({ email, err: (err as Error).message }, 'cannot read the stored authorization');
        continue;
      }
      if (stored === undefined || stored === entry.refreshToken) continue;
      this.drop(entry);
      // an access token cached for the old grant is not the new one's
      this.forgetAccessToken(email);
      const fresh = this.createEntry(email, entry.account);
      this.entries.set(email, fresh);
      replaced.push(email);
      this.log.info({ email }, 'new authorization in the state store: token state reset');
      // shared mode: the other instances (and this one's refreshes) read it from the shared state,
      // so it goes there before the first refresh
      if (this.shared) fresh.unsharedAuthorization = stored;
    }
    if (replaced.length) this.warmup().catch(() => undefined);
    this.syncSharedAuthorizations();
    return replaced;
  }

  /**
   * Shared mode: an authorization made on another instance (another host's onboarding) is in the
   * shared state only. Mailboxes still waiting for one look there.
   */
  private syncSharedAuthorizations(): void {
    const c = this.shared;
    if (!c || this.closed) return;
    for (const [email, entry] of this.entries) {
      if (
        entry.source !== 'store' ||
        (entry.state !== 'needs_authorization' && entry.state !== 'needs_reauth')
      )
        continue;
      c.getRefreshToken(email, undefined).then(
        (token) => {
          if (token === undefined || this.closed || this.entries.get(email) !== entry) return;
          if (token === entry.refreshToken) return;
          this.drop(entry);
          this.entries.set(email, this.createEntry(email, entry.account, token));
          this.log.info({ email }, 'new authorization in the shared state: token state reset');
          this.getToken(email).catch(() => undefined);
        },
        (err: unknown) =>
          this.log.warn(
            { email, err: (err as Error)?.message },
            'shared state: cannot read the authorization',
          ),
      );
    }
  }

  getToken(email: string): Promise<string> {
    const entry = this.entries.get(email);
    if (!entry) return Promise.reject(smtpError('UNKNOWN_ACCOUNT', email));
    const t = entry.token;
    if (t !== undefined && this.now() < t.validUntil) return Promise.resolve(t.value);
    if (entry.inflight) return entry.inflight;
    // needs_authorization and a refresh token's needs_reauth wait forever (retryAt = Infinity)
    if (entry.failure && this.now() < entry.retryAt) return Promise.reject(entry.failure);
    return this.startRefresh(entry);
  }

  /**
   * The upstream refused a token just fetched for `email` (the pool's second try). For an app-only
   * account that means the mailbox was not granted to the app (or has SMTP AUTH off): the error
   * names what to grant and the account waits APP_ONLY_RETRY_MS before trying again. Undefined for
   * delegated accounts, whose generic reply stands.
   */
  authRejected(email: string, upstream: string): SmtpError | undefined {
    const entry = this.entries.get(email);
    const grant = entry?.account.appOnly;
    if (!entry || !grant) return undefined;
    const said = upstream.length > 120 ? `${upstream.slice(0, 117)}...` : upstream;
    const hint =
      grant.grant === 'client_credentials'
        ? `grant the app ${grant.clientId} access to the mailbox (Add-MailboxPermission -Identity ${email} ` +
          `-User <its service principal> -AccessRights FullAccess) and enable SMTP AUTH for it ` +
          `(Set-CASMailbox -SmtpClientAuthenticationDisabled $false)`
        : `check that ${email} is an active Workspace user with Gmail enabled and that the domain-wide ` +
          `delegation of client id ${grant.key.clientId ?? grant.key.clientEmail} covers ${grant.scope}`;
    const text = `Mailbox ${email} was refused by the upstream with an app-only token (${said}): ${hint}`;
    const failure = smtpError('GRANT_FAILED', text.length > 480 ? `${text.slice(0, 477)}...` : text);
    if (!entry.dropped && !this.closed) {
      entry.token = undefined;
      this.disarm(entry);
      entry.failure = failure;
      entry.lastError = `upstream refused the app-only token: ${said}`;
      entry.retryAt = this.now() + APP_ONLY_RETRY_MS;
      this.setState(entry, 'needs_reauth');
      this.forgetAccessToken(entry.email);
      this.log.error(
        { email, upstream: said },
        'upstream refused the app-only token: the mailbox is not granted',
      );
    }
    return failure;
  }

  /**
   * A refresh made outside the manager (the admin API's `?verify=true`) spent `configured` and the
   * provider rotated it to `next`: keep `next` as that lineage's rotation, or the account's first
   * refresh presents a retired token (invalid_grant; a provider with reuse detection revokes the
   * grant). Shared mode: under the mailbox's refresh lock, by compare-and-set. Rejects when it
   * cannot be kept, so the caller does not report success.
   */
  async keepRotation(email: string, configured: string, next: string): Promise<void> {
    const c = this.shared;
    if (!c) return this.store.putRotatedRefreshToken(email, configured, next);
    const lock = await c.acquireRefreshLock(email, 2 * this.requestTimeoutMs + 5000);
    if (!lock) throw new Error(`another instance is refreshing the token of ${email}; try again`);
    try {
      const r = await c.rotateRefreshToken(email, { configured, used: configured, next, fence: lock.fence });
      if (r !== 'ok') throw new Error(`the refresh token of ${email} was rotated meanwhile (${r})`);
    } finally {
      await lock.release();
    }
    const entry = this.entries.get(email);
    if (
      entry &&
      !entry.account.appOnly &&
      entry.account.refreshToken === configured &&
      entry.refreshToken === configured
    )
      entry.refreshToken = next;
  }

  /** The upstream rejected `token`: forget it if it is still the current one (later calls no-op). */
  invalidate(email: string, token: string): void {
    const entry = this.entries.get(email);
    if (!entry?.token || entry.token.value !== token) return;
    entry.token = undefined;
    entry.rejected = token;
    this.disarm(entry);
    this.forgetAccessToken(email, token);
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
      source: e.source,
      ...(e.token ? { expiresAt: e.token.expiresAt } : {}),
      ...(e.lastError !== undefined ? { lastError: e.lastError } : {}),
      refreshes: e.refreshes,
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const u of this.unsubscribe) u();
    for (const e of this.entries.values()) this.disarm(e);
    this.client.close();
  }

  // --- internals ---

  private createEntry(email: string, account: TokenAccount, authorized?: string): Entry {
    const source = sourceOf(account);
    let refreshToken = account.appOnly ? undefined : account.refreshToken;
    try {
      if (source === 'file')
        refreshToken = this.store.getRotatedRefreshToken(email, refreshToken!) ?? refreshToken;
      else if (source === 'store') refreshToken = authorized ?? this.store.getAuthorizedRefreshToken(email);
    } catch (err) {
      this.log.warn({ email, err: (err as Error).message }, 'cannot read the refresh token from the store');
    }
    const entry: Entry = {
      email,
      account,
      source,
      credentialKey: credentialKey(account),
      ...(refreshToken !== undefined ? { refreshToken } : {}),
      state: 'unknown',
      timerAt: 0,
      timerCapped: false,
      backoff: new Backoff({ baseMs: this.backoffBaseMs, maxMs: this.backoffMaxMs, random: this.random }),
      retryAt: 0,
      refreshes: 0,
      dropped: false,
    };
    this.metrics.accounts.inc({ state: 'unknown' });
    if (source === 'store' && refreshToken === undefined) {
      entry.failure = smtpError('NEEDS_AUTHORIZATION', email);
      entry.retryAt = Infinity;
      entry.lastError = 'no refresh token yet: run `xoauth2-proxy accounts authorize`';
      this.setState(entry, 'needs_authorization');
      return entry;
    }
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
    const startedAt = this.now();
    const t0 = performance.now();
    this.setState(entry, 'refreshing');
    let res: TokenResponse;
    try {
      res = this.shared ? await this.sharedRequest(entry, startedAt) : await this.requestToken(entry);
    } catch (err) {
      this.observeDuration(provider, t0);
      throw this.onFailure(entry, err);
    }
    this.observeDuration(provider, t0);

    const used = entry.refreshToken;
    if (res.rotationStored) {
      if (res.refreshToken !== undefined) entry.refreshToken = res.refreshToken;
    } else if (!account.appOnly && res.refreshToken !== undefined && res.refreshToken !== used) {
      const configured = account.refreshToken;
      // Persist before use: the provider may have retired the old refresh token already, so losing
      // the new one in a crash would leave the mailbox needing re-authorization.
      try {
        if (!this.closed) this.persistRotation(entry.email, configured, used!, res.refreshToken);
      } catch (err) {
        this.adoptRotated(entry.email, configured, used!, res.refreshToken);
        this.log.error(
          { email: entry.email, err: (err as Error).message },
          'cannot persist the rotated refresh token',
        );
        throw this.onFailure(
          entry,
          new TokenGrantError('transient', 'could not persist the rotated refresh token'),
        );
      }
      this.adoptRotated(entry.email, configured, used!, res.refreshToken);
      // removed while this refresh was in flight: setAccounts already deleted the rest of its row
      if (!this.entries.has(entry.email))
        this.storeWrite('delete the tokens of a removed account', () =>
          this.store.deleteAccount(entry.email),
        );
    }

    if (entry.dropped || this.closed) return res.accessToken; // reset meanwhile: serve who asked, cache nothing

    const expiresAt = startedAt + res.expiresInSec * 1000;
    // a token from the shared cache: its lifetime is unknown; the last one's (or what is left) serves
    const lifetimeMs = res.fromCache
      ? Math.max(expiresAt - this.now(), entry.token?.lifetimeMs ?? 0)
      : expiresAt - (res.requestedAt ?? startedAt);
    entry.token = cached(res.accessToken, expiresAt, lifetimeMs);
    entry.failure = undefined;
    entry.lastError = undefined;
    entry.retryAt = 0;
    entry.rejected = undefined;
    entry.backoff.reset();
    this.endpointAnswered(entry);
    if (!res.fromCache) {
      entry.refreshes++;
      this.metrics.tokenRefreshTotal.inc({ provider, result: 'success' });
    }
    this.setState(entry, 'ok');
    if (entry.sharedVerdict) {
      entry.sharedVerdict = false;
      this.sharedWrite('share the account state', (c) => c.setAccountState(entry.email, 'ok'));
    }
    // shared mode: the coordinator cached it (and keeps its own copy in the store)
    if (!this.shared)
      this.storeWrite('save access token', () =>
        this.store.putAccessToken(entry.email, res.accessToken, expiresAt, entry.credentialKey),
      );
    this.scheduleProactive(entry);
    this.log.debug(
      {
        email: entry.email,
        provider,
        source: entry.source,
        expiresInSec: res.expiresInSec,
        rotated: res.refreshToken !== undefined,
      },
      'access token refreshed',
    );
    return res.accessToken;
  }

  /**
   * Shared mode: the token from the shared cache when it is newer than the one being replaced, else
   * one instance refreshes under the mailbox's lock (coordination/refresh-flight.ts).
   */
  private async sharedRequest(entry: Entry, startedAt: number): Promise<TokenResponse> {
    const a = entry.account;
    const lifetime = entry.token?.lifetimeMs;
    // A token due for its proactive refresh has at most `ahead` left (scheduleProactive); one in the
    // cache with more is another instance's newer token. Without one, any token good for a second.
    const minValidityMs =
      lifetime !== undefined
        ? Math.min(this.refreshAheadMs, lifetime / 4) + 0.1 * lifetime + Math.min(1000, lifetime / 20)
        : 1000;
    // a token request may take requestTimeoutMs; a holder paused past the TTL is fenced out
    const lockTtlMs = 2 * this.requestTimeoutMs + 5000;
    let rotated: string | undefined;
    let requestedAt: number | undefined;
    try {
      if (entry.unsharedAuthorization !== undefined) {
        await this.shared!.putAuthorizedRefreshToken(entry.email, entry.unsharedAuthorization);
        entry.unsharedAuthorization = undefined;
      }
      const out = await refreshOnce(this.shared!, {
        mailbox: entry.email,
        lineage: entry.credentialKey,
        // app-only accounts have no refresh token: a lineage that never has a stored one
        configured: a.appOnly ? `app-only:${entry.credentialKey}` : a.refreshToken,
        minValidityMs,
        lockTtlMs,
        waitMs: lockTtlMs + 5000,
        ...(entry.rejected !== undefined ? { rejected: entry.rejected } : {}),
        now: this.now,
        refresh: async (refreshToken) => {
          // the expiry counts from this request, not from the refresh's start: a wait for a lock that
          // outlasted a token lifetime (its holder died, or its release was lost in a Redis restart)
          // would store a token already expired, and every instance waiting would refresh in turn
          requestedAt = this.now();
          const r = await this.requestToken(entry, a.appOnly ? undefined : refreshToken);
          rotated =
            r.refreshToken !== undefined && r.refreshToken !== refreshToken ? r.refreshToken : undefined;
          return {
            accessToken: r.accessToken,
            expiresAt: requestedAt + r.expiresInSec * 1000,
            ...(r.refreshToken !== undefined ? { refreshToken: r.refreshToken } : {}),
          };
        },
        onCacheError: (err) =>
          this.log.warn(
            { email: entry.email, err: (err as Error).message },
            'shared state: cannot cache the access token',
          ),
      });
      // another instance refreshed (and may have rotated): read the rotation, so this instance's
      // copy is current should the shared state lose it (Redis keeps what it reads locally)
      if (!out.refreshed && !a.appOnly)
        this.sharedWrite('read the rotated refresh token', (c) =>
          c.getRefreshToken(entry.email, a.refreshToken).then((t) => {
            if (t !== undefined && this.entries.get(entry.email) === entry) entry.refreshToken = t;
          }),
        );
      return {
        accessToken: out.accessToken,
        expiresInSec: (out.expiresAt - startedAt) / 1000,
        fromCache: !out.refreshed,
        rotationStored: true,
        ...(out.refreshed && requestedAt !== undefined ? { requestedAt } : {}),
        ...(out.refreshed && rotated !== undefined ? { refreshToken: rotated } : {}),
      };
    } catch (err) {
      // the grant's own errors keep their kind; the shared state's are temporary
      if (err instanceof TokenGrantError || (err as { code?: string })?.code === 'NEEDS_AUTHORIZATION')
        throw err;
      throw new TokenGrantError('transient', (err as Error)?.message ?? String(err));
    }
  }

  /**
   * Another instance refreshed a mailbox (Redis): read its rotation now, so this instance's copy is
   * current should Redis lose its data (the instance that seeds it again offers its own copy, and a
   * retired one would be a reuse: the grant revoked), and adopt the new access token, whose renewal
   * is then timed from it.
   */
  private followRefresh(email: string): void {
    const entry = this.entries.get(email);
    if (!entry || entry.dropped || this.closed || entry.inflight) return;
    if (entry.state === 'needs_reauth' || entry.state === 'needs_authorization') return;
    const a = entry.account;
    this.sharedWrite("follow another instance's refresh", async (c) => {
      if (!a.appOnly) {
        const rt = await c.getRefreshToken(email, a.refreshToken);
        if (rt !== undefined && this.entries.get(email) === entry) entry.refreshToken = rt;
      }
      const t = await c.getAccessToken(email, entry.credentialKey);
      if (!t || this.entries.get(email) !== entry || entry.inflight || this.closed) return;
      if (entry.token && t.expiresAt <= entry.token.expiresAt) return;
      if (t.token === entry.rejected) return;
      const lifetimeMs = Math.max(t.expiresAt - this.now(), entry.token?.lifetimeMs ?? 0);
      if (entry.state === 'needs_reauth' || entry.state === 'needs_authorization') return;
      entry.token = cached(t.token, t.expiresAt, lifetimeMs);
      this.setState(entry, 'ok');
      this.scheduleProactive(entry);
    });
  }

  /** Another instance decided an account's state: a dead grant there is dead here too. */
  private sharedState(email: string, state: string): void {
    const entry = this.entries.get(email);
    if (!entry || entry.dropped || this.closed || entry.account.appOnly) return;
    if (state === 'needs_reauth' && entry.state !== 'needs_reauth') {
      entry.token = undefined;
      entry.sharedVerdict = true;
      entry.failure = smtpError('NEEDS_REAUTH', email);
      entry.lastError = 'refresh token rejected (seen by another instance)';
      entry.retryAt = Infinity;
      this.disarm(entry);
      this.setState(entry, 'needs_reauth');
      this.log.error(
        { email },
        'another instance found the refresh token rejected: the mailbox needs re-authorization',
      );
    } else if (state === 'ok' && entry.state === 'needs_reauth' && entry.sharedVerdict) {
      entry.sharedVerdict = false;
      entry.failure = undefined;
      entry.retryAt = 0;
      this.setState(entry, 'unknown');
    }
  }

  /** The shared state is reachable again: accounts waiting out a backoff (the lock was unreachable) retry now. */
  private sharedStateBack(): void {
    if (this.closed) return;
    let released = 0;
    for (const e of this.entries.values()) {
      if (e.dropped || e.state !== 'error') continue;
      e.retryAt = 0;
      e.backoff.reset();
      released++;
    }
    if (released) this.warmup().catch(() => undefined);
  }

  /**
   * Forget a cached access token; with `token`, only while it is still that one. Shared mode: the
   * coordinator's cache (which, in-process or with workers, is the same store another instance may
   * just have put a newer token in).
   */
  private forgetAccessToken(email: string, token?: string): void {
    if (this.shared) this.sharedWrite('forget an access token', (c) => c.invalidateAccessToken(email, token));
    else this.storeWrite('delete access token', () => this.store.deleteAccessToken(email));
  }

  private sharedWrite(what: string, fn: (c: Coordinator) => Promise<void>): void {
    const c = this.shared;
    if (!c || this.closed) return;
    fn(c).catch((err: unknown) =>
      this.log.warn({ err: (err as Error)?.message ?? String(err) }, `shared state: cannot ${what}`),
    );
  }

  /** One token request for the entry's source (shared mode: with the latest rotation from the shared state). */
  private requestToken(entry: Entry, refreshToken = entry.refreshToken): Promise<TokenResponse> {
    const a = entry.account;
    if (a.appOnly?.grant === 'client_credentials') {
      const g = a.appOnly;
      return clientCredentialsGrant(this.client, {
        tokenUrl: g.tokenUrl,
        clientId: g.clientId,
        scope: g.scope,
        auth: g.auth,
        now: this.now,
      });
    }
    if (a.appOnly?.grant === 'jwt_bearer') {
      return jwtBearerGrant(this.client, {
        key: a.appOnly.key,
        subject: entry.email,
        scope: a.appOnly.scope,
        now: this.now,
      });
    }
    if (a.appOnly || refreshToken === undefined)
      return Promise.reject(smtpError('NEEDS_AUTHORIZATION', entry.email));
    return this.client.refresh({
      tokenUrl: tokenUrl(a.provider, a.tenant),
      clientId: a.clientId,
      clientSecret: a.clientSecret,
      refreshToken,
      scope: a.provider.scope,
    });
  }

  /**
   * A file token's rotation is stored under its lineage. A store token's is stored only while the
   * store still holds the one used: a new authorization written meanwhile must not be overwritten
   * by the old grant's rotation.
   */
  private persistRotation(
    email: string,
    configured: string | undefined,
    used: string,
    rotated: string,
  ): void {
    if (configured !== undefined) return this.store.putRotatedRefreshToken(email, configured, rotated);
    if (this.store.getAuthorizedRefreshToken(email) === used)
      this.store.putAuthorizedRefreshToken(email, rotated);
  }

  /**
   * A rotation applies to whichever entry still descends from the same configured refresh token
   * (for store tokens: still uses the token that was rotated).
   */
  private adoptRotated(email: string, configured: string | undefined, used: string, rotated: string): void {
    const cur = this.entries.get(email);
    if (!cur || cur.account.appOnly || cur.account.refreshToken !== configured) return;
    if (configured === undefined && cur.refreshToken !== used) return;
    cur.refreshToken = rotated;
  }

  private onFailure(entry: Entry, err: unknown): SmtpError {
    const provider = entry.account.provider.name;
    const ge =
      err instanceof TokenGrantError
        ? err
        : new TokenGrantError('transient', `unexpected ${(err as Error)?.name ?? 'error'}`);
    const permanent = ge.kind === 'permanent';
    const appOnly = entry.account.appOnly !== undefined;
    this.metrics.tokenRefreshTotal.inc({ provider, result: permanent ? 'invalid_grant' : 'error' });
    const failure = !permanent
      ? smtpError('TOKEN_REFRESH_FAILED', entry.email, ge.reason)
      : appOnly && ge instanceof GrantError
        ? smtpError('GRANT_FAILED', grantFailureText(ge, entry.email))
        : smtpError('NEEDS_REAUTH', entry.email);
    if (entry.dropped || this.closed) return failure;

    entry.failure = failure;
    entry.lastError = permanent && ge instanceof GrantError ? ge.message : ge.reason;
    if (permanent) {
      entry.token = undefined;
      entry.retryAt = appOnly ? this.now() + APP_ONLY_RETRY_MS : Infinity;
      this.disarm(entry);
      this.setState(entry, 'needs_reauth');
      this.forgetAccessToken(entry.email);
      if (!appOnly && this.shared) {
        entry.sharedVerdict = true;
        const why = entry.lastError;
        this.sharedWrite('share the account state', (c) =>
          c.setAccountState(entry.email, 'needs_reauth', why),
        );
      }
      if (appOnly)
        this.log.error(
          { email: entry.email, provider, reason: ge.reason, retryInMs: APP_ONLY_RETRY_MS },
          `app-only token refused: ${failure.reply.text}`,
        );
      else
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
    if (entry.inflight || entry.state === 'needs_reauth' || entry.state === 'needs_authorization') return;
    if (this.now() < entry.retryAt) return this.arm(entry, entry.retryAt);
    // errors are already recorded in the entry; nobody awaits a proactive refresh
    this.startRefresh(entry).catch(() => undefined);
  }
}
