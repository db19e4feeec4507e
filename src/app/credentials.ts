// From a config snapshot to what the token manager needs per account: the refresh-token accounts'
// client, and the app-only grants built from a provider's `auth` (the certificate and its key, or
// the service account key file, parsed by the grants that own those formats). The loader only reads
// those files; their contents are checked here, so `check`, start-up and every reload refuse a bad
// key naming the field (docs/design.md, principle 7: a bad snapshot never replaces a good one).
import { createHash } from 'node:crypto';
import { ConfigError } from '../config/errors.js';
import { loadConfig, type LoadResult } from '../config/load.js';
import { oauthClientOf, providerUrl } from '../config/providers.js';
import type { Config, ProviderAuthConfig, ProviderConfig } from '../config/types.js';
import { formatPath } from '../config/errors.js';
import type { Issue } from '../shared/issue.js';
import { parseClientCertificate, type ClientAuthentication } from '../oauth/grants/client-credentials.js';
import { CredentialError } from '../oauth/grants/errors.js';
import { parseServiceAccountKey, type ServiceAccountKey } from '../oauth/grants/service-account-key.js';
import type { AppOnlyGrant, TokenAccount } from '../oauth/token-manager.js';

/** The parsed credentials of one `auth:` mapping (cached per snapshot object). */
type ParsedAuth =
  | { type: 'client_credentials'; auth: ClientAuthentication; fingerprint: string }
  | { type: 'service_account'; key: ServiceAccountKey; fingerprint: string };

const parsed = new WeakMap<ProviderAuthConfig, ParsedAuth>();

const sha256 = (...parts: string[]) => createHash('sha256').update(JSON.stringify(parts)).digest('hex');

/** Throws CredentialError (source = the config path of the field's mapping). */
function parseAuth(provider: ProviderConfig, auth: ProviderAuthConfig): ParsedAuth {
  const hit = parsed.get(auth);
  if (hit) return hit;
  const source = formatPath(['providers', provider.name, 'auth']);
  let out: ParsedAuth;
  if (auth.type === 'service_account') {
    let key: ServiceAccountKey;
    try {
      key = parseServiceAccountKey(auth.key, auth.keyFile);
    } catch (err) {
      // the key file's own fields are named after the file: "<file>: client_email: missing"
      if (err instanceof CredentialError) throw new CredentialError(source, 'keyFile', err.message);
      throw err;
    }
    out = { type: 'service_account', key, fingerprint: sha256(auth.key) };
  } else if (auth.certificate) {
    const c = auth.certificate;
    const certificate = parseClientCertificate(c.certificate, c.privateKey, source);
    out = {
      type: 'client_credentials',
      auth: { certificate },
      fingerprint: sha256(c.certificate, c.privateKey),
    };
  } else {
    out = {
      type: 'client_credentials',
      auth: { clientSecret: auth.clientSecret! },
      fingerprint: sha256(auth.clientSecret!),
    };
  }
  parsed.set(auth, out);
  return out;
}

/** A certificate this close to its end gets a warning at start-up, on reload and from `check`. */
const CERTIFICATE_WARNING_MS = 30 * 86_400_000;

/**
 * Problems in the app-only credentials of the snapshot's providers, each named by its path, and
 * warnings (a certificate that expired or soon will: Microsoft refuses it then, but the proxy's
 * other providers must keep working, so it does not stop a start or a reload).
 */
export function checkCredentials(config: Config, now = Date.now()): { issues: Issue[]; warnings: string[] } {
  const issues: Issue[] = [];
  const warnings: string[] = [];
  for (const p of Object.values(config.providers)) {
    if (!p.auth) continue;
    try {
      const r = parseAuth(p, p.auth);
      if (r.type === 'client_credentials' && 'certificate' in r.auth) {
        const end = r.auth.certificate.notAfter;
        const at = formatPath(['providers', p.name, 'auth', 'certificate']);
        if (end.getTime() <= now)
          warnings.push(
            `${at}: the certificate expired on ${end.toISOString()}: upload a new one for the app`,
          );
        else if (end.getTime() - now < CERTIFICATE_WARNING_MS)
          warnings.push(
            `${at}: the certificate expires on ${end.toISOString()}: upload a new one for the app`,
          );
      }
    } catch (err) {
      if (!(err instanceof CredentialError)) throw err;
      issues.push({ path: `${err.source}.${err.field}`, message: err.problem });
    }
  }
  return { issues, warnings };
}

export const credentialIssues = (config: Config): Issue[] => checkCredentials(config).issues;

/** loadConfig, then the app-only credentials: what `serve`, a reload and `check` accept. */
export async function loadCheckedConfig(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<LoadResult> {
  const r = await loadConfig(file, env);
  const { issues, warnings } = checkCredentials(r.config);
  if (issues.length) throw new ConfigError(issues, [...r.warnings, ...warnings]);
  return { config: r.config, warnings: [...r.warnings, ...warnings] };
}

/** The app-only grant of a provider for an account (its tenant, when it names one). */
export function appOnlyGrant(provider: ProviderConfig, tenant?: string): AppOnlyGrant | undefined {
  const auth = provider.auth;
  if (!auth) return undefined;
  const r = parseAuth(provider, auth);
  if (r.type === 'service_account')
    return { grant: 'jwt_bearer', key: r.key, scope: auth.scope, fingerprint: r.fingerprint };
  const a = auth as Extract<ProviderAuthConfig, { type: 'client_credentials' }>;
  return {
    grant: 'client_credentials',
    tokenUrl: providerUrl(provider, 'tokenUrl', tenant ?? a.tenant ?? provider.tenant)!,
    clientId: a.clientId,
    scope: a.scope,
    auth: (r as Extract<ParsedAuth, { type: 'client_credentials' }>).auth,
    fingerprint: r.fingerprint,
  };
}

/** The token manager's view of every account of the snapshot. */
export function tokenAccounts(config: Config): TokenAccount[] {
  return config.accounts.map((a): TokenAccount => {
    const provider = config.providers[a.provider]!;
    const base = { email: a.email, provider, ...(a.tenant !== undefined ? { tenant: a.tenant } : {}) };
    const appOnly = appOnlyGrant(provider, a.tenant);
    if (appOnly) return { ...base, appOnly };
    // the loader guarantees a client: the account's own or the provider's oauthClient
    const client = oauthClientOf(a, provider)!;
    return {
      ...base,
      clientId: client.clientId,
      ...(client.clientSecret !== undefined ? { clientSecret: client.clientSecret } : {}),
      ...(a.refreshToken !== undefined ? { refreshToken: a.refreshToken } : {}),
    };
  });
}
