// Grant failures as an operator needs them: the provider's error code and description, whether
// retrying can help (docs/design.md, principle 5), and one sentence on what to fix. GrantError is a
// TokenGrantError, so the token manager treats a permanent one as it treats invalid_grant.
import { TokenGrantError, type GrantErrorKind, type OAuthErrorDetails } from '../token-client.js';
import { GOOGLE_DEVICE_FLOW_REFUSES_GMAIL, type ProviderFlavor } from './providers.js';

export type GrantType = 'authorization_code' | 'device_code' | 'jwt_bearer' | 'client_credentials';

/** What went wrong, as a stable code. */
export type GrantFailure =
  /** the authorization or token endpoint answered with an OAuth error */
  | 'oauth_error'
  /** network, timeout, 5xx, 429 or a malformed answer */
  | 'endpoint_failed'
  /** the redirect's `state` is not the one we sent: refused before any code exchange */
  | 'state_mismatch'
  /** the redirect (or the pasted URL) is not a usable authorization response */
  | 'bad_callback'
  | 'no_refresh_token'
  /** a token type other than Bearer (RFC 6749 section 7.1) */
  | 'bad_token_type'
  /** the device code's `expires_in` passed before the user approved */
  | 'device_expired'
  | 'aborted';

/** What the hints may mention; all optional. */
export interface GrantContext {
  grant: GrantType;
  flavor: ProviderFlavor;
  /** the OAuth client id (for a service account: its numeric `client_id`) */
  clientId?: string;
  /** the mailbox being authorized (JWT `sub`, login hint) */
  mailbox?: string;
  scope?: string;
  redirectUri?: string;
  /** the endpoint URL the failure came from */
  endpoint?: string;
}

export class GrantError extends TokenGrantError {
  readonly grant: GrantType;
  readonly failure: GrantFailure;
  /** the OAuth `error` code, e.g. "unauthorized_client" */
  readonly oauthError?: string;
  /** the provider's `error_description`, without Microsoft's trace/correlation ids */
  readonly description?: string;
  /** Microsoft's AADSTS codes, e.g. ["AADSTS65001"] */
  readonly aadsts: readonly string[];
  /** what the operator should do, one sentence */
  readonly hint: string;

  constructor(o: {
    kind: GrantErrorKind;
    failure: GrantFailure;
    reason: string;
    hint: string;
    grant: GrantType;
    status?: number;
    oauth?: OAuthErrorDetails;
  }) {
    super(o.kind, o.reason, o.status, o.oauth);
    this.name = 'GrantError';
    this.grant = o.grant;
    this.failure = o.failure;
    this.hint = o.hint;
    this.aadsts = o.oauth ? aadstsCodes(o.oauth) : [];
    const description = o.oauth?.description?.replace(/\s*Trace ID:.*$/s, '').trim();
    if (o.oauth) this.oauthError = o.oauth.error;
    if (description) this.description = description;
    this.message = `${o.reason}${description ? ` (${description})` : ''}: ${o.hint}`;
  }
}

/** Bad local input (a key file, a certificate): names the source and the field, never the secret. */
export class CredentialError extends Error {
  readonly code = 'BAD_CREDENTIAL';
  constructor(
    readonly source: string,
    readonly field: string,
    readonly problem: string,
  ) {
    super(`${source}: ${field}: ${problem}`);
    this.name = 'CredentialError';
  }
}

export function aadstsCodes(oauth: OAuthErrorDetails): string[] {
  const codes = new Set((oauth.errorCodes ?? []).map((n) => `AADSTS${n}`));
  for (const m of oauth.description?.matchAll(/\bAADSTS(\d{4,9})\b/g) ?? []) codes.add(`AADSTS${m[1]}`);
  return [...codes];
}

// -- classification --------------------------------------------------------------------------------

/** Errors after which the same request can never succeed until someone changes something. */
const PERMANENT_ERRORS = new Set([
  'invalid_grant',
  'invalid_client',
  'unauthorized_client',
  'access_denied',
  'invalid_scope',
  'unsupported_grant_type',
  'unsupported_response_type',
  'redirect_uri_mismatch',
  'expired_token',
  'authorization_declined',
  'bad_verification_code',
  'admin_policy_enforced',
  'org_internal',
  'consent_required',
  'interaction_required',
  'login_required',
]);

/** RFC 6749 section 4.1.2.1: the authorization server's own trouble. */
const SERVER_TROUBLE = new Set(['server_error', 'temporarily_unavailable']);

type Hint = (c: GrantContext) => string;

const clientOf = (c: GrantContext) => (c.clientId ? `client id ${c.clientId}` : 'the client id');
const reauthorize = (c: GrantContext) =>
  `run \`xoauth2-proxy accounts authorize ${c.mailbox ?? 'EMAIL'}\` again`;
