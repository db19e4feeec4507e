// One token request for any grant: the shared TokenClient does the HTTP (keep-alive, timeouts),
// this maps its failures to GrantErrors and checks what RFC 6749 section 5.1 leaves to the client.
import type { TokenClient, TokenResponse } from '../token-client.js';
import { localGrantError, toGrantError, type GrantContext } from './errors.js';

/** What every grant returns. */
export interface AccessToken {
  accessToken: string;
  expiresInSec: number;
  /** the granted scope when the server said it (RFC 6749 section 5.1: omitted = as requested) */
  scope?: string;
}

/** What the interactive grants return: a mailbox owner's consent, kept as a refresh token. */
export interface AuthorizedTokens extends AccessToken {
  refreshToken: string;
}

export async function tokenRequest(
  client: TokenClient,
  tokenUrl: string,
  form: URLSearchParams,
  ctx: GrantContext,
): Promise<TokenResponse> {
  let res: TokenResponse;
  try {
    res = await client.requestToken(tokenUrl, form);
  } catch (err) {
    throw toGrantError(err, { ...ctx, endpoint: ctx.endpoint ?? tokenUrl });
  }
  // RFC 6749 section 7.1: never use a token of a type we do not understand; XOAUTH2 sends Bearer.
  if (res.tokenType !== undefined && res.tokenType.toLowerCase() !== 'bearer') {
    throw localGrantError(
      'bad_token_type',
      `token_type "${res.tokenType.slice(0, 32).replace(/[^\x20-\x7e]/g, '?')}" is not Bearer`,
      ctx,
    );
  }
  return res;
}

export function accessTokenOf(res: TokenResponse): AccessToken {
  return {
    accessToken: res.accessToken,
    expiresInSec: res.expiresInSec,
    ...(res.scope !== undefined ? { scope: res.scope } : {}),
  };
}

/** The interactive grants are only worth doing when they yield a refresh token. */
export function authorizedTokensOf(res: TokenResponse, ctx: GrantContext): AuthorizedTokens {
  if (res.refreshToken === undefined) {
    throw localGrantError('no_refresh_token', 'the token response has no refresh_token', ctx);
  }
  return { ...accessTokenOf(res), refreshToken: res.refreshToken };
}
