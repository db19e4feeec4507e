// The upstream side's public types: what the relay hands in and what it gets back.
import type { UpstreamSmtpConfig } from '../config/types.js';
import type { SmtpError, SmtpReply } from '../shared/smtp-reply.js';

export interface UpstreamAccount {
  email: string;
  providerName: string;
  smtp: UpstreamSmtpConfig;
  ehloName: string;
  /** local address for upstream connections; when it cannot be bound the connect fails (no fallback) */
  sourceAddress?: string;
  maxConnections: number;
  maxMessagesPerConnection: number;
  /** 0 = unlimited */
  messagesPerMinute: number;
  idleTimeoutMs: number;
  maxAgeMs: number;
  /**
   * how long a connection due for retirement keeps serving while no replacement can authenticate
   * (default RETIRE_GRACE_MS in pool.ts, which also states the hard bounds)
   */
  retireGraceMs?: number;
  acquireTimeoutMs: number;
  commandTimeoutMs: number;
}

export interface TokenSource {
  getToken(email: string): Promise<string>;
  invalidate(email: string, token: string): void;
  /**
   * The upstream refused a fresh token too (`upstream`: its reply): a more precise failure than
   * UPSTREAM_AUTH_REJECTED when the source knows one (an app-only mailbox not granted to the app)
   */
  authRejected?(email: string, upstream: string): SmtpError | undefined;
}

export interface Envelope {
  from: string;
  to: string[];
  size: number;
  smtputf8?: boolean;
  body8bit?: boolean;
}

export type DeliveryResult =
  /** the upstream's final 2xx after the body */
  | { kind: 'delivered'; reply: SmtpReply }
  /** the upstream's verdict (MAIL, RCPT or DATA refused); nothing was delivered */
  | { kind: 'rejected'; reply: SmtpReply; failedRecipients: { rcpt: string; reply: SmtpReply }[] };

export interface PoolStats {
  idle: number;
  busy: number;
  connecting: number;
  waiting: number;
}
