// The OAuth2 token endpoint: a pure function of the request and the simulator's state.
import { authenticateClient } from './client-auth.js';
import { clientCredentialsGrant } from './grant-client-credentials.js';
import { authorizationCodeGrant, deviceCodeGrant, DEVICE_CODE_GRANT } from './grant-user.js';
import { JWT_BEARER_GRANT, jwtBearerGrant } from './grant-jwt-bearer.js';
import type { Binding } from './bindings.js';
import { scopeCoversSmtp, scopeList, type Endpoint, type OAuthContext } from './oauth-context.js';
import {
  aadError,
  duplicateParameter,
  invalidGrant,
  missing,
  refreshTokenReused,
  oauthError,
  repeatedParameter,
  type TokenReply,
} from './oauth-errors.js';
import type { SpentRefreshToken } from './state.js';
import type { SimStyle } from './types.js';

export const DEFAULT_SCOPE: Record<SimStyle, string> = {
  google: 'https://mail.google.com/',
  microsoft: 'https://outlook.office.com/SMTP.Send offline_access',
};

export interface TokenRequest {
  form: URLSearchParams;
  /** the Authorization header (client_secret_basic) */
  authorization?: string;
  endpoint: Endpoint;
}

/** Scopes a refresh may name without having been granted them explicitly. */
const IMPLIED_SCOPES = new Set(['offline_access', 'openid', 'profile', 'email']);

export function handleTokenRequest(ctx: OAuthContext, req: TokenRequest): TokenReply {
  const grant = req.form.get('grant_type') ?? '';
  const repeated = duplicateParameter(req.form);
  const reply = repeated ? repeatedParameter(ctx.style, repeated) : dispatch(ctx, req, grant);
  if (reply.status === 200) {
    ctx.state.countIssued(grant);
    if (grant === 'refresh_token' && reply.user) ctx.state.countRefresh(reply.user);
  } else ctx.state.countRefusal(reply.reason ?? String(reply.body.error));
  return reply;
}

function dispatch(ctx: OAuthContext, req: TokenRequest, grant: string): TokenReply {
  switch (grant) {
    case 'refresh_token':
      return refreshTokenGrant(ctx, req);
    case 'authorization_code':
      return authorizationCodeGrant(ctx, req);
    case DEVICE_CODE_GRANT:
      return deviceCodeGrant(ctx, req);
    case 'client_credentials':
      return clientCredentialsGrant(ctx, req);
    case JWT_BEARER_GRANT:
      return jwtBearerGrant(ctx, req);
    default:
      return oauthError(400, 'unsupported_grant_type', `Invalid grant_type: ${grant}`, undefined);
  }
}

/** The access token response the refresh and the tenant-less grants share. */
export function tokenSuccess(
  ctx: OAuthContext,
  form: URLSearchParams,
  user: string | undefined,
  issue: {
    from?: string;
    refreshToken?: string;
    scope?: string;
    family?: string;
    allows?: (m: string) => boolean;
  },
): TokenReply {
  const { state, style } = ctx;
  const body: Record<string, unknown> = {
    access_token: state.issueAccessToken(user, issue.from, { family: issue.family, allows: issue.allows }),
    expires_in: state.tokenLifetimeSec,
    token_type: 'Bearer',
    scope: issue.scope ?? (form.get('scope') || DEFAULT_SCOPE[style]),
  };
  if (style === 'microsoft') body.ext_expires_in = state.tokenLifetimeSec;
  if (issue.refreshToken) body.refresh_token = issue.refreshToken;
  return { status: 200, body, user };
}