const CLOCK = "check this host's clock (NTP): the assertion's times are outside what the server accepts";
const appOnlySetup = (c: GrantContext) =>
  `grant admin consent for the application permission SMTP.SendAsApp (Office 365 Exchange Online) to ` +
  `${clientOf(c)}, register its service principal in Exchange Online (New-ServicePrincipal) and give it ` +
  `Add-MailboxPermission -AccessRights FullAccess on each mailbox`;

/** Microsoft Entra ID codes (AADSTSnnn) worth a specific hint; all permanent. */
const AADSTS_HINTS: Record<string, Hint> = {
  AADSTS65001: (c) =>
    c.grant === 'client_credentials'
      ? appOnlySetup(c)
      : `consent is missing for ${clientOf(c)}: an administrator grants admin consent for SMTP.Send and ` +
        `offline_access (App registrations > API permissions), or the user consents when authorizing`,
  AADSTS65004: (c) => `the user declined consent: ${reauthorize(c)} and accept`,
  AADSTS700016: (c) =>
    `no application with ${clientOf(c)} exists in this tenant: check clientId and tenant ` +
    `(a single-tenant app needs its own tenant, not "common")`,
  AADSTS7000215: (c) =>
    `the client secret is wrong: use the secret's Value (not its Secret ID) from Certificates & secrets of ${clientOf(c)}`,
  AADSTS7000222: (c) =>
    `the client secret of ${clientOf(c)} has expired: create a new one under Certificates & secrets`,
  AADSTS700027: (c) =>
    `the assertion's certificate is not registered or its signature does not verify: upload this ` +
    `certificate under Certificates & secrets of ${clientOf(c)}`,
  AADSTS700024: () => CLOCK,
  AADSTS90002: () => tenantHint,
  AADSTS900023: () => tenantHint,
  AADSTS1002012: (c) => scopeHint(c),
  AADSTS70011: (c) => scopeHint(c),
  AADSTS500011: (c) =>
    `the resource of scope "${c.scope ?? ''}" is not in the tenant: use ${appOnlyScope} and check that ` +
    `Exchange Online is licensed`,
  AADSTS7000218: (c) =>
    `${clientOf(c)} is a confidential client: set clientSecret (or a certificate), or enable ` +
    `"Allow public client flows" in the app's Authentication settings`,
  AADSTS700025: (c) => `${clientOf(c)} is a public client: remove clientSecret`,
  AADSTS9002327: () =>
    'register the redirect URI under "Mobile and desktop applications", not "Single-page application"',
  AADSTS50011: (c) =>
    `add the redirect URI ${c.redirectUri ?? 'http://localhost'} under "Mobile and desktop applications" ` +
    `in the app's Authentication settings`,
  AADSTS70008: (c) => `the authorization has expired: ${reauthorize(c)}`,
  AADSTS700082: (c) => `the authorization has expired after inactivity: ${reauthorize(c)}`,
  AADSTS50173: (c) => `the authorization was revoked (password change or admin action): ${reauthorize(c)}`,
  AADSTS53003: () => 'a Conditional Access policy blocked the sign-in: an administrator must allow this app',
  AADSTS50076: (c) => `the sign-in needs multi-factor authentication: ${reauthorize(c)} and complete it`,
  AADSTS50079: (c) => `the sign-in needs multi-factor authentication: ${reauthorize(c)} and complete it`,
  AADSTS50034: (c) =>
    `${c.mailbox ?? 'the account'} does not exist in this tenant: check the email and tenant`,
  AADSTS50020: () =>
    'the account belongs to another tenant: use a mailbox of this tenant, or tenant "organizations"',
  AADSTS7000112: (c) => `${clientOf(c)} is disabled in the tenant: an administrator must enable it`,
  AADSTS70019: (c) => expiredDevice(c),
};

const appOnlyScope = 'https://outlook.office365.com/.default';
const tenantHint =
  'the tenant is unknown: set tenant to the directory (tenant) ID or a verified domain such as contoso.onmicrosoft.com';
const scopeHint = (c: GrantContext) =>
  c.grant === 'client_credentials'
    ? `use the scope ${appOnlyScope} (app-only tokens take the resource's /.default scope)`
    : `the scope "${c.scope ?? ''}" is not valid for ${clientOf(c)}: check the provider's scope`;
const expiredDevice = (c: GrantContext) =>
  `the device code expired before it was approved: ${reauthorize(c)} and enter the code in time`;
