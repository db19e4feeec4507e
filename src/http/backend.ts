// What the HTTP server needs from the running proxy. app/admin-backend.ts implements it over the
// Proxy; tests use fakes.
import type { AdminResult } from '../shared/admin-result.js';
import type { LiveSnapshot } from '../metrics/live.js';
import type { Issue } from '../shared/issue.js';

/**
 * `unknown` (no token fetched yet) | `ok` | `refreshing` | `needs_authorization` (no refresh token
 * in the file nor in the state store yet: `accounts authorize`) | `needs_reauth` (refresh token
 * revoked: invalid_grant; for app-only accounts: the grant was refused) | `error` (the last refresh
 * failed for another reason, or the account cannot send, e.g. an unusable sourceAddress). A mailbox
 * at its connection limit is still `ok`: its pool counts show it (busy at the limit, messages waiting).
 */
export type AccountState = 'unknown' | 'ok' | 'refreshing' | 'needs_authorization' | 'needs_reauth' | 'error';

/** How a mailbox authenticates upstream. */
export type AccountAuth = 'refresh token in file' | 'refresh token in store' | 'app-only' | 'service account';

export interface AccountView {
  email: string;
  provider: string;
  auth?: AccountAuth;
  state: AccountState;
  /** ISO time the cached access token expires */
  tokenExpiresAt?: string;
  lastError?: string;
  hasPassword?: boolean;
  sourceAddress?: string;
  pool?: { idle: number; busy: number; connecting: number; waiting: number };
}

export interface AdminBackend {
  /** true while listening with a valid config; false while starting or draining */
  isReady(): boolean;
  /** why the instances cannot share state right now ("shared state unreachable"); undefined: fine */
  degraded?(): string | undefined;
  /** no secrets */
  listAccounts(): AccountView[];
  /** validate, optionally verify with a real token refresh (`verify_failed` says why), write, apply */
  addAccount(raw: unknown, verify: boolean): Promise<AdminResult>;
  /** `raw` holds the fields to change (see AccountsFileEditor.update) */
  updateAccount(email: string, raw: unknown, verify: boolean): Promise<AdminResult>;
  deleteAccount(email: string): Promise<AdminResult>;
  /** re-read config and accounts (like SIGHUP); a failure keeps the old snapshot and says why */
  reload(): Promise<AdminResult>;
  /** for the status page */
  live(): LiveSnapshot;
  /** the web onboarding flow; absent: not offered (its routes answer 404) */
  onboarding?: OnboardingBackend;
}

// Web onboarding (docs/web-onboarding.md): app/onboarding.ts implements it.

/** A refusal or failure of an onboarding step: an HTTP status, a page title and one human text. */
export interface OnboardingFailure {
  ok: false;
  status: number;
  /** a stable word for tests and the JSON answers, e.g. `link_expired`, `state_unknown` */
  problem: string;
  title: string;
  message: string;
  issues?: Issue[];
}

export type OnboardingSettings =
  | { enabled: true; publicUrl: string; redirectUri: string; providers: string[] }
  /** `reason` says how to turn it on */
  | { enabled: false; reason: string };

export interface OnboardingLinkView {
  id: string;
  /** absent: any mailbox */
  email?: string;
  provider: string;
  createdAt: string;
  expiresAt: string;
  status: 'unused' | 'used' | 'expired' | 'revoked';
  usedBy?: string;
}

export interface CreatedOnboardingLink {
  ok: true;
  id: string;
  url: string;
  expiresAt: string;
  email?: string;
  provider: string;
}

/** What the link's page shows before the owner continues to the provider. */
export interface OnboardingLinkInfo {
  ok: true;
  email?: string;
  provider: string;
  expiresAt: string;
  /** origin of the provider's authorization endpoint (the page's CSP form-action allows it) */
  authorizeOrigin: string;
}

export type FlowStart =
  | { by: 'admin'; email: string; provider?: string }
  /** `email` for a link made for any mailbox */
  | { by: 'link'; link: string; email?: string };

export interface FlowStarted {
  ok: true;
  authorizeUrl: string;
  state: string;
  /** a random value for a cookie: the flow finishes only in the browser that started it */
  binding: string;
  /** how long the flow waits for the provider's redirect */
  expiresInSec: number;
}

export interface SmtpSettingsView {
  host: string;
  port: number;
  security: 'none' | 'starttls' | 'tls';
}

export interface FlowFinished {
  ok: true;
  email: string;
  provider: string;
  /** true: the account was added; false: an existing account was re-authorized */
  added: boolean;
  /** the generated client password of an added account: shown once, stored only as a hash */
  password?: string;
  smtp: SmtpSettingsView[];
  /** stored, but something to fix (e.g. the provider's SMTP refused the test login) */
  warning?: string;
}

export interface OnboardingBackend {
  settings(): OnboardingSettings;
  createLink(raw: unknown): CreatedOnboardingLink | OnboardingFailure;
  listLinks(): OnboardingLinkView[];
  /** true: revoked now; false: no such link, or already revoked */
  revokeLink(id: string): boolean;
  /** checks a link (signature, expiry, use) without changing anything */
  checkLink(token: string): OnboardingLinkInfo | OnboardingFailure;
  start(req: FlowStart): Promise<FlowStarted | OnboardingFailure>;
  /** the provider's redirect: its query, and the binding cookie of this state (if the browser sent it) */
  finish(query: URLSearchParams, binding: string | undefined): Promise<FlowFinished | OnboardingFailure>;
}
