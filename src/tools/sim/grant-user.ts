// The grants that redeem a user's consent: authorization_code with PKCE (RFC 6749 section 4.1.3,
// RFC 7636 section 4.6) and device_code (RFC 8628 section 3.4 and 3.5).
import { createHash } from 'node:crypto';
import { authenticateClient } from './client-auth.js';
import {
  revokeFamily,
  scopeList,
  specificTenant,
  userGrantResponse,
  type OAuthContext,
} from './oauth-context.js';
import {
  aadError,
  googleBadRequest,
  invalidGrant,
  missing,
  oauthError,
  type TokenReply,
} from './oauth-errors.js';
import type { TokenRequest } from './token.js';

export const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

/** RFC 7636 section 4.1: 43 to 128 unreserved characters. */
const VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;

export function s256(verifier: string): string {
  return createHash('sha256').update(verifier, 'ascii').digest('base64url');
}

export function authorizationCodeGrant(ctx: OAuthContext, req: TokenRequest): TokenReply {
  const { style, state } = ctx;
  const { form } = req;
  const ms = style === 'microsoft';
  const refuse = (code: number, text: string, reason: string, googleText = 'Bad Request', user?: string) =>
    ms
      ? aadError(400, 'invalid_grant', code, text, user, reason)
      : oauthError(400, 'invalid_grant', googleText, user, reason);

  const auth = authenticateClient(ctx, form, req.authorization, req.endpoint);
  if (!auth.ok) return auth.reply;
  const code = form.get('code');
  if (!code) return missing(style, 'code');
  const r = ctx.codes.redeem(code);
  if (r.kind === 'unknown')
    return ms
      ? refuse(70000, "The provided value for the 'code' parameter is not valid.", 'unknown_code')
      : googleBadRequest('unknown_code');
  if (r.kind === 'replayed') {
    revokeFamily(ctx, r.code.family);
    return refuse(
      54005,
      'OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.',
      'code_replayed',
      'Bad Request',
      r.code.user,
    );
  }
  const c = r.code;
  if (r.kind === 'expired')
    return refuse(
      70008,
      'The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.',
      'code_expired',
      'Bad Request',
      c.user,
    );
  if (c.clientId !== auth.clientId)
    return refuse(
      70000,
      "The provided value for the 'code' parameter is not valid. The code was issued to a different client.",
      'code_other_client',
      'Bad Request',
      c.user,
    );
  const issuedIn = specificTenant(c.tenant);
  const redeemedIn = specificTenant(req.endpoint.tenant);
  if (issuedIn && redeemedIn && issuedIn !== redeemedIn)
    return refuse(
      700005,
      'Provided Authorization Code is intended to use against other tenant, thus rejected.',
      'code_other_tenant',
      'Bad Request',
      c.user,
    );
  if (form.get('redirect_uri') !== c.redirectUri)
    return refuse(
      70000,
      "The provided value for the 'redirect_uri' is not valid. It must exactly match the redirect_uri of the authorization request.",
      'redirect_uri_mismatch',
      'Bad Request',
      c.user,
    );
  const verifier = form.get('code_verifier');
  if (!verifier)
    return refuse(
      501481,
      'The Code_Verifier does not match the code_challenge supplied in the authorization request.',
      'pkce_missing',
      'Missing code verifier.',
      c.user,
    );
  if (!VERIFIER.test(verifier) || s256(verifier) !== c.codeChallenge)
    return refuse(
      501481,
      'The Code_Verifier does not match the code_challenge supplied in the authorization request.',
      'pkce_mismatch',
      'Invalid code verifier.',
      c.user,
    );
  if (state.userRevoked(c.user)) return invalidGrant(style, c.user, 'user_revoked');
  // Google issues a refresh token only offline, and again for a known client only with prompt=consent;
  // Microsoft only when offline_access was asked for.
  const refresh = ms
    ? scopeList(c.scope).includes('offline_access')
    : c.offline && (c.promptConsent || c.firstConsent);
  return userGrantResponse(ctx, {
    user: c.user,
    clientId: c.clientId,
    scope: c.scope,
    family: c.family,
    refresh,
  });
}

export function deviceCodeGrant(ctx: OAuthContext, req: TokenRequest): TokenReply {
  const { style, state } = ctx;
  const { form } = req;
  const ms = style === 'microsoft';
  const answer = (error: string, code: number, text: string, reason: string, user?: string) =>
    ms ? aadError(400, error, code, text, user, reason) : oauthError(400, error, text, user, reason);

  const auth = authenticateClient(ctx, form, req.authorization, req.endpoint);
  if (!auth.ok) return auth.reply;
  const deviceCode = form.get('device_code');
  if (!deviceCode) return missing(style, 'device_code');
  const a = ctx.devices.get(deviceCode);
  if (!a || a.clientId !== auth.clientId)
    return ms
      ? answer(
          'invalid_grant',
          70000,
          "The provided value for the 'device_code' is not valid.",
          'unknown_device_code',
        )
      : googleBadRequest('unknown_device_code');
  const poll = ctx.devices.poll(a, ctx.flows.deviceIntervalMs, () => state.takeSlowDown());
  switch (poll.kind) {
    case 'expired':
      return answer('expired_token', 70019, 'Verification code expired.', 'expired_token');
    case 'redeemed':
      return answer(
        'invalid_grant',
        54005,
        "The provided value for the 'device_code' is not valid. It has already been redeemed.",
        'device_code_replayed',
        a.user,
      );
    case 'slow_down':
      return answer(
        'slow_down',
        70016,
        'OAuth 2.0 device flow error. Polling too fast: wait the interval, 5 seconds longer from now on.',
        'slow_down',
      );
    case 'pending':
      return answer(
        'authorization_pending',
        70016,
        'OAuth 2.0 device flow error. Authorization is pending. Continue polling.',
        'authorization_pending',
      );
    case 'denied':
      return answer(
        'access_denied',
        65004,
        'The user denied the authorization request.',
        'access_denied',
        a.user,
      );
    case 'approved': {
      const user = poll.auth.user!;
      if (state.userRevoked(user)) return invalidGrant(style, user, 'user_revoked');
      return userGrantResponse(ctx, {
        user,
        clientId: a.clientId,
        scope: a.scope,
        family: a.family,
        refresh: !ms || scopeList(a.scope).includes('offline_access'),
      });
    }
  }
}