function refreshTokenGrant(ctx: OAuthContext, req: TokenRequest): TokenReply {
  const { state, style } = ctx;
  const { form } = req;
  const rt = form.get('refresh_token');
  const spent = rt ? state.spentRefreshToken(rt) : undefined;
  if (rt && spent) return refreshSpent(ctx, req, spent);
  const binding = rt ? ctx.bindings.get(rt) : undefined;
  if (rt && binding) return refreshBound(ctx, req, rt, binding);
  // A made-up `simrt.` token: valid for any client, as before the interactive flows existed.
  const clientId = form.get('client_id');
  if (!clientId) return missing(style, 'client_id');
  if (!rt) return missing(style, 'refresh_token');
  const user = state.refreshTokenValid(rt);
  if (!user)
    return invalidGrant(
      style,
      rt.startsWith('simrt.') ? rt.slice(6, rt.lastIndexOf('.')).toLowerCase() : undefined,
    );
  const family = state.refreshFamily(rt);
  const rotated = state.rotateRefresh ? state.rotateRefreshToken(rt, user, family) : undefined;
  return tokenSuccess(ctx, form, user, { from: rotated ?? rt, refreshToken: rotated, family });
}

/**
 * A refresh token rotation already replaced, with reuse detection on (RFC 9700 section 4.14.2):
 * either a retry within the grace (the same successor again, nothing rotated) or reuse, which
 * revokes the whole family. A bound family's client must authenticate first, so nobody else can
 * burn a confidential client's grant.
 */
function refreshSpent(ctx: OAuthContext, req: TokenRequest, spent: SpentRefreshToken): TokenReply {
  const { state, style } = ctx;
  const head = state.familyHead(spent.family) ?? spent.successor;
  const binding = ctx.bindings.get(head);
  if (binding) {
    const auth = authenticateClient(ctx, req.form, req.authorization, req.endpoint);
    if (!auth.ok) return auth.reply;
    if (auth.clientId !== binding.clientId) return invalidGrant(style, spent.user);
  } else if (!req.form.get('client_id')) return missing(style, 'client_id');
  const graceUntil = spent.at + state.refreshReuseGraceMs;
  if (head === spent.successor && Date.now() <= graceUntil && state.refreshTokenValid(head)) {
    const smtp = binding ? scopeCoversSmtp(style, binding.scope) : true;
    return tokenSuccess(ctx, req.form, spent.user, {
      from: head,
      refreshToken: head,
      scope: binding?.scope,
      family: spent.family,
      allows: binding ? () => smtp : undefined,
    });
  }
  // The family's only live refresh token is its head (rotation moves the binding along).
  state.revokeForReuse(spent);
  return refreshTokenReused(style, spent.user);
}

/** A refresh token an interactive flow issued: only its client may use it, within the granted scope. */
function refreshBound(ctx: OAuthContext, req: TokenRequest, rt: string, binding: Binding): TokenReply {
  const { state, style } = ctx;
  const auth = authenticateClient(ctx, req.form, req.authorization, req.endpoint);
  if (!auth.ok) return auth.reply;
  if (auth.clientId !== binding.clientId) {
    return style === 'microsoft'
      ? aadError(
          400,
          'invalid_grant',
          70000,
          "The provided value for the 'refresh_token' is not valid. It was issued to a different client.",
          binding.user,
          'refresh_token_other_client',
        )
      : oauthError(400, 'unauthorized_client', 'Unauthorized', binding.user, 'refresh_token_other_client');
  }
  const user = state.refreshTokenValid(rt);
  if (!user) return invalidGrant(style, binding.user);
  const requested = req.form.get('scope');
  if (requested) {
    const granted = new Set(scopeList(binding.scope));
    const extra = scopeList(requested).filter((s) => !granted.has(s) && !IMPLIED_SCOPES.has(s));
    if (extra.length > 0) {
      const text = `The requested scope exceeds the scope granted: ${extra.join(' ')}`;
      return style === 'microsoft'
        ? aadError(400, 'invalid_scope', 70011, text, user, 'scope_not_granted')
        : oauthError(400, 'invalid_scope', text, user, 'scope_not_granted');
    }
  }
  const scope = requested || binding.scope;
  const family = state.refreshFamily(rt, binding.family);
  const rotated = state.rotateRefresh ? state.rotateRefreshToken(rt, user, family) : undefined;
  if (rotated) ctx.bindings.move(rt, rotated);
  const smtp = scopeCoversSmtp(style, scope);
  return tokenSuccess(ctx, req.form, user, {
    from: rotated ?? rt,
    refreshToken: rotated,
    scope,
    family: binding.family,
    allows: () => smtp,
  });
}
