// The account half of an AdminBackend: validation, optional verification by a real token refresh,
// and the atomic file change, in the order the admin API promises (400/409/404 before any network
// call; the refresh inside the serialized chain so two calls cannot race on the same email).

import type { AccountConfig } from '../config/types.js';
import { adminFailure, type AdminResult } from '../shared/admin-result.js';
import type { AccountsFileEditor, EditOptions } from './file-editor.js';

/** Fields whose change makes an update re-verify the token (a password change does not). */
const CREDENTIAL_FIELDS = ['provider', 'clientId', 'clientSecret', 'refreshToken', 'tenant'] as const;

export interface AccountAdminOps {
  addAccount(raw: unknown, verify: boolean): Promise<AdminResult>;
  updateAccount(email: string, raw: unknown, verify: boolean): Promise<AdminResult>;
  deleteAccount(email: string): Promise<AdminResult>;
}

/**
 * `refresh(account)` does one real token refresh with the account's credentials (without caching
 * or persisting anything) and throws an Error whose message says why it failed (e.g.
 * `invalid_grant: Token has been expired or revoked.`).
 */
export function accountAdminOps(
  editor: AccountsFileEditor,
  refresh: (account: AccountConfig) => Promise<void>,
): AccountAdminOps {
  const verifyCheck: NonNullable<EditOptions['check']> = async (account, previous) => {
    if (previous && CREDENTIAL_FIELDS.every((k) => previous[k] === account[k])) return undefined;
    try {
      await refresh(account);
      return undefined;
    } catch (err) {
      return adminFailure(
        'verify_failed',
        `token refresh for ${account.email} failed: ${(err as Error)?.message ?? String(err)} ` +
          '(nothing was changed; use ?verify=false to store the account anyway)',
      );
    }
  };
  return {
    addAccount: (raw, verify) => editor.add(raw, verify ? { check: verifyCheck } : {}),
    updateAccount: (email, raw, verify) => editor.update(email, raw, verify ? { check: verifyCheck } : {}),
    deleteAccount: (email) => editor.remove(email),
  };
}