const delegationHint = (c: GrantContext) =>
  `grant domain-wide delegation for ${clientOf(c)} with scope ${c.scope || 'https://mail.google.com/'} ` +
  `in the Workspace admin console (Security > Access and data control > API controls > Domain-wide delegation)`;

/** Google's answers are told apart by grant, error and description. */
function googleHint(c: GrantContext, error: string, desc: string): string | undefined {
  if (c.grant === 'device_code' && error === 'invalid_scope') return GOOGLE_DEVICE_FLOW_REFUSES_GMAIL;
  if (c.grant === 'jwt_bearer') {
    if (error === 'unauthorized_client') return delegationHint(c);
    if (error === 'invalid_grant') {
      if (/signature/i.test(desc))
        return 'the key was deleted or belongs to another service account: create a new JSON key (IAM > Service accounts > Keys)';
      if (/email or user id/i.test(desc))
        return `${c.mailbox ?? 'the mailbox'} is not an active user of the Workspace domain: check the account's email`;
      if (/\b(iat|exp)\b|short-lived|timeframe/i.test(desc)) return CLOCK;
      if (/account not found/i.test(desc))
        return 'the service account was deleted or disabled: check it in IAM > Service accounts';
    }
  }
  if (error === 'redirect_uri_mismatch')
    return `use an OAuth client of type "Desktop app" (any loopback port is accepted), or register ${c.redirectUri ?? 'the redirect URI'}`;
  if (error === 'invalid_client')
    return `the OAuth client was not found or the secret is wrong: check clientId and clientSecret (APIs & Services > Credentials)`;
  if (error === 'access_denied')
    return `access was denied: the user declined, or the consent screen is in testing and ${c.mailbox ?? 'the user'} is not a test user; ${reauthorize(c)} and allow access`;
  if (error === 'admin_policy_enforced')
    return `the Workspace administrator blocks this app: trust ${clientOf(c)} in Security > API controls > App access control`;
  if (error === 'org_internal')
    return `the consent screen is "Internal": sign in with an account of the app's organization, or make the app External`;
  return undefined;
}

function genericHint(c: GrantContext, error: string): string {
  switch (error) {
    case 'invalid_grant':
      if (c.grant === 'authorization_code')
        return `the authorization code expired, was used already, or does not match the redirect URI or PKCE verifier: ${reauthorize(c)}`;
      if (c.grant === 'device_code') return `the device code is no longer valid: ${reauthorize(c)}`;
      if (c.grant === 'jwt_bearer')
        return 'the assertion was refused: check the key file and that the mailbox exists';
      return `the grant was refused: check the credentials of ${clientOf(c)}`;
    case 'invalid_client':
      return `the token endpoint does not accept ${clientOf(c)} with these credentials: check clientId and the client secret or certificate`;
    case 'unauthorized_client':
      if (c.grant === 'jwt_bearer') return delegationHint(c);
      if (c.grant === 'client_credentials') return appOnlySetup(c);
      if (c.grant === 'device_code')
        return `${clientOf(c)} may not use the device flow: enable "Allow public client flows" (or the provider's equivalent)`;
      return `${clientOf(c)} may not use the ${c.grant} grant: enable it for the app`;
    case 'invalid_scope':
      return scopeHint(c);
    case 'unsupported_grant_type':
      return `the token endpoint does not support the ${c.grant} grant: check the provider's token URL`;
    case 'unsupported_response_type':
      return `the authorization endpoint does not issue codes to ${clientOf(c)}: check the app's platform settings`;
    case 'access_denied':
    case 'authorization_declined':
      return `access was denied (the user declined, or an administrator forbids the app): ${reauthorize(c)} and approve`;
    case 'expired_token':
      return expiredDevice(c);
    case 'bad_verification_code':
      return `the device code was not recognised: ${reauthorize(c)}`;
    case 'consent_required':
    case 'interaction_required':
    case 'login_required':
      return `the provider needs the user to sign in and consent: ${reauthorize(c)}`;
    case 'redirect_uri_mismatch':
      return `register ${c.redirectUri ?? 'the redirect URI'} for ${clientOf(c)}`;
    default:
      return `the provider answered "${error}": check the provider settings of ${clientOf(c)}`;
  }
}

function endpointHost(c: GrantContext): string {
  try {
    return c.endpoint ? new URL(c.endpoint).host : 'the token endpoint';
  } catch {
    return 'the token endpoint';
  }
}

function transientHint(c: GrantContext): string {
  const again =
    c.grant === 'jwt_bearer' || c.grant === 'client_credentials' ? 'the proxy retries' : 'try again';
  return `${endpointHost(c)} failed or could not be reached; ${again}, and check network access to it if this persists`;
}

