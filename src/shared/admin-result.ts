// The outcome of an admin change (HTTP admin API, `accounts` CLI, accounts file editor). Failures
// carry a stable `code`; the HTTP layer maps each code to one status.
import type { Issue } from './issue.js';

export type AdminFailureCode =
  /** the account is invalid (400) */
  | 'invalid'
  /** an account with that email exists (409) */
  | 'duplicate'
  /** no account with that email (404) */
  | 'not_found'
  /** `?verify=true` and the token refresh failed (422) */
  | 'verify_failed'
  /** accounts are inline in the config: there is no file to change (409) */
  | 'no_accounts_file'
  /** anything else: file not writable, reload rejected (500) */
  | 'failed';

export interface AdminFailure {
  ok: false;
  code: AdminFailureCode;
  error: string;
  issues?: Issue[];
}

export interface AdminSuccess {
  ok: true;
  /** what to show the caller (never secrets), e.g. the account's public fields */
  body?: unknown;
  warnings?: string[];
}

export type AdminResult = AdminSuccess | AdminFailure;

export function adminFailure(code: AdminFailureCode, error: string, issues?: Issue[]): AdminFailure {
  return issues ? { ok: false, code, error, issues } : { ok: false, code, error };
}
