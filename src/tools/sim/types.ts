import type { HostPort } from '../../config/types.js';

export type SimStyle = 'google' | 'microsoft';

export interface SimFaults {
  /** delay before the final reply to DATA (applies to every outcome, drops included) */
  latencyMs: number;
  /** probability 0..1 of `451 4.3.0` at end of DATA (message not stored) */
  fail4xxRate: number;
  /** probability 0..1 of `550 5.7.1` at end of DATA (message not stored) */
  fail5xxRate: number;
  /** probability 0..1 of closing the socket after the DATA terminator without a reply (not stored) */
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
   * RCPT, then after the DATA terminator (not stored)
   */
  dropEvery: number;
  /** the next N MAIL FROM commands get `421 4.7.0 Try again later, closing connection.` (counts down) */
  reject421Next: number;
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
  /** authenticated concurrent connections per user; default 10 (google) / 3 (microsoft); 0 = unlimited */
  maxConnectionsPerUser?: number;
  /** accepted MAIL FROM per user in any sliding 60 s window; 0 = unlimited (default) */
  messagesPerMinutePerUser?: number;
  /** AUTH only after STARTTLS on the plain listener (AUTH is then not advertised before TLS) */
  requireTls?: boolean;
  /** name in the greeting, EHLO reply and certificate; default localhost */
  hostname?: string;
  /** close connections silent for this long with `421 4.4.2`; default 300000 */
  idleTimeoutMs?: number;
  /** use this certificate instead of generating one */
  tls?: { key: string; cert: string };
  faults?: Partial<SimFaults>;
}

export interface SimStats {
  /** messages stored (answered 250 at end of DATA) */
  messages: number;
  /** bytes of stored messages as received (dot-stuffed, terminator excluded) */
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
  /** keyed by the user the request named (refresh token email, JWT sub, or client_id) */
  tokenRequestsPerUser: Record<string, number>;
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
  limitRejections: { connections: number; rate: number };
  faults: { fail4xx: number; fail5xx: number; drops: number; rejected421: number };
  recipients: { accepted: number; rejected: number; tempfailed: number };
}

export interface Simulator {
  smtp: HostPort;
  smtpTls?: HostPort;
  http: HostPort;
  tokenUrl: string;
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
  /** clear counters, message ids and rate-limit windows (not tokens, revocations or open connections) */
  reset(): void;
  close(): Promise<void>;
}

/** Upper bound of SimStats.messageIds, so a long benchmark cannot exhaust memory. */
export const MAX_MESSAGE_IDS = 2_000_000;
/** Advertised as SIZE and enforced, like Gmail. */
export const MAX_MESSAGE_SIZE = 35_882_577;
