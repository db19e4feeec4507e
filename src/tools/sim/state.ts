import { randomBytes } from 'node:crypto';
import { MAX_MESSAGE_IDS, type SimFaults, type SimStats } from './types.js';

/** The refresh tokens the simulator accepts: `simrt.<email>.<tag>` (tag without dots). */
export function simRefreshToken(email: string, tag = 'sim'): string {
  if (!email.includes('@')) throw new Error(`simRefreshToken: "${email}" is not an email address`);
  if (tag === '' || tag.includes('.'))
    throw new Error(`simRefreshToken: tag "${tag}" must be non-empty and have no dots`);
  return `simrt.${email}.${tag}`;
}

/** The user a refresh token belongs to (lower-cased), or undefined when it is not a sim token. */
export function refreshTokenUser(token: string): string | undefined {
  if (!token.startsWith('simrt.')) return undefined;
  const lastDot = token.lastIndexOf('.');
  if (lastDot <= 6 || lastDot === token.length - 1) return undefined;
  const email = token.slice(6, lastDot);
  const at = email.indexOf('@');
  if (at <= 0 || at === email.length - 1 || /\s/.test(email)) return undefined;
  return email.toLowerCase();
}

interface AccessToken {
  /** lower-cased user; undefined = application token (client_credentials with a non-email client_id) */
  user: string | undefined;
  /** the refresh token it was issued from, so revoking that token kills it too */
  from: string | undefined;
  /** the grant (authorization code, device code) it came from, so revoking that grant kills it too */
  family?: string;
  /**
   * Which mailboxes it may authenticate as, beyond `user`: the granted scope must cover SMTP, and an
   * app token only reaches mailboxes the app was granted. Asked at every AUTH (permissions change).
   */
  allows?: (mailbox: string) => boolean;
  issuedAt: number;
  expiresAt: number;
}

export interface IssueOptions {
  family?: string;
  allows?: (mailbox: string) => boolean;
}

/** A refresh token rotation replaced, remembered for reuse detection (RFC 9700 section 4.14.2). */
export interface SpentRefreshToken {
  /** the grant family: a bound token's grant, else the chain started by the first token presented */
  family: string;
  user: string;
  /** when it was rotated away (ms) */
  at: number;
  /** the token that replaced it */
  successor: string;
}

export type TokenCheck = 'ok' | 'unknown' | 'expired' | 'wrong-user' | 'forbidden';

/** Counts authenticated connections per user, with the peak since the last reset. */
class Counter {
  readonly current = new Map<string, number>();
  readonly peak = new Map<string, number>();
  get(key: string): number {
    return this.current.get(key) ?? 0;
  }
  inc(key: string): void {
    const n = this.get(key) + 1;
    this.current.set(key, n);
    if (n > (this.peak.get(key) ?? 0)) this.peak.set(key, n);
  }
  dec(key: string): void {
    const n = this.get(key) - 1;
    if (n <= 0) this.current.delete(key);
    else this.current.set(key, n);
  }
}

/**
 * A sliding 60 s window per user as a ring of the last `limit` accept times: the window is full
 * exactly when the oldest of those is younger than 60 s. O(1) per message, `limit` numbers per user.
 */
class RateWindows {
  private readonly rings = new Map<string, { times: Float64Array; head: number }>();
  constructor(private readonly limit: number) {}
  /** Record one message for `user` now; false (and nothing recorded) when the window is full. */
  take(user: string, now: number): boolean {
    if (this.limit <= 0) return true;
    let ring = this.rings.get(user);
    if (!ring) {
      ring = { times: new Float64Array(this.limit).fill(-Infinity), head: 0 };
      this.rings.set(user, ring);
    }
    if (now - ring.times[ring.head]! < 60_000) return false;
    ring.times[ring.head] = now;
    ring.head = (ring.head + 1) % this.limit;
    return true;
  }
  clear(): void {
    this.rings.clear();
  }
}

function inc(map: Map<string, number>, key: string, by = 1): void {
  map.set(key, (map.get(key) ?? 0) + by);
}

