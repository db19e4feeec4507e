// Built-in providers and the defaults for every provider field. A `providers:` entry with a
// built-in name overrides only the fields it sets (smtp is merged field by field).

import type { AccountConfig, OAuthClientConfig, ProviderConfig } from './types.js';

/** Defaults for a provider defined in the config (and for fields a built-in does not set). */
export const PROVIDER_DEFAULTS = {
  tenant: '',
  scope: '',
  security: 'starttls',
  rejectUnauthorized: true,
  maxConnectionsPerAccount: 3,
  maxMessagesPerConnection: 100,
  messagesPerMinute: 0,
  connectionIdleTimeoutMs: 60_000,
  connectionMaxAgeMs: 600_000,
  acquireTimeoutMs: 10_000,
  commandTimeoutMs: 30_000,
} as const;

const COMMON = {
  maxMessagesPerConnection: PROVIDER_DEFAULTS.maxMessagesPerConnection,
  connectionIdleTimeoutMs: PROVIDER_DEFAULTS.connectionIdleTimeoutMs,
  connectionMaxAgeMs: PROVIDER_DEFAULTS.connectionMaxAgeMs,
  acquireTimeoutMs: PROVIDER_DEFAULTS.acquireTimeoutMs,
  commandTimeoutMs: PROVIDER_DEFAULTS.commandTimeoutMs,
};

export const BUILTIN_PROVIDERS: Readonly<Record<'google' | 'microsoft', ProviderConfig>> = Object.freeze({
  google: Object.freeze({
    ...COMMON,
    name: 'google',
    tokenUrl: 'https://oauth2.googleapis.com/token',
    authorizeUrl: 'https://accounts.google.com/o/oauth2/v2/auth',
    // Google refuses Gmail scopes here; `accounts authorize --device` says so instead of asking
    deviceAuthorizationUrl: 'https://oauth2.googleapis.com/device/code',
    tenant: '',
    scope: 'https://mail.google.com/',
    smtp: Object.freeze({
      host: 'smtp.gmail.com',
      port: 587,
      security: 'starttls' as const,
      rejectUnauthorized: true,
    }),
    maxConnectionsPerAccount: 5,
    messagesPerMinute: 0,
  }),
  microsoft: Object.freeze({
    ...COMMON,
    name: 'microsoft',
    tokenUrl: 'https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token',
    authorizeUrl: 'https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize',
    deviceAuthorizationUrl: 'https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode',
    tenant: 'common',
    scope: 'https://outlook.office.com/SMTP.Send offline_access',
    smtp: Object.freeze({
      host: 'smtp.office365.com',
      port: 587,
      security: 'starttls' as const,
      rejectUnauthorized: true,
    }),
    maxConnectionsPerAccount: 3,
    messagesPerMinute: 30,
  }),
});

export const BUILTIN_PROVIDER_NAMES = Object.keys(BUILTIN_PROVIDERS) as readonly string[];

/** Other spellings users write for the built-ins (the Python proxy used gmail|outlook). */
export const PROVIDER_ALIASES: Readonly<Record<string, string>> = {
  gmail: 'google',
  googlemail: 'google',
  gsuite: 'google',
  workspace: 'google',
  outlook: 'microsoft',
  office365: 'microsoft',
  o365: 'microsoft',
  m365: 'microsoft',
  hotmail: 'microsoft',
  azure: 'microsoft',
};

/** Scope of Microsoft app-only tokens for SMTP (the resource's `.default`). */
export const CLIENT_CREDENTIALS_SCOPE = 'https://outlook.office365.com/.default';
/** Scope a Google service account is delegated for mail. */
export const SERVICE_ACCOUNT_SCOPE = 'https://mail.google.com/';

export type ProviderEndpoint = 'tokenUrl' | 'authorizeUrl' | 'deviceAuthorizationUrl';

/**
 * One of the provider's endpoints for `tenant` (the provider's own when absent), `{tenant}` filled
 * in; undefined when the provider has no such endpoint.
 */
export function providerUrl(
  provider: ProviderConfig,
  endpoint: ProviderEndpoint,
  tenant: string = provider.tenant,
): string | undefined {
  return provider[endpoint]?.replaceAll('{tenant}', encodeURIComponent(tenant));
}

/** The provider's token endpoint for `tenant` (the provider's own when absent): `{tenant}` filled in. */
export function tokenUrl(provider: ProviderConfig, tenant: string = provider.tenant): string {
  return providerUrl(provider, 'tokenUrl', tenant)!;
}

/** How the accounts of a provider get their access tokens. */
export type AuthMode = 'refresh_token' | 'client_credentials' | 'service_account';

export function authMode(provider: ProviderConfig): AuthMode {
  return provider.auth?.type ?? 'refresh_token';
}

/**
 * The OAuth client a refresh-token account uses: its own clientId (and secret), else the provider's
 * oauthClient. A refresh token is bound to the client it was issued to, so the interactive flows and
 * the refreshes must agree on this.
 */
export function oauthClientOf(
  account: Pick<AccountConfig, 'clientId' | 'clientSecret'>,
  provider: ProviderConfig,
): OAuthClientConfig | undefined {
  if (account.clientId !== undefined) {
    return {
      clientId: account.clientId,
      ...(account.clientSecret !== undefined ? { clientSecret: account.clientSecret } : {}),
    };
  }
  return provider.oauthClient;
}

export function isBuiltinProvider(name: string): name is keyof typeof BUILTIN_PROVIDERS {
  return Object.hasOwn(BUILTIN_PROVIDERS, name);
}
