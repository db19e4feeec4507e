import type { HostPort } from '../../config/types.js';
import type { ServiceAccountKeyFile } from './keys.js';

export type SimStyle = 'google' | 'microsoft';

export interface SimFaults {
  /** delay before the final reply to DATA or BDAT LAST (applies to every outcome, drops included) */
  latencyMs: number;
  /** probability 0..1 of `451 4.3.0` at end of DATA or BDAT LAST (message not stored) */
  fail4xxRate: number;
  /** probability 0..1 of `550 5.7.1` at end of DATA or BDAT LAST (message not stored) */
  fail5xxRate: number;
  /** probability 0..1 of closing the socket after the DATA terminator or the last BDAT chunk without a reply (not stored) */
  dropRate: number;
  /** probability 0..1 that the token endpoint answers 500 */
  tokenErrorRate: number;
  /** probability 0..1 that the token endpoint resets the connection without an answer (a host that is down) */
  tokenResetRate: number;
  /** delay before every token endpoint answer */
  tokenLatencyMs: number;
  /** 0 = off; else access tokens stop validating this many seconds after issue, whatever expires_in said */
  expireEarlySec: number;
  /**
   * 0 = off; else every Nth transaction (counted at MAIL FROM, over all connections) loses its
   * connection before the final reply, at a point that cycles: instead of the reply to MAIL, to
   * RCPT, then after the DATA terminator or the last BDAT chunk (not stored)
   */
  dropEvery: number;
  /** the next N MAIL FROM commands get `421 4.7.0 Try again later, closing connection.` (counts down) */
  reject421Next: number;
  /** the next N device-code polls get slow_down, however patient they were (counts down) */
  slowDownNext: number;
}

/** Timings of the interactive flows (authorization code, device code). */
export interface SimFlowSettings {
  /** authorization codes expire this long after issue; default 60 */
  codeLifetimeSec: number;
  /** device codes expire this long after issue (`expires_in`); default 900 */
  deviceCodeLifetimeSec: number;
  /** the device polling interval (`interval` = this / 1000) and the slow_down step; default 5000 */
  deviceIntervalMs: number;
}

/**
 * A registered OAuth client / Azure app registration. A client with a secret or a certificate is
 * confidential and must authenticate at the token endpoint.
 */
export interface SimClientInput {
  clientId: string;
  clientSecret?: string;
  /** microsoft: the tenant the app is registered in; omitted = multi-tenant (known in every tenant) */
  tenant?: string;
  /** exact redirect URIs allowed besides loopback ones (any port, RFC 8252 section 7.3) */
  redirectUris?: string[];
  /** PEM certificate (or public key) for private_key_jwt client assertions */
  certificate?: string;
  /** generate a certificate and key pair; registerClient returns them */
  generateCertificate?: boolean;
  /** mailboxes its app-only (client_credentials) tokens may use: addresses, `@domain`, `*`; default none */
  mailboxes?: string[];
}

export interface SimRegisteredClient {
  clientId: string;
  tenant: string | null;
  /** the certificate's SHA-1 thumbprint, base64url (the `x5t` a client assertion may carry) */
  x5t?: string;
  /** with generateCertificate: the certificate and its private key (PEM) */
  certificate?: string;
  privateKey?: string;
}

/** A Google service account with domain-wide delegation. */
export interface SimServiceAccountInput {
  /** default `svc-<n>@sim-project.iam.gserviceaccount.com` */
  clientEmail?: string;
  /** mailboxes the delegation covers: addresses, `@domain`, `*`; default `*` */
  mailboxes?: string[];
  /** scopes the delegation covers; default https://mail.google.com/ */
  scopes?: string[];
  /** register this PEM public key (or certificate) instead of generating a key file */
  publicKey?: string;
  privateKeyId?: string;
}

export interface SimRegisteredServiceAccount {
  clientEmail: string;
  clientId: string;
  privateKeyId: string;
  /** the Google-format JSON key file, when the simulator generated the key */
  keyFile?: ServiceAccountKeyFile;
}

/** Grant (or with allow=false withdraw) a mailbox to an app or a service account. */
export interface SimPermission {
  clientId?: string;
  serviceAccount?: string;
  mailbox: string;
  allow?: boolean;
}

/** The provider-shaped URLs; microsoft ones have `{tenant}` in the path like the real ones. */
export interface SimEndpoints {
  authorize: string;
  token: string;
  deviceAuthorization: string;
  /** the page where a user enters a device flow's user code */
  verification: string;
}

