// Accounts-file entries for mailboxes of the simulated provider (`provider: sim`, see simProvider):
// the refresh token is one the simulator accepts, so the proxy can get real (simulated) tokens.
import { simRefreshToken } from '../../src/tools/sim/index.js';

/** A client password for tests (obviously not a real one). */
export const TEST_PASSWORD = 'pw-for-tests-only';

export interface SimAccountOptions {
  /** the client's password (default TEST_PASSWORD); ignored when passwordHash is given */
  password?: string;
  passwordHash?: string;
  /** the refresh token's tag: `simrt.<email>.<tag>` (default `t`) */
  tag?: string;
  clientId?: string;
  /** any other account fields (clientSecret, sourceAddress, ...) */
  [field: string]: unknown;
}

/** One account of the `sim` provider, logging in with a password or a password hash. */
export function simAccount(email: string, o: SimAccountOptions = {}): Record<string, unknown> {
  const { password = TEST_PASSWORD, passwordHash, tag = 't', clientId = 'cid', ...extra } = o;
  return {
    email,
    provider: 'sim',
    clientId,
    refreshToken: simRefreshToken(email, tag),
    ...(passwordHash === undefined ? { password } : { passwordHash }),
    ...extra,
  };
}

export const simAccounts = (emails: readonly string[], o: SimAccountOptions = {}) =>
  emails.map((email) => simAccount(email, o));
