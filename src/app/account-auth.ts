// How each mailbox authenticates upstream, as `accounts list`, the admin API and the status page
// say it: from the token manager when the proxy runs, from the config and the state store offline.
import { authMode } from '../config/providers.js';
import type { AccountConfig, Config } from '../config/types.js';
import type { TokenSource } from '../oauth/token-manager.js';
import { readStoredAccountsSummary, type StoredAccountsSummary } from '../state/store.js';
import type { AccountAuth } from '../http/backend.js';

const LABELS: Readonly<Record<TokenSource, AccountAuth>> = {
  file: 'refresh token in file',
  store: 'refresh token in store',
  client_credentials: 'app-only',
  service_account: 'service account',
};

export function authLabel(source: TokenSource): AccountAuth {
  return LABELS[source];
}

/** The token source an account of the snapshot uses. */
export function tokenSourceOf(config: Config, account: AccountConfig): TokenSource {
  const mode = authMode(config.providers[account.provider]!);
  if (mode !== 'refresh_token') return mode;
  return account.refreshToken === undefined ? 'store' : 'file';
}

export interface OfflineAccountStatus {
  email: string;
  source: TokenSource;
  auth: AccountAuth;
  /** only what can be known without the running proxy */
  state: 'needs_authorization' | 'authorized' | 'configured';
  /** ISO time the cached access token expires, when the store has one */
  tokenExpiresAt?: string;
}

/**
 * The accounts of a snapshot as the state store on disk describes them (read-only, no key): a
 * store-held account without a stored refresh token needs authorization.
 */
export function offlineAccountStatus(config: Config): OfflineAccountStatus[] {
  const stored: StoredAccountsSummary | undefined = readStoredAccountsSummary(config.state.dir);
  return config.accounts.map((a) => {
    const source = tokenSourceOf(config, a);
    const expires = stored?.accessExpiresAt.get(a.email);
    const state =
      source !== 'store'
        ? 'configured'
        : stored?.authorized.has(a.email)
          ? 'authorized'
          : 'needs_authorization';
    return {
      email: a.email,
      source,
      auth: authLabel(source),
      state,
      ...(expires !== undefined ? { tokenExpiresAt: new Date(expires).toISOString() } : {}),
    };
  });
}
