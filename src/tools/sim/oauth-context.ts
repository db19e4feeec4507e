// What the OAuth endpoints (authorize, device, token) share, and the helpers they all use.
import { randomBytes } from 'node:crypto';
import type { AuthorizationCodes } from './authorization-codes.js';
import type { RefreshBindings } from './bindings.js';
import type { DeviceCodes } from './device-codes.js';
import { GOOGLE_MAIL_SCOPE, MULTI_TENANT_ALIASES, type Client, type Directory } from './directory.js';
import { unknownClient, type TokenReply } from './oauth-errors.js';
import { simRefreshToken, type SimState } from './state.js';
import type { SimFlowSettings, SimStyle } from './types.js';

export interface OAuthContext {
  state: SimState;
  style: SimStyle;
  directory: Directory;
  codes: AuthorizationCodes;
  devices: DeviceCodes;
  bindings: RefreshBindings;
  flows: SimFlowSettings;
  /** `http://host:port` as the simulator publishes it; JWT audiences are checked against it */
  baseUrl: string;
}

/** Where a request arrived: the tenant of a `/{tenant}/oauth2/v2.0/...` path, and the URL as published. */
export interface Endpoint {
  /** lower-cased; undefined on the tenant-less paths (`/token`, `/authorize`, ...) */
  tenant?: string;
  url: string;
}

/** Microsoft's SMTP resource, under both of its host names. */
const MICROSOFT_SMTP_SCOPES = [
  'https://outlook.office.com/smtp.send',
  'https://outlook.office365.com/smtp.send',
];
const MICROSOFT_APP_SCOPES = [
  'https://outlook.office365.com/.default',
  'https://outlook.office.com/.default',
];

export function scopeList(scope: string): string[] {
  return scope.split(' ').filter(Boolean);
}

/** Does a delegated grant of `scope` let its access token authenticate to SMTP? */
export function scopeCoversSmtp(style: SimStyle, scope: string): boolean {
  const scopes = scopeList(scope);
  if (style === 'google') return scopes.includes(GOOGLE_MAIL_SCOPE);
  return scopes.some((s) => MICROSOFT_SMTP_SCOPES.includes(s.toLowerCase()));
}

/** The scope of an app-only (client_credentials) request for Exchange Online. */
export function isAppSmtpScope(scope: string): boolean {
  const scopes = scopeList(scope);
  return scopes.length === 1 && MICROSOFT_APP_SCOPES.includes(scopes[0]!.toLowerCase());
}

/** A specific directory (not common / organizations / consumers, not a tenant-less path). */
export function specificTenant(tenant: string | undefined): string | undefined {
  return tenant && !MULTI_TENANT_ALIASES.has(tenant) ? tenant : undefined;
}

/**
 * The client a request names: registered (and known in this tenant), or, while no client is
 * registered at all, an unregistered public one (`client` undefined).
 */
export function findClient(
  ctx: OAuthContext,
  clientId: string,
  tenant: string | undefined,
): { ok: true; client?: Client } | { ok: false; reply: TokenReply } {
  const client = ctx.directory.clients.get(clientId);
  if (!client) {
    if (ctx.directory.clientsOpen) return { ok: true };
    return { ok: false, reply: unknownClient(ctx.style, clientId, tenant) };
  }
  const specific = specificTenant(tenant);
  if (specific && client.tenant && client.tenant !== specific)
    return { ok: false, reply: unknownClient(ctx.style, clientId, tenant) };
  return { ok: true, client };
}

/**
 * The token response of a user's grant (authorization code, device code): an access token valid
 * for SMTP only when the scope covers it, and a refresh token bound to the client when `refresh`.
 */
export function userGrantResponse(
  ctx: OAuthContext,
  g: { user: string; clientId: string; scope: string; family: string; refresh: boolean },
): TokenReply {
  const { state, style } = ctx;
  let refreshToken: string | undefined;
  if (g.refresh) {
    refreshToken = simRefreshToken(g.user, randomBytes(12).toString('base64url'));
    ctx.bindings.bind(refreshToken, { clientId: g.clientId, user: g.user, scope: g.scope, family: g.family });
    state.trackRefreshToken(g.user, refreshToken);
  }
  const smtp = scopeCoversSmtp(style, g.scope);
  const body: Record<string, unknown> = {
    access_token: state.issueAccessToken(g.user, refreshToken, { family: g.family, allows: () => smtp }),
    expires_in: state.tokenLifetimeSec,
    token_type: 'Bearer',
    scope: g.scope,
  };
  if (style === 'microsoft') body.ext_expires_in = state.tokenLifetimeSec;
  if (refreshToken) body.refresh_token = refreshToken;
  return { status: 200, body, user: g.user };
}

/** RFC 6749 section 10.5: a replayed code revokes what was issued from it. */
export function revokeFamily(ctx: OAuthContext, family: string): void {
  for (const rt of ctx.bindings.familyTokens(family)) ctx.state.revoke(rt);
  ctx.state.revokeFamily(family);
}
