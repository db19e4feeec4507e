// What the grants need to know about the two big providers: their endpoints, the extras their
// authorization endpoints want, and what their device endpoints refuse. Everything else is RFC 6749.

/** Picks provider-specific URL extras and error hints; `generic` is plain RFC behaviour. */
export type ProviderFlavor = 'google' | 'microsoft' | 'generic';

export const GOOGLE_ENDPOINTS = {
  authorizeUrl: 'https://accounts.google.com/o/oauth2/v2/auth',
  tokenUrl: 'https://oauth2.googleapis.com/token',
  deviceAuthorizationUrl: 'https://oauth2.googleapis.com/device/code',
  scope: 'https://mail.google.com/',
} as const;

/** `{tenant}` is substituted by the caller, as for `tokenUrl`. */
export const MICROSOFT_ENDPOINTS = {
  authorizeUrl: 'https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize',
  tokenUrl: 'https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token',
  deviceAuthorizationUrl: 'https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode',
  scope: 'https://outlook.office.com/SMTP.Send offline_access',
} as const;

/** The scope of Microsoft app-only (client credentials) tokens for SMTP: the resource's `.default`. */
export const MICROSOFT_APP_ONLY_SCOPE = 'https://outlook.office365.com/.default';

/** Microsoft issues refresh tokens only when the scope includes offline_access; it is added when missing. */
export function withOfflineAccess(flavor: ProviderFlavor, scope: string): string {
  const s = scope.trim();
  if (flavor !== 'microsoft' || s.split(/\s+/).includes('offline_access')) return s;
  return s ? `${s} offline_access` : 'offline_access';
}

const GOOGLE_HOSTS = /(^|\.)(google\.com|googleapis\.com)$/i;
const MICROSOFT_HOSTS =
  /(^|\.)(microsoftonline\.com|microsoft\.com|windows\.net|live\.com|microsoftonline\.us|chinacloudapi\.cn|microsoftonline\.cn)$/i;

/** The flavor of an endpoint, by its host name; `generic` for anything else (the simulator, tests). */
export function providerFlavor(endpointUrl: string): ProviderFlavor {
  let host: string;
  try {
    host = new URL(endpointUrl).hostname;
  } catch {
    return 'generic';
  }
  if (GOOGLE_HOSTS.test(host)) return 'google';
  if (MICROSOFT_HOSTS.test(host)) return 'microsoft';
  return 'generic';
}

export const GOOGLE_DEVICE_FLOW_REFUSES_GMAIL =
  "Google's device flow does not allow Gmail scopes (https://mail.google.com/): authorize in a browser " +
  'instead (without --device; --no-browser on a host without one), or use a service account with ' +
  'domain-wide delegation';

const GMAIL_SCOPE = /^https:\/\/(mail\.google\.com\/|www\.googleapis\.com\/auth\/gmail\.)/;

/**
 * Why the device flow cannot work for this provider and scope, or undefined when it can. Google's
 * device endpoint answers `invalid_scope` for every Gmail scope, so there is no point asking.
 */
export function deviceFlowRefusal(flavor: ProviderFlavor, scope: string): string | undefined {
  if (flavor !== 'google') return undefined;
  return scope.split(/\s+/).some((s) => GMAIL_SCOPE.test(s)) ? GOOGLE_DEVICE_FLOW_REFUSES_GMAIL : undefined;
}
