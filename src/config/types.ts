// The resolved, validated configuration snapshot. Everything outside src/config reads only these
// types; the loader turns the user's YAML/JSON into them (durations in ms, defaults applied,
// emails lower-cased, paths absolute). Snapshots are deep-frozen and never mutated.

export type Security = 'none' | 'starttls' | 'tls';

import type { HostPort } from '../shared/net.js';
export type { HostPort };

export interface UpstreamSmtpConfig {
  host: string;
  port: number;
  security: Security;
  /** PEM text of extra CA certificates (the config key `ca` is a file path; the loader reads it). */
  ca?: string;
  rejectUnauthorized: boolean;
  /** send with BDAT (CHUNKING, RFC 3030) when the server offers it and PIPELINING; absent = true */
  chunking?: boolean;
}

/** The OAuth client (app registration) mailboxes authorize in the interactive flows. */
export interface OAuthClientConfig {
  clientId: string;
  /** confidential clients only */
  clientSecret?: string;
}

/**
 * Microsoft app-only access (client credentials, RFC 6749 section 4.4): one app registration with
 * SMTP.SendAsApp reaches every mailbox it was granted; XOAUTH2 `user=` names the mailbox.
 */
export interface ClientCredentialsAuthConfig {
  type: 'client_credentials';
  /** the tenant the app is registered in; absent: the provider's (never "common") */
  tenant?: string;
  clientId: string;
  /** exactly one of clientSecret and certificate */
  clientSecret?: string;
  /** PEM texts of the certificate and its RSA private key (private_key_jwt), with their paths */
  certificate?: { certificate: string; privateKey: string; certificateFile: string; privateKeyFile: string };
  /** default https://outlook.office365.com/.default */
  scope: string;
}

/** Google service account with domain-wide delegation (JWT bearer, RFC 7523): `sub` = the mailbox. */
export interface ServiceAccountAuthConfig {
  type: 'service_account';
  /** absolute path of the JSON key file */
  keyFile: string;
  /** the key file's text (it holds the private key; read at load so a reload re-reads it) */
  key: string;
  /** default: the provider's scope (https://mail.google.com/) */
  scope: string;
}

/** App-only modes, configured once per provider entry: its accounts need only email and password. */
export type ProviderAuthConfig = ClientCredentialsAuthConfig | ServiceAccountAuthConfig;

export interface ProviderConfig {
  name: string;
  /** May contain `{tenant}`: use tokenUrl() of config/providers.ts for an account's endpoint. */
  tokenUrl: string;
  /** authorization endpoint of the authorization-code flow; may contain `{tenant}` (providerUrl()) */
  authorizeUrl?: string;
  /** device authorization endpoint (RFC 8628); may contain `{tenant}` */
  deviceAuthorizationUrl?: string;
  /** the client accounts without a clientId of their own use (refresh-token accounts) */
  oauthClient?: OAuthClientConfig;
  /** app-only: every account of the provider gets its tokens this way (no refresh tokens) */
  auth?: ProviderAuthConfig;
  tenant: string;
  scope: string;
  smtp: UpstreamSmtpConfig;
  maxConnectionsPerAccount: number;
  maxMessagesPerConnection: number;
  /** 0 = unlimited */
  messagesPerMinute: number;
  connectionIdleTimeoutMs: number;
  connectionMaxAgeMs: number;
  /** How long a message may wait for a free upstream connection before `451 4.7.0`. */
  acquireTimeoutMs: number;
  /** Timeout for connect, TLS, greeting, each command reply. */
  commandTimeoutMs: number;
}

export interface AccountConfig {
  /** lower-cased; the AUTH username */
  email: string;
  provider: string;
  /** absent: the provider's oauthClient (refresh-token providers) or its app-only auth */
  clientId?: string;
  clientSecret?: string;
  /**
   * absent: the one `accounts authorize` stored (sealed) in the state store, or none yet (the
   * account then needs authorization); never set for app-only providers
   */
  refreshToken?: string;
  /** PHC-style scrypt string from `hash-password`. */
  passwordHash?: string;
  /** Plain-text password (accepted with a warning). */
  password?: string;
  tenant?: string;
  sourceAddress?: string;
  maxConnections?: number;
  messagesPerMinute?: number;
}

export interface SmtpListenConfig {
  listen: HostPort[];
  tlsListen: HostPort[];
  /** PEM text (the config keys are file paths; the loader reads them). */
  tls?: { cert: string; key: string; certPath: string; keyPath: string };
  /** undefined = default: required on non-loopback listeners only */
  requireTls?: boolean;
  hostname: string;
  maxClients: number;
  maxMessageSize: number;
  maxRecipients: number;
  idleTimeoutMs: number;
  /** bytes/s: DATA must complete within idleTimeout + bytes / minDataRate (0 = no DATA deadline) */
  minDataRate: number;
  trustedNetworks: string[];
  /** PROXY protocol v1 header expected: from every peer (true) or from these addresses */
  proxyProtocol: boolean | string[];
  /** global budget of messages being relayed at once (`452 4.3.1` past it) */
  maxInflightMessages: number;
  /** global budget of message bytes held at once (`452 4.3.1` past it) */
  maxInflightBytes: number;
}

export interface Config {
  /** absolute path of the file this snapshot was loaded from (undefined when built in memory) */
  file?: string;
  smtp: SmtpListenConfig;
  http: {
    listen?: HostPort;
    adminToken?: string;
    /** external base URL of `listen`, no trailing slash: the web onboarding flow's redirect URI base */
    publicUrl?: string;
  };
  state: {
    dir: string;
    secretKey?: string;
    /** redis:// URL: the state shared by several instances (absent: this process alone) */
    redis?: string;
    /** proxy instances (hosts) sharing the Redis: the divisor of each one's safe share while it is unreachable */
    instances: number;
    keyPrefix: string;
    /** a dead instance's (or worker's) connection slots return within this */
    leaseTtlMs: number;
  };
  shutdownTimeoutMs: number;
  /** processes sharing the listeners (`serve --workers`; "auto" already resolved to the cores) */
  workers: number;
  oauth: {
    /** refresh this long before expiry (plus jitter) */
    refreshAheadMs: number;
    requestTimeoutMs: number;
    warmupConcurrency: number;
  };
  log: { level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'; messages: boolean };
  metrics: { perAccount: boolean };
  providers: Readonly<Record<string, ProviderConfig>>;
  /** absolute path, if accounts come from a file */
  accountsFile?: string;
  accounts: readonly AccountConfig[];
}