/** Everything the SMTP side and the HTTP side share: tokens, limits, faults and counters. */
export class SimState {
  faults: SimFaults;
  /** each refresh returns a new refresh token and revokes the old one */
  rotateRefresh = false;
  /** presenting a rotated-away refresh token revokes its family (needs rotateRefresh) */
  detectRefreshReuse = false;
  /** a rotated-away token presented again within this many ms while its successor is live is a retry */
  refreshReuseGraceMs = 0;
  /** detectRefreshReuse: rotated-away tokens, kept as long as the simulator runs (refreshes are rare) */
  private readonly spentRefreshTokens = new Map<string, SpentRefreshToken>();
  /** detectRefreshReuse: the chain a rotated-in stateless token belongs to, and each family's live token */
  private readonly chainOf = new Map<string, string>();
  private readonly familyHeads = new Map<string, string>();
  private readonly accessTokens = new Map<string, AccessToken>();
  private readonly revokedRefreshTokens = new Set<string>();
  private readonly revokedUsers = new Set<string>();
  /** per user: refresh tokens used or issued and not revoked (for revokeGrants) */
  private readonly liveRefreshTokens = new Map<string, Set<string>>();
  readonly authConnections = new Counter();
  private readonly rate: RateWindows;
  private sweepTimer: NodeJS.Timeout;

  // counters (reset() clears them)
  messages = 0;
  bytes = 0;
  perUser = new Map<string, number>();
  messageIds: string[] = [];
  messageIdsDropped = 0;
  messagesWithoutId = 0;
  tokenRequests = 0;
  tokenRequestsPerUser = new Map<string, number>();
  refreshesPerUser = new Map<string, number>();
  refreshTokenReuse = 0;
  revokedForReuse = new Set<string>();
  tokenErrors = 0;
  authSuccesses = 0;
  authFailures = 0;
  connectionsOpen = 0;
  connectionsTotal = 0;
  connectionLimitRejections = 0;
  rateLimitRejections = 0;
  fail4xx = 0;
  fail5xx = 0;
  drops = 0;
  rejected421 = 0;
  /** transactions started (MAIL FROM), for the dropEvery fault */
  transactions = 0;
  private dropCycle = 0;
  rcptAccepted = 0;
  rcptRejected = 0;
  rcptTempfailed = 0;
  /** token and authorization requests refused, by reason */
  oauthRefused = new Map<string, number>();
  /** successful token responses, by grant_type */
  oauthIssued = new Map<string, number>();
  consentsAllowed = 0;
  consentsDenied = 0;

  constructor(
    faults: SimFaults,
    readonly tokenLifetimeSec: number,
    readonly maxConnectionsPerUser: number,
    messagesPerMinutePerUser: number,
  ) {
    this.faults = faults;
    this.rate = new RateWindows(messagesPerMinutePerUser);
    // Expired tokens are dead weight; sweeping once a minute keeps long benchmarks flat in memory.
    this.sweepTimer = setInterval(() => this.sweep(), 60_000);
    this.sweepTimer.unref();
  }

  dispose(): void {
    clearInterval(this.sweepTimer);
  }

  private sweep(): void {
    const now = Date.now();
    for (const [tok, rec] of this.accessTokens) if (rec.expiresAt <= now) this.accessTokens.delete(tok);
  }

  issueAccessToken(user: string | undefined, from: string | undefined, opts: IssueOptions = {}): string {
    const token = 'simat.' + randomBytes(24).toString('base64url');
    const now = Date.now();
    this.accessTokens.set(token, {
      user,
      from,
      ...opts,
      issuedAt: now,
      expiresAt: now + this.tokenLifetimeSec * 1000,
    });
    return token;
  }

  /** A refresh token the simulator issued, so revokeGrants finds it before its first use. */
  trackRefreshToken(user: string, token: string): void {
    let live = this.liveRefreshTokens.get(user);
    if (!live) this.liveRefreshTokens.set(user, (live = new Set()));
    live.add(token);
  }

  /** Kill the access tokens issued from one grant (its refresh tokens are revoked one by one). */
  revokeFamily(family: string): void {
    for (const [tok, rec] of this.accessTokens) if (rec.family === family) this.accessTokens.delete(tok);
  }

  /**
   * Rotation: a fresh refresh token for the same user; the old one stops working at once. With reuse
   * detection, `family` (see refreshFamily) is where the old one is remembered as spent.
   */
  rotateRefreshToken(old: string, user: string, family?: string): string {
    this.revokedRefreshTokens.add(old);
    const fresh = simRefreshToken(user, randomBytes(12).toString('base64url'));
    const live = this.liveRefreshTokens.get(user);
    live?.delete(old);
    live?.add(fresh);
    if (family !== undefined) {
      this.spentRefreshTokens.set(old, { family, user, at: Date.now(), successor: fresh });
      this.chainOf.delete(old);
      this.chainOf.set(fresh, family);
      this.familyHeads.set(family, fresh);
    }
    return fresh;
  }