export interface SimOptions {
  /** plain listener (offers STARTTLS); default 127.0.0.1:2626; port 0 = ephemeral */
  smtp?: HostPort;
  /** implicit-TLS listener; none when omitted */
  smtpTls?: HostPort;
  /** token endpoint, /stats and /control; default 127.0.0.1:8089 */
  http?: HostPort;
  /** default google */
  style?: SimStyle;
  /** expires_in of access tokens, whole seconds >= 1; default 3600 */
  tokenLifetimeSec?: number;
  /** each refresh returns a new refresh token and revokes the old one at once */
  rotateRefreshTokens?: boolean;
  /**
   * Needs rotateRefreshTokens. Presenting a refresh token that rotation already replaced revokes
   * the whole grant (RFC 9700 section 4.14.2): the family's current refresh token and every access
   * token issued from the family; the answer is invalid_grant, counted in `violations`.
   */
  detectRefreshReuse?: boolean;
  /**
   * Needs detectRefreshReuse. For this many seconds after a rotation, presenting the token just
   * replaced is a retry, not reuse: it gets a new access token and the same successor refresh token
   * (only the immediate predecessor, and only while its successor is still the live one). Default 0.
   */
  refreshReuseGraceSec?: number;
  /** authenticated concurrent connections per user; default 10 (google) / 3 (microsoft); 0 = unlimited */
  maxConnectionsPerUser?: number;
  /** accepted MAIL FROM per user in any sliding 60 s window; 0 = unlimited (default) */
  messagesPerMinutePerUser?: number;
  /** AUTH only after STARTTLS on the plain listener (AUTH is then not advertised before TLS) */
  requireTls?: boolean;
  /**
   * advertise CHUNKING and take BDAT (RFC 3030), as smtp.gmail.com and smtp.office365.com do;
   * default true. false: BDAT is an unrecognized command (502), as at a server without it
   */
  chunking?: boolean;
  /** name in the greeting, EHLO reply and certificate; default localhost */
  hostname?: string;
  /** close connections silent for this long with `421 4.4.2`; default 300000 */
  idleTimeoutMs?: number;
  /** use this certificate instead of generating one */
  tls?: { key: string; cert: string };
  faults?: Partial<SimFaults>;
  /** registered clients; none = any client_id is taken for a public client */
  clients?: SimClientInput[];
  /** redirect URIs allowed for every client, besides loopback ones */
  redirectUris?: string[];
  flows?: Partial<SimFlowSettings>;
}

export interface SimStats {
  /** messages stored (answered 250 at end of DATA or to BDAT LAST) */
  messages: number;
  /** bytes of stored messages as received (DATA: dot-stuffed, terminator excluded; BDAT: the chunks' octets) */
  bytes: number;
  perUser: Record<string, number>;
  /** Message-ID header values (trimmed, angle brackets kept) of stored messages, in arrival order */
  messageIds: string[];
  /** true once messageIds reached MAX_MESSAGE_IDS; later ids are counted in messageIdsDropped only */
  messageIdsCapped: boolean;
  messageIdsDropped: number;
  /** stored messages that had no Message-ID header */
  messagesWithoutId: number;
  tokenRequests: number;
  /**
   * Every token request (any grant, answered or refused) keyed by the user it named (refresh token
   * email, JWT sub, or client_id); see refreshesPerUser for successful refreshes only.
   */
  tokenRequestsPerUser: Record<string, number>;
  /** successful refresh_token grants (200 answers) per user */
  refreshesPerUser: Record<string, number>;
  /** token requests answered with an error (400 or injected 500) */
  tokenErrors: number;
  authSuccesses: number;
  authFailures: number;
  connections: {
    open: number;
    total: number;
    /** authenticated connections currently open, per user */
    openPerUser: Record<string, number>;
    peakPerUser: Record<string, number>;
  };
  /** the same counts as violations.concurrentConnections and violations.rate (kept for old readers) */
  limitRejections: { connections: number; rate: number };
  /** what clients did that a strict provider refuses */
  violations: {
    /** AUTHs refused with `432 4.3.2` (over maxConnectionsPerUser) */
    concurrentConnections: number;
    /** MAIL FROMs refused with `451 4.7.0` (over messagesPerMinutePerUser) */
    rate: number;
    /** presentations of a refresh token rotation had replaced (detectRefreshReuse), grace retries excluded */
    refreshTokenReuse: number;
    /** users whose grant was revoked for reuse since the last reset, sorted */
    revokedForReuse: string[];
  };
  faults: { fail4xx: number; fail5xx: number; drops: number; rejected421: number };
  recipients: { accepted: number; rejected: number; tempfailed: number };
  oauth: {
    /** successful token responses by grant_type */
    issued: Record<string, number>;
    /** refused token, authorization and device requests by reason (e.g. code_replayed, pkce_mismatch) */
    refused: Record<string, number>;
    /** answers on the consent and device verification pages */
    consents: { allowed: number; denied: number };
  };
}

export interface Simulator {
  smtp: HostPort;
  smtpTls?: HostPort;
  http: HostPort;
  tokenUrl: string;
  endpoints: SimEndpoints;
  /** the certificate served on both SMTP listeners (clients pass it as `ca`) */
  caPem: string;
  style: SimStyle;
  faults(): SimFaults;
  /** throws on an unknown key or out-of-range value */
  setFaults(f: Partial<SimFaults>): void;
  /** a `simrt.` refresh token, or an email (withdraws that user's grant); also kills the access tokens issued from it */
  revoke(refreshTokenOrEmail: string): void;
  /**
   * Revoke every refresh token this user has used or been issued so far (the user withdrew consent);
   * a refresh token the simulator has not seen yet (a new consent) works. Unlike revoking by email,
   * this also works when rotation has replaced the refresh token the test started with.
   */
  revokeGrants(email: string): void;
  stats(): SimStats;
  /** register (or replace) a client; throws naming the field */
  registerClient(c: SimClientInput): Promise<SimRegisteredClient>;
  /** register a service account; without publicKey the simulator generates the key and returns the key file */
  registerServiceAccount(sa?: SimServiceAccountInput): Promise<SimRegisteredServiceAccount>;
  setPermission(p: SimPermission): void;
  addRedirectUri(uri: string): void;
  flows(): SimFlowSettings;
  setFlows(f: Partial<SimFlowSettings>): void;
  /** clear counters, message ids and rate-limit windows (not tokens, revocations or open connections) */
  reset(): void;
  close(): Promise<void>;
}

/** Upper bound of SimStats.messageIds, so a long benchmark cannot exhaust memory. */
export const MAX_MESSAGE_IDS = 2_000_000;
/** Advertised as SIZE and enforced, like Gmail. */
export const MAX_MESSAGE_SIZE = 35_882_577;
