// Built-in providers and the defaults for every provider field. A `providers:` entry with a
// built-in name overrides only the fields it sets (smtp is merged field by field).

import type { ProviderConfig } from './types.js';

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

/** The provider's token endpoint for `tenant` (the provider's own when absent): `{tenant}` filled in. */
export function tokenUrl(provider: ProviderConfig, tenant: string = provider.tenant): string {
  return provider.tokenUrl.replaceAll('{tenant}', encodeURIComponent(tenant));
}

export function isBuiltinProvider(name: string): name is keyof typeof BUILTIN_PROVIDERS {
  return Object.hasOwn(BUILTIN_PROVIDERS, name);
}