/** A GrantError for an OAuth error body (token endpoint, or the authorization redirect). */
export function oauthGrantError(oauth: OAuthErrorDetails, ctx: GrantContext, status?: number): GrantError {
  const codes = aadstsCodes(oauth);
  const known = codes.find((code) => AADSTS_HINTS[code]);
  const serverSide = status !== undefined && (status >= 500 || status === 429);
  const permanent =
    !serverSide && (known !== undefined || PERMANENT_ERRORS.has(oauth.error) || status === 401);
  const hint = known
    ? AADSTS_HINTS[known]!(ctx)
    : serverSide || SERVER_TROUBLE.has(oauth.error)
      ? transientHint(ctx)
      : ((ctx.flavor === 'google' ? googleHint(ctx, oauth.error, oauth.description ?? '') : undefined) ??
        genericHint(ctx, oauth.error));
  const reason = codes.length ? `${oauth.error} (${codes.join(', ')})` : oauth.error;
  return new GrantError({
    kind: permanent ? 'permanent' : 'transient',
    failure: 'oauth_error',
    reason: status !== undefined && !permanent ? `HTTP ${status} ${reason}` : reason,
    hint,
    grant: ctx.grant,
    ...(status !== undefined ? { status } : {}),
    oauth,
  });
}

/** Any failure of a grant request as a GrantError (network and timeouts are transient). */
export function toGrantError(err: unknown, ctx: GrantContext): GrantError {
  if (err instanceof GrantError) return err;
  if (err instanceof TokenGrantError) {
    if (err.oauth) return oauthGrantError(err.oauth, ctx, err.status);
    return new GrantError({
      kind: err.kind,
      failure: 'endpoint_failed',
      reason: err.reason,
      hint: transientHint(ctx),
      grant: ctx.grant,
      ...(err.status !== undefined ? { status: err.status } : {}),
    });
  }
  return new GrantError({
    kind: 'transient',
    failure: 'endpoint_failed',
    reason: `unexpected ${(err as Error)?.name ?? 'error'}`,
    hint: transientHint(ctx),
    grant: ctx.grant,
  });
}

/** A failure found on our side (state, callback, missing refresh token, ...). */
export function localGrantError(
  failure: Exclude<GrantFailure, 'oauth_error' | 'endpoint_failed'>,
  reason: string,
  ctx: GrantContext,
  hint?: string,
): GrantError {
  return new GrantError({
    kind: failure === 'aborted' ? 'transient' : 'permanent',
    failure,
    reason,
    hint: hint ?? localHint(failure, ctx),
    grant: ctx.grant,
  });
}

function localHint(failure: GrantFailure, c: GrantContext): string {
  switch (failure) {
    case 'state_mismatch':
      return `the redirect does not belong to this authorization request (a stale browser tab, or a forged redirect); nothing was exchanged: ${reauthorize(c)}`;
    case 'no_refresh_token':
      if (c.flavor === 'google')
        return 'Google returns a refresh token only with access_type=offline and prompt=consent: remove the app at https://myaccount.google.com/permissions and authorize again';
      if (c.flavor === 'microsoft')
        return `Microsoft returns a refresh token only when the scope includes offline_access: add it to the provider's scope and ${reauthorize(c)}`;
      return `request offline access (a scope or consent setting of the provider) and ${reauthorize(c)}`;
    case 'bad_token_type':
      return "only Bearer access tokens work with XOAUTH2: check the provider's token URL";
    case 'device_expired':
      return expiredDevice(c);
    case 'aborted':
      return 'the authorization was cancelled';
    default:
      return reauthorize(c);
  }
}

// -- the SMTP reply text ---------------------------------------------------------------------------

/** RFC 5321 section 4.5.3.1.5: a reply line is at most 512 octets with its CRLF and "451 4.7.0 ". */
const MAX_REPLY_TEXT = 480;

/**
 * The text of the reply a client gets when a mailbox cannot get a token: the mailbox, the provider's
 * error (with AADSTS codes) and the hint, on one line of at most 480 octets, never a secret. The
 * codes come from the reply catalogue (src/shared/replies.ts): `451 4.7.0` for a permanent failure
 * (an operator must fix something), `451 4.4.3` for a temporary one.
 */
export function grantFailureText(err: GrantError, email: string): string {
  const text = `Mailbox ${email} cannot get an access token (${err.reason}): ${err.hint}`.replace(
    /[\r\n]+/g,
    ' ',
  );
  if (Buffer.byteLength(text) <= MAX_REPLY_TEXT) return text;
  let cut = text.slice(0, MAX_REPLY_TEXT - 3);
  while (Buffer.byteLength(cut) > MAX_REPLY_TEXT - 3) cut = cut.slice(0, -1); // octets, not characters
  return `${cut}...`;
}
