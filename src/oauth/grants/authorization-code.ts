// The authorization code grant with PKCE (RFC 6749 section 4.1, RFC 7636) for a native app
// (RFC 8252): the authorization URL, the checks on the redirect that comes back (or on the URL the
// user pastes), and the code exchange. The loopback listener is loopback-redirect.ts.
import crypto from 'node:crypto';
import type { TokenClient } from '../token-client.js';
import { localGrantError, oauthGrantError, type GrantContext } from './errors.js';
import { providerFlavor, withOfflineAccess, type ProviderFlavor } from './providers.js';
import { authorizedTokensOf, tokenRequest, type AuthorizedTokens } from './request.js';

export interface AuthorizationUrlParams {
  /** `{tenant}` already substituted */
  authorizeUrl: string;
  clientId: string;
  redirectUri: string;
  scope: string;
  /** from newState(); checked on the way back with sameState() */
  state: string;
  /** Pkce.challenge (method S256) */
  codeChallenge: string;
  /** default: by the authorize URL's host */
  flavor?: ProviderFlavor;
  /** the mailbox, so the provider pre-selects the right account */
  loginHint?: string;
  /** overrides the flavor's default prompt (google: consent; microsoft: select_account without a login hint) */
  prompt?: string;
}

/**
 * The URL the mailbox owner opens. Google gets access_type=offline and prompt=consent (without them
 * a repeated authorization yields no refresh token); Microsoft gets offline_access added to the scope
 * when missing (its refresh tokens come only with it).
 */
export function buildAuthorizationUrl(p: AuthorizationUrlParams): string {
  const flavor = p.flavor ?? providerFlavor(p.authorizeUrl);
  const url = new URL(p.authorizeUrl);
  const scope = withOfflineAccess(flavor, p.scope);
  const q = url.searchParams;
  q.set('response_type', 'code');
  q.set('client_id', p.clientId);
  q.set('redirect_uri', p.redirectUri);
  if (scope) q.set('scope', scope);
  q.set('state', p.state);
  q.set('code_challenge', p.codeChallenge);
  q.set('code_challenge_method', 'S256');
  let prompt = p.prompt;
  if (flavor === 'google') {
    q.set('access_type', 'offline');
    prompt ??= 'consent';
  } else if (flavor === 'microsoft' && !p.loginHint) {
    // the browser may be signed in as someone else (an administrator): let the user pick the mailbox
    prompt ??= 'select_account';
  }
  if (prompt) q.set('prompt', prompt);
  if (p.loginHint) q.set('login_hint', p.loginHint);
  return url.toString();
}

/** 256 bits of crypto randomness, base64url (RFC 6749 section 10.12: not guessable). */
export function newState(): string {
  return crypto.randomBytes(32).toString('base64url');
}

/** Constant-time comparison (both sides hashed first, so lengths do not leak either). */
export function sameState(expected: string, received: string): boolean {
  const a = crypto.createHash('sha256').update(expected).digest();
  const b = crypto.createHash('sha256').update(received).digest();
  return crypto.timingSafeEqual(a, b) && expected.length > 0;
}

/**
 * Checks an authorization response (RFC 6749 sections 4.1.2, 4.1.2.1) and returns the code. The
 * state is checked first: a response that is not ours is refused whatever else it says.
 */
export function codeFromAuthorizationResponse(
  params: URLSearchParams,
  expectedState: string,
  ctx: GrantContext,
): string {
  const state = params.get('state');
  if (state === null || params.getAll('state').length !== 1 || !sameState(expectedState, state)) {
    throw localGrantError(
      'state_mismatch',
      state === null ? 'the redirect has no state' : 'the redirect has a different state',
      ctx,
    );
  }
  const error = params.get('error');
  if (error !== null) {
    const description = params.get('error_description');
    throw oauthGrantError(
      {
        error: /^[\w.-]{1,64}$/.test(error) ? error : 'invalid_error_code',
        ...(description ? { description: printable(description) } : {}),
      },
      ctx,
    );
  }
  const codes = params.getAll('code');
  if (codes.length !== 1 || codes[0] === '') {
    throw localGrantError(
      'bad_callback',
      codes.length ? 'the redirect has more than one code' : 'the redirect has no code',
      ctx,
      'the provider did not return an authorization code: authorize again',
    );
  }
  return codes[0]!;
}

function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f]+/g, ' ').slice(0, 400);
}

/**
 * For a host without a browser: the user opens the URL elsewhere, the final redirect fails to load
 * (nothing listens there), and they paste the address bar's URL. It must be our redirect URI
 * (scheme, host, port, path) and carry our state.
 */
export function codeFromPastedRedirect(
  pasted: string,
  expected: { redirectUri: string; state: string },
  ctx: GrantContext,
): string {
  const text = pasted.trim();
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw localGrantError(
      'bad_callback',
      'the pasted text is not a URL',
      ctx,
      `paste the whole address from the browser's address bar after approving (it starts with ${expected.redirectUri})`,
    );
  }
  const want = new URL(expected.redirectUri);
  if (url.protocol !== want.protocol || url.host !== want.host || url.pathname !== want.pathname) {
    throw localGrantError(
      'bad_callback',
      `the pasted URL is not the redirect URI ${want.origin}${want.pathname}`,
      ctx,
      `paste the address the browser was sent to after approving (it starts with ${expected.redirectUri})`,
    );
  }
  return codeFromAuthorizationResponse(url.searchParams, expected.state, {
    ...ctx,
    redirectUri: expected.redirectUri,
  });
}

export interface CodeExchangeRequest {
  tokenUrl: string;
  clientId: string;
  /** confidential clients only */
  clientSecret?: string;
  code: string;
  /** the same redirect_uri as in the authorization URL (RFC 6749 section 4.1.3) */
  redirectUri: string;
  /** Pkce.verifier */
  codeVerifier: string;
  /** default: by the token URL's host */
  flavor?: ProviderFlavor;
  /** for error hints */
  mailbox?: string;
  scope?: string;
}

/** RFC 6749 section 4.1.3 with RFC 7636 section 4.5; a response without a refresh token is an error. */
export async function exchangeAuthorizationCode(
  client: TokenClient,
  req: CodeExchangeRequest,
): Promise<AuthorizedTokens> {
  const ctx = authorizationCodeContext(req);
  const form = new URLSearchParams({
    grant_type: 'authorization_code',
    code: req.code,
    redirect_uri: req.redirectUri,
    client_id: req.clientId,
    code_verifier: req.codeVerifier,
  });
  if (req.clientSecret) form.set('client_secret', req.clientSecret);
  const res = await tokenRequest(client, req.tokenUrl, form, ctx);
  return authorizedTokensOf(res, ctx);
}

/** The context for the errors of this grant (also for the redirect's and the pasted URL's checks). */
export function authorizationCodeContext(p: {
  tokenUrl?: string;
  authorizeUrl?: string;
  clientId: string;
  redirectUri?: string;
  flavor?: ProviderFlavor;
  mailbox?: string;
  scope?: string;
}): GrantContext {
  const endpoint = p.tokenUrl ?? p.authorizeUrl;
  return {
    grant: 'authorization_code',
    flavor: p.flavor ?? (endpoint ? providerFlavor(endpoint) : 'generic'),
    clientId: p.clientId,
    ...(p.redirectUri !== undefined ? { redirectUri: p.redirectUri } : {}),
    ...(p.mailbox !== undefined ? { mailbox: p.mailbox } : {}),
    ...(p.scope !== undefined ? { scope: p.scope } : {}),
    ...(endpoint !== undefined ? { endpoint } : {}),
  };
}