  /**
   * The grant family of a refresh token about to be used, for reuse detection; undefined when it is
   * off. A bound token's family is its grant's; a stateless `simrt.` token starts a chain of its own.
   */
  refreshFamily(token: string, boundFamily?: string): string | undefined {
    if (!this.detectRefreshReuse) return undefined;
    return boundFamily ?? this.chainOf.get(token) ?? `chain:${token}`;
  }

  /** With reuse detection: the record of a refresh token rotation replaced, if `token` is one. */
  spentRefreshToken(token: string): SpentRefreshToken | undefined {
    return this.detectRefreshReuse ? this.spentRefreshTokens.get(token) : undefined;
  }

  /** The family's newest refresh token (the last one rotated in), revoked or not. */
  familyHead(family: string): string | undefined {
    return this.familyHeads.get(family);
  }

  /**
   * Reuse detected: revoke the family's live refresh token and every access token issued from the
   * family (bound families' other tokens are revoked by the caller, which knows the bindings).
   */
  revokeForReuse(spent: SpentRefreshToken): void {
    this.refreshTokenReuse++;
    this.revokedForReuse.add(spent.user);
    const head = this.familyHeads.get(spent.family);
    if (head !== undefined) this.revoke(head);
    this.revokeFamily(spent.family);
  }

  refreshTokenValid(token: string): string | undefined {
    const user = refreshTokenUser(token);
    if (!user || this.revokedRefreshTokens.has(token) || this.revokedUsers.has(user)) return undefined;
    let live = this.liveRefreshTokens.get(user);
    if (!live) this.liveRefreshTokens.set(user, (live = new Set()));
    live.add(token);
    return user;
  }

  revokeGrants(email: string): void {
    const user = email.trim().toLowerCase();
    if (!user.includes('@')) throw new Error(`revoke: "${email}" is not an email`);
    for (const token of this.liveRefreshTokens.get(user) ?? []) this.revoke(token);
    this.liveRefreshTokens.delete(user);
  }

  userRevoked(user: string): boolean {
    return this.revokedUsers.has(user.toLowerCase());
  }

  /** Does `token` authorize `user` (case-insensitive) right now? */
  checkAccessToken(token: string, user: string): TokenCheck {
    const rec = this.accessTokens.get(token);
    if (!rec) return 'unknown';
    const lower = user.toLowerCase();
    if (rec.user !== undefined && rec.user !== lower) return 'wrong-user';
    // An application token (client_credentials) serves any user whose grant has not been withdrawn.
    if (rec.user === undefined && this.revokedUsers.has(lower)) return 'unknown';
    if (rec.allows && !rec.allows(lower)) return 'forbidden';
    const now = Date.now();
    const early =
      this.faults.expireEarlySec > 0 ? rec.issuedAt + this.faults.expireEarlySec * 1000 : Infinity;
    if (now >= Math.min(rec.expiresAt, early)) return 'expired';
    return 'ok';
  }

  revoke(refreshTokenOrEmail: string): void {
    const user = refreshTokenUser(refreshTokenOrEmail);
    if (user) {
      this.revokedRefreshTokens.add(refreshTokenOrEmail);
      for (const [tok, rec] of this.accessTokens)
        if (rec.from === refreshTokenOrEmail) this.accessTokens.delete(tok);
      return;
    }
    const email = refreshTokenOrEmail.trim().toLowerCase();
    if (!email.includes('@'))
      throw new Error(`revoke: "${refreshTokenOrEmail}" is neither a simrt. refresh token nor an email`);
    this.revokedUsers.add(email);
    for (const [tok, rec] of this.accessTokens) if (rec.user === email) this.accessTokens.delete(tok);
  }

  countRefusal(reason: string): void {
    inc(this.oauthRefused, reason);
  }

  countIssued(grantType: string): void {
    inc(this.oauthIssued, grantType);
  }

  countRefresh(user: string): void {
    inc(this.refreshesPerUser, user);
  }

  countTokenRequest(user: string | undefined): void {
    this.tokenRequests++;
    if (user) inc(this.tokenRequestsPerUser, user);
  }

  /** Admission of an authenticated connection for `user`; false when over maxConnectionsPerUser. */
  admitConnection(user: string): boolean {
    if (this.maxConnectionsPerUser > 0 && this.authConnections.get(user) >= this.maxConnectionsPerUser) {
      this.connectionLimitRejections++;
      return false;
    }
    this.authConnections.inc(user);
    return true;
  }

