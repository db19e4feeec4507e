// The JWT bearer grant (RFC 7523 section 2.1) as Google serves it to service accounts with
// domain-wide delegation: `iss` is the service account, `sub` the mailbox, and the errors are
// Google's texts.
import { CLOCK_SKEW_SEC } from './client-auth.js';
import { GOOGLE_MAIL_SCOPE, isEmail, matchesMailbox } from './directory.js';
import { decodeJwtPayload, numericDate, parseJwt, verifyRs256 } from './jwt.js';
import { scopeList, type OAuthContext } from './oauth-context.js';
import { invalidGrant, missing, oauthError, type TokenReply } from './oauth-errors.js';
import { tokenSuccess, type TokenRequest } from './token.js';

export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

const TIMEFRAME =
  'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.';
const UNAUTHORIZED =
  'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.';

export function jwtBearerGrant(ctx: OAuthContext, req: TokenRequest): TokenReply {
  const { style, state, directory } = ctx;
  const assertion = req.form.get('assertion');
  if (!assertion) return missing(style, 'assertion');
  if (directory.serviceAccountsOpen) return unverifiedJwtBearer(ctx, req.form, assertion);

  const jwt = parseJwt(assertion);
  if (!jwt)
    return oauthError(
      400,
      'invalid_grant',
      'Invalid JWT: the assertion is not a compact JWS.',
      undefined,
      'jwt_malformed',
    );
  const p = jwt.payload;
  const sa = typeof p.iss === 'string' ? directory.serviceAccount(p.iss) : undefined;
  if (!sa)
    return oauthError(
      400,
      'invalid_grant',
      'Invalid grant: account not found',
      undefined,
      'unknown_service_account',
    );
  const sub = typeof p.sub === 'string' ? p.sub.toLowerCase() : undefined;
  const user = sub ?? sa.clientEmail.toLowerCase();
  const kid = jwt.header.kid;
  if (
    (kid !== undefined && sa.privateKeyId !== '' && kid !== sa.privateKeyId) ||
    !verifyRs256(jwt, sa.key.key)
  )
    return oauthError(400, 'invalid_grant', 'Invalid JWT Signature.', user, 'jwt_signature');
  if (p.aud !== req.endpoint.url)
    return oauthError(
      400,
      'invalid_grant',
      `Invalid JWT: Failed audience check. The expected audience is ${req.endpoint.url}.`,
      user,
      'jwt_audience',
    );
  const now = Date.now() / 1000;
  const iat = numericDate(p, 'iat');
  const exp = numericDate(p, 'exp');
  if (iat === undefined || exp === undefined || exp - iat > 3600 || iat > now + CLOCK_SKEW_SEC || exp <= now)
    return oauthError(400, 'invalid_grant', TIMEFRAME, user, 'jwt_timeframe');
  if (p.sub !== undefined && (sub === undefined || !isEmail(sub)))
    return oauthError(400, 'invalid_grant', 'Invalid email or User ID', undefined, 'jwt_subject');
  const scope = typeof p.scope === 'string' ? p.scope : '';
  const scopes = scopeList(scope);
  if (scopes.length === 0)
    return oauthError(
      400,
      'invalid_scope',
      'Invalid oauth scope or ID token audience provided.',
      user,
      'invalid_scope',
    );
  if (!scopes.every((s) => sa.scopes.has(s)))
    return oauthError(400, 'unauthorized_client', UNAUTHORIZED, user, 'scope_not_delegated');
  if (sub !== undefined && !matchesMailbox(sa.mailboxes, sub))
    return oauthError(400, 'unauthorized_client', UNAUTHORIZED, user, 'no_delegation');
  if (state.userRevoked(user)) return invalidGrant(style, user);
  // Without `sub` the token is the service account's own, and it has no mailbox.
  const smtp = sub !== undefined && scopes.includes(GOOGLE_MAIL_SCOPE);
  const reply = tokenSuccess(ctx, req.form, user, { scope, allows: () => smtp });
  delete reply.body.scope; // Google's answer to this grant names no scope
  return reply;
}

/**
 * While no service account is registered: the signature is NOT checked, `sub` (else `iss`) is the
 * user, and only an `exp` more than 60 s past is refused (how the simulator always behaved).
 */
function unverifiedJwtBearer(ctx: OAuthContext, form: URLSearchParams, assertion: string): TokenReply {
  const { style, state } = ctx;
  const payload = decodeJwtPayload(assertion);
  const sub = payload && (typeof payload.sub === 'string' ? payload.sub : payload.iss);
  if (typeof sub !== 'string' || !sub.includes('@')) {
    return oauthError(400, 'invalid_grant', 'Invalid JWT: the assertion has no sub/iss email claim.');
  }
  const user = sub.toLowerCase();
  if (typeof payload!.exp === 'number' && payload!.exp * 1000 < Date.now() - 60_000) {
    return oauthError(400, 'invalid_grant', TIMEFRAME, user);
  }
  if (state.userRevoked(user)) return invalidGrant(style, user);
  return tokenSuccess(ctx, form, user, {});
}
