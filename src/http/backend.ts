// What the HTTP server needs from the running proxy. app/admin-backend.ts implements it over the
// Proxy; tests use fakes.
import type { AdminResult } from '../shared/admin-result.js';
import type { LiveSnapshot } from '../metrics/live.js';

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
}