  /** A MAIL FROM for `user`; false when over messagesPerMinutePerUser. */
  admitMessage(user: string): boolean {
    if (this.rate.take(user, Date.now())) return true;
    this.rateLimitRejections++;
    return false;
  }

  storeMessage(user: string, messageId: string | undefined, bytes: number): void {
    this.messages++;
    this.bytes += bytes;
    inc(this.perUser, user);
    if (messageId === undefined) this.messagesWithoutId++;
    else if (this.messageIds.length < MAX_MESSAGE_IDS) this.messageIds.push(messageId);
    else this.messageIdsDropped++;
  }

  reset(): void {
    this.messages = this.bytes = this.messagesWithoutId = this.messageIdsDropped = 0;
    this.perUser = new Map();
    this.messageIds = [];
    this.tokenRequests = this.tokenErrors = 0;
    this.tokenRequestsPerUser = new Map();
    this.refreshesPerUser = new Map();
    this.refreshTokenReuse = 0;
    this.revokedForReuse = new Set();
    this.authSuccesses = this.authFailures = 0;
    this.connectionsTotal = this.connectionsOpen;
    this.connectionLimitRejections = this.rateLimitRejections = 0;
    this.fail4xx = this.fail5xx = this.drops = this.rejected421 = 0;
    this.rcptAccepted = this.rcptRejected = this.rcptTempfailed = 0;
    this.oauthRefused = new Map();
    this.oauthIssued = new Map();
    this.consentsAllowed = this.consentsDenied = 0;
    // Peaks restart from what is open now, so they stay truthful about the connections still there.
    this.authConnections.peak.clear();
    for (const [u, n] of this.authConnections.current) this.authConnections.peak.set(u, n);
    this.rate.clear();
  }

  stats(includeIds = true): SimStats {
    return {
      messages: this.messages,
      bytes: this.bytes,
      perUser: Object.fromEntries(this.perUser),
      messageIds: includeIds ? this.messageIds.slice() : [],
      messageIdsCapped: this.messageIds.length >= MAX_MESSAGE_IDS,
      messageIdsDropped: this.messageIdsDropped,
      messagesWithoutId: this.messagesWithoutId,
      tokenRequests: this.tokenRequests,
      tokenRequestsPerUser: Object.fromEntries(this.tokenRequestsPerUser),
      refreshesPerUser: Object.fromEntries(this.refreshesPerUser),
      tokenErrors: this.tokenErrors,
      authSuccesses: this.authSuccesses,
      authFailures: this.authFailures,
      connections: {
        open: this.connectionsOpen,
        total: this.connectionsTotal,
        openPerUser: Object.fromEntries(this.authConnections.current),
        peakPerUser: Object.fromEntries(this.authConnections.peak),
      },
      limitRejections: { connections: this.connectionLimitRejections, rate: this.rateLimitRejections },
      violations: {
        concurrentConnections: this.connectionLimitRejections,
        rate: this.rateLimitRejections,
        refreshTokenReuse: this.refreshTokenReuse,
        revokedForReuse: [...this.revokedForReuse].sort(),
      },
      faults: {
        fail4xx: this.fail4xx,
        fail5xx: this.fail5xx,
        drops: this.drops,
        rejected421: this.rejected421,
      },
      recipients: {
        accepted: this.rcptAccepted,
        rejected: this.rcptRejected,
        tempfailed: this.rcptTempfailed,
      },
      oauth: {
        issued: Object.fromEntries(this.oauthIssued),
        refused: Object.fromEntries(this.oauthRefused),
        consents: { allowed: this.consentsAllowed, denied: this.consentsDenied },
      },
    };
  }

  /** A transaction starts: where (if at all) the dropEvery fault cuts its connection. */
  dropPointForNewTransaction(): 'mail' | 'rcpt' | 'data' | undefined {
    this.transactions++;
    const n = this.faults.dropEvery;
    if (n <= 0 || this.transactions % n !== 0) return undefined;
    return (['mail', 'rcpt', 'data'] as const)[this.dropCycle++ % 3];
  }

  /** true when this device-code poll must get the slow_down of the slowDownNext fault */
  takeSlowDown(): boolean {
    if (this.faults.slowDownNext <= 0) return false;
    this.faults = { ...this.faults, slowDownNext: this.faults.slowDownNext - 1 };
    return true;
  }

  /** true when this MAIL FROM must get the 421 of the reject421Next fault */
  take421(): boolean {
    if (this.faults.reject421Next <= 0) return false;
    this.faults = { ...this.faults, reject421Next: this.faults.reject421Next - 1 };
    this.rejected421++;
    return true;
  }
}
