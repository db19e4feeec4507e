// Build a validated, deep-frozen Config snapshot from a file or an in-memory object. Every section
// is checked even when another one fails, and all problems are thrown together in one ConfigError.

import os from 'node:os';
import path from 'node:path';
import { accountEntries, validateAccountList, type LocatedAccount } from './accounts.js';
import { ConfigError, describeValue, formatPath } from './errors.js';
import { DocumentError, describeFsError, displayPath, readDocument, readPem, resolvePath } from './files.js';
import { readFile } from 'node:fs/promises';
import { deepFreeze } from './freeze.js';
import { interpolateEnv, unsetWarning } from './interpolate.js';
import {
  BUILTIN_PROVIDERS,
  BUILTIN_PROVIDER_NAMES,
  CLIENT_CREDENTIALS_SCOPE,
  PROVIDER_DEFAULTS,
  SERVICE_ACCOUNT_SCOPE,
  isBuiltinProvider,
} from './providers.js';
import {
  TOP_LEVEL_KEYS,
  accountsFileSchema,
  authTypeOf,
  clientCredentialsAuthSchema,
  serviceAccountAuthSchema,
  httpSchema,
  logSchema,
  metricsSchema,
  oauthSchema,
  parseWith,
  providerSchema,
  shutdownTimeoutSchema,
  workersSchema,
  smtpSchema,
  stateSchema,
  unknownKeyMessage,
  type ProviderInput,
} from './schema.js';
import type { Config, ProviderAuthConfig, ProviderConfig } from './types.js';
import type { Issue } from '../shared/issue.js';
import { isLoopback, formatHostPort } from '../shared/net.js';

export { ConfigError } from './errors.js';
export {
  validateAccount,
  loadAccountsFile,
  readAccountsFile,
  type AccountValidation,
  type ProviderNames,
} from './accounts.js';
export { summarizeConfig } from './summary.js';
export { BUILTIN_PROVIDERS } from './providers.js';

export interface LoadResult {
  config: Config;
  warnings: string[];
}

export interface ParseOptions {
  /** relative paths in the config resolve against this directory */
  baseDir: string;
  env?: NodeJS.ProcessEnv;
  /** the file the object came from (becomes `config.file`) */
  file?: string;
}

export async function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Promise<LoadResult> {
  const abs = path.resolve(file);
  let raw: unknown;
  try {
    raw = await readDocument(abs);
  } catch (err) {
    if (err instanceof DocumentError) throw new ConfigError([{ path: file, message: err.message }]);
    throw err;
  }
  return parseConfig(raw, { baseDir: path.dirname(abs), env, file: abs });
}

const PROVIDER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

type Parsed<T> = { ok: true; value: T } | { ok: false; issues: Issue[] };

export async function parseConfig(raw: unknown, opts: ParseOptions): Promise<LoadResult> {
  const env = opts.env ?? process.env;
  const baseDir = path.resolve(opts.baseDir);
  const issues: Issue[] = [];
  const warnings: string[] = [];
  const issue = (p: string, message: string) => issues.push({ path: p, message });
  const take = <T>(r: Parsed<T>): T | undefined => {
    if (r.ok) return r.value;
    issues.push(...r.issues);
    return undefined;
  };

  const interpolated = interpolateEnv(raw, env);
  warnings.push(...interpolated.unset.map(unsetWarning));
  const doc = interpolated.value ?? {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError(
      [{ path: '(top level)', message: `expected a mapping of settings, got ${describeValue(doc)}` }],
      warnings,
    );
  }
  const top = doc as Record<string, unknown>;
  for (const key of Object.keys(top)) {
    if (!(TOP_LEVEL_KEYS as readonly string[]).includes(key))
      issue(formatPath([key]), unknownKeyMessage(key, TOP_LEVEL_KEYS));
  }

  const smtp = take(parseWith(smtpSchema, top.smtp, ['smtp']));
  const http = take(parseWith(httpSchema, top.http, ['http']));
  const state = take(parseWith(stateSchema, top.state, ['state']));
  const oauth = take(parseWith(oauthSchema, top.oauth, ['oauth']));
  const log = take(parseWith(logSchema, top.log, ['log']));
  const metrics = take(parseWith(metricsSchema, top.metrics, ['metrics']));
  const shutdownTimeoutMs = take(parseWith(shutdownTimeoutSchema, top.shutdownTimeout, ['shutdownTimeout']));
  const workersIn = take(parseWith(workersSchema, top.workers, ['workers']));
  if (state?.redis !== undefined && state.secretKey === undefined)
    issue(
      'state.secretKey',
      'required with state.redis: the tokens kept in Redis are encrypted with it (the same value on every instance)',
    );
  const accountsFileRel = take(parseWith(accountsFileSchema, top.accountsFile, ['accountsFile']));

  const { providers, caFiles, authFiles, knownNames } = resolveProviders(top.providers, issues, warnings);

  // Accounts: inline first, then the file; duplicates are reported where they occur second.
  const seen = new Map<string, string>();
  const located: LocatedAccount[] = [];
  const addAccounts = (entries: unknown[], where: (i: number) => string) => {
    const r = validateAccountList(entries, providers, where, seen, knownNames);
    located.push(...r.accounts);
    issues.push(...r.issues);
    warnings.push(...r.warnings);
  };
  if (top.accounts !== undefined && top.accounts !== null) {
    if (Array.isArray(top.accounts)) addAccounts(top.accounts, (i) => `accounts[${i}]`);
    else issue('accounts', `expected a list of accounts, got ${describeValue(top.accounts)}`);
  }
  let accountsFile: string | undefined;
  if (accountsFileRel !== undefined) {
    accountsFile = resolvePath(baseDir, accountsFileRel);
    const label = displayPath(baseDir, accountsFile);
    try {
      const fileDoc = await readDocument(accountsFile);
      const { entries } = accountEntries(fileDoc, label);
      const fileInterp = interpolateEnv(entries, env, ['accounts']);
      warnings.push(...fileInterp.unset.map((u) => `${label}: ${unsetWarning(u)}`));
      addAccounts(fileInterp.value as unknown[], (i) => `${label}: accounts[${i}]`);
    } catch (err) {
      if (err instanceof DocumentError) issue('accountsFile', err.message);
      else if (err instanceof ConfigError) issues.push(...err.issues);
      else throw err;
    }
  }

  // Files referenced by the config are read now so a bad path fails `check`, not the first TLS client.
  let tls: Config['smtp']['tls'];
  if (smtp?.tls) {
    const certPath = resolvePath(baseDir, smtp.tls.cert);
    const keyPath = resolvePath(baseDir, smtp.tls.key);
    const [cert, key] = await Promise.all([readPem(certPath, 'certificate'), readPem(keyPath, 'key')]);
    if ('error' in cert) issue('smtp.tls.cert', cert.error);
    if ('error' in key) issue('smtp.tls.key', key.error);
    if ('pem' in cert && 'pem' in key) tls = { cert: cert.pem, key: key.pem, certPath, keyPath };
  }
  await Promise.all(
    caFiles.map(async ({ name, file }) => {
      const r = await readPem(resolvePath(baseDir, file), 'CA');
      if ('error' in r) issue(`${formatPath(['providers', name, 'smtp', 'ca'])}`, r.error);
      else providers[name]!.smtp.ca = r.pem;
    }),
  );
  await readAuthFiles(baseDir, providers, authFiles, issue);

  if (smtp) {
    if (!smtp.tls) {
      if (smtp.tlsListen.length)
        issue('smtp.tlsListen', 'implicit-TLS listeners need smtp.tls (cert and key)');
      if (smtp.requireTls === true)
        issue('smtp.requireTls', 'true needs smtp.tls (cert and key), or AUTH is never possible');
      if (smtp.requireTls === undefined) {
        smtp.listen.forEach((hp, i) => {
          if (!isLoopback(hp.host)) {
            warnings.push(
              `smtp.listen[${i}]: ${formatHostPort(hp)} is not loopback and smtp.tls is not set: ` +
                'AUTH is refused there (set smtp.tls, or requireTls: false to allow passwords in clear text)',
            );
          }
        });
      }
    }
    if (smtp.maxInflightBytes < smtp.maxMessageSize) {
      issue(
        'smtp.maxInflightBytes',
        `must be at least smtp.maxMessageSize (${smtp.maxMessageSize}), or a message of the maximum size is never accepted`,
      );
    }
  }

  if (issues.length) throw new ConfigError(issues, warnings);
  // Every section parsed (issues would have thrown), so the values below are defined.
  const config: Config = {
    ...(opts.file !== undefined ? { file: path.resolve(opts.file) } : {}),
    smtp: {
      listen: smtp!.listen,
      tlsListen: smtp!.tlsListen,
      ...(tls ? { tls } : {}),
      ...(smtp!.requireTls !== undefined ? { requireTls: smtp!.requireTls } : {}),
      hostname: smtp!.hostname!.trim(),
      maxClients: smtp!.maxClients,
      maxMessageSize: smtp!.maxMessageSize,
      maxRecipients: smtp!.maxRecipients,
      idleTimeoutMs: smtp!.idleTimeout,
      minDataRate: smtp!.minDataRate,
      trustedNetworks: smtp!.trustedNetworks,
      proxyProtocol: smtp!.proxyProtocol,
      maxInflightMessages: smtp!.maxInflightMessages,
      maxInflightBytes: smtp!.maxInflightBytes,
    },
    http: {
      ...(http!.listen ? { listen: http!.listen } : {}),
      ...(http!.adminToken !== undefined ? { adminToken: http!.adminToken } : {}),
      ...(http!.publicUrl !== undefined ? { publicUrl: http!.publicUrl } : {}),
    },
    state: {
      dir: resolvePath(baseDir, state!.dir!),
      ...(state!.secretKey !== undefined ? { secretKey: state!.secretKey } : {}),
      ...(state!.redis !== undefined ? { redis: state!.redis } : {}),
      instances: state!.instances,
      keyPrefix: state!.keyPrefix,
      leaseTtlMs: state!.leaseTtl,
    },
    shutdownTimeoutMs: shutdownTimeoutMs!,
    workers: workersIn === 0 ? Math.max(1, os.availableParallelism()) : workersIn!,
    oauth: {
      refreshAheadMs: oauth!.refreshAhead,
      requestTimeoutMs: oauth!.requestTimeout,
      warmupConcurrency: oauth!.warmupConcurrency,
    },
    log: { level: log!.level, messages: log!.messages },
    metrics: { perAccount: metrics!.perAccount },
    providers,
    ...(accountsFile !== undefined ? { accountsFile } : {}),
    accounts: located.map((l) => l.account),
  };
  return { config: deepFreeze(config), warnings };
}

/**
 * Built-ins plus the `providers:` section. On errors, the names of bad providers still count as
 * known, so accounts naming them are not also reported as "unknown provider".
 */
function resolveProviders(
  raw: unknown,
  issues: Issue[],
  warnings: string[],
): {
  providers: Record<string, ProviderConfig>;
  caFiles: { name: string; file: string }[];
  authFiles: AuthFile[];
  knownNames: string[];
} {
  const providers: Record<string, ProviderConfig> = {};
  for (const name of BUILTIN_PROVIDER_NAMES)
    providers[name] = structuredClone(BUILTIN_PROVIDERS[name as 'google']);
  const knownNames = [...BUILTIN_PROVIDER_NAMES];
  const caFiles: { name: string; file: string }[] = [];
  const authFiles: AuthFile[] = [];
  if (raw === undefined || raw === null) return { providers, caFiles, authFiles, knownNames };
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    issues.push({
      path: 'providers',
      message: `expected a mapping of provider names, got ${describeValue(raw)}`,
    });
    return { providers, caFiles, authFiles, knownNames };
  }
  for (const [name, entry] of Object.entries(raw)) {
    const at = ['providers', name];
    if (!knownNames.includes(name)) knownNames.push(name);
    if (!PROVIDER_NAME.test(name)) {
      issues.push({
        path: formatPath(at),
        message: 'provider names use letters, digits, ".", "_" and "-" only',
      });
      continue;
    }
    const parsed = parseWith(providerSchema, entry, at);
    if (!parsed.ok) {
      issues.push(...parsed.issues);
      continue;
    }
    const merged = mergeProvider(name, parsed.value, issues);
    if (!merged) continue;
    if (parsed.value.auth !== undefined && parsed.value.auth !== null) {
      const auth = resolveAuth(merged, parsed.value.auth, issues, authFiles);
      if (!auth) continue;
      merged.auth = auth;
      if (merged.oauthClient) {
        warnings.push(
          `${formatPath([...at, 'oauthClient'])}: not used: the accounts of "${name}" get app-only tokens (auth.type ${auth.type})`,
        );
      }
    }
    providers[name] = merged;
    if (parsed.value.smtp?.ca) caFiles.push({ name, file: parsed.value.smtp.ca });
    if (merged.smtp.security === 'none' && !isLoopback(merged.smtp.host)) {
      warnings.push(
        `${formatPath([...at, 'smtp', 'security'])}: "none" sends access tokens unencrypted to ${merged.smtp.host}`,
      );
    }
  }
  return { providers, caFiles, authFiles, knownNames };
}

/** A file an `auth:` mapping names, read once every section is parsed. */
interface AuthFile {
  provider: string;
  field: 'certificate' | 'privateKey' | 'keyFile';
  file: string;
}

/** Tenant names that are not a directory: client credentials need the app's own tenant. */
const NOT_A_TENANT = new Set(['', 'common', 'organizations', 'consumers']);

/** `providers.<name>.auth`: checked by its type's schema; the files it names are read later. */
function resolveAuth(
  provider: ProviderConfig,
  raw: unknown,
  issues: Issue[],
  files: AuthFile[],
): ProviderAuthConfig | undefined {
  const at = ['providers', provider.name, 'auth'];
  const kind = authTypeOf(raw);
  if ('error' in kind) {
    const typed = raw !== null && typeof raw === 'object' && !Array.isArray(raw);
    issues.push({ path: formatPath(typed ? [...at, 'type'] : at), message: kind.error });
    return undefined;
  }
  if (kind.type === 'service_account') {
    const r = parseWith(serviceAccountAuthSchema, raw, at);
    if (!r.ok) {
      issues.push(...r.issues);
      return undefined;
    }
    files.push({ provider: provider.name, field: 'keyFile', file: r.value.keyFile });
    return {
      type: 'service_account',
      keyFile: r.value.keyFile,
      key: '',
      scope: r.value.scope || provider.scope || SERVICE_ACCOUNT_SCOPE,
    };
  }
  const r = parseWith(clientCredentialsAuthSchema, raw, at);
  if (!r.ok) {
    issues.push(...r.issues);
    return undefined;
  }
  const a = r.value;
  const before = issues.length;
  const bad = (field: string, message: string) => issues.push({ path: formatPath([...at, field]), message });
  if (a.clientSecret === undefined && a.certificate === undefined)
    bad('clientSecret', 'required: a client secret, or certificate and privateKey (PEM files) instead');
  if (a.clientSecret !== undefined && a.certificate !== undefined)
    bad('certificate', 'set either clientSecret or certificate, not both');
  if (a.certificate !== undefined && a.privateKey === undefined)
    bad('privateKey', "required with certificate: the PEM file of the certificate's RSA private key");
  if (a.privateKey !== undefined && a.certificate === undefined)
    bad('certificate', 'required with privateKey: the PEM file of the certificate registered for the app');
  const tenant = a.tenant ?? provider.tenant;
  if (provider.tokenUrl.includes('{tenant}') && NOT_A_TENANT.has(tenant.toLowerCase())) {
    bad(
      'tenant',
      `required: the directory (tenant) ID or a verified domain of the app registration (client credentials do not work with "${tenant || '(empty)'}")`,
    );
  }
  if (issues.length > before) return undefined;
  if (a.certificate !== undefined) {
    files.push({ provider: provider.name, field: 'certificate', file: a.certificate });
    files.push({ provider: provider.name, field: 'privateKey', file: a.privateKey! });
  }
  return {
    type: 'client_credentials',
    ...(a.tenant !== undefined ? { tenant: a.tenant } : {}),
    clientId: a.clientId,
    ...(a.clientSecret !== undefined ? { clientSecret: a.clientSecret } : {}),
    ...(a.certificate !== undefined
      ? {
          certificate: {
            certificate: '',
            privateKey: '',
            certificateFile: a.certificate,
            privateKeyFile: a.privateKey!,
          },
        }
      : {}),
    scope: a.scope || CLIENT_CREDENTIALS_SCOPE,
  };
}

/**
 * Reads the certificate, private key and key files of app-only providers into the snapshot, so a
 * bad path fails `check` and a reload re-reads them. What is inside is checked by
 * app/credentials.ts (the grants own those formats).
 */
async function readAuthFiles(
  baseDir: string,
  providers: Record<string, ProviderConfig>,
  files: readonly AuthFile[],
  issue: (path: string, message: string) => void,
): Promise<void> {
  await Promise.all(
    files.map(async ({ provider, field, file }) => {
      const auth = providers[provider]?.auth;
      if (!auth) return;
      const abs = resolvePath(baseDir, file);
      const at = formatPath(['providers', provider, 'auth', field]);
      if (auth.type === 'service_account') {
        try {
          auth.key = await readFile(abs, 'utf8');
          auth.keyFile = abs;
        } catch (err) {
          issue(at, `cannot read the key file ${abs}: ${describeFsError(err)}`);
        }
        return;
      }
      const r = await readPem(abs, field === 'certificate' ? 'certificate' : 'private key');
      if ('error' in r) return issue(at, r.error);
      const c = auth.certificate!;
      if (field === 'certificate') {
        c.certificate = r.pem;
        c.certificateFile = abs;
      } else {
        c.privateKey = r.pem;
        c.privateKeyFile = abs;
      }
    }),
  );
}

function mergeProvider(name: string, p: ProviderInput, issues: Issue[]): ProviderConfig | undefined {
  const base = isBuiltinProvider(name) ? BUILTIN_PROVIDERS[name] : undefined;
  const smtp: Partial<NonNullable<ProviderInput['smtp']>> = p.smtp ?? {};
  if (!base) {
    const need = (value: unknown, rel: string[], what: string) => {
      if (value === undefined) {
        issues.push({
          path: formatPath(['providers', name, ...rel]),
          message: `required: ${what} (only the built-in providers ${BUILTIN_PROVIDER_NAMES.join(', ')} have defaults)`,
        });
      }
    };
    need(p.tokenUrl, ['tokenUrl'], 'the OAuth2 token endpoint URL');
    need(smtp.host, ['smtp', 'host'], 'the upstream SMTP host');
    need(smtp.port, ['smtp', 'port'], 'the upstream SMTP port');
    if (p.tokenUrl === undefined || smtp.host === undefined || smtp.port === undefined) return undefined;
  }
  const D = PROVIDER_DEFAULTS;
  const authorizeUrl = p.authorizeUrl ?? base?.authorizeUrl;
  const deviceAuthorizationUrl = p.deviceAuthorizationUrl ?? base?.deviceAuthorizationUrl;
  return {
    name,
    tokenUrl: p.tokenUrl ?? base!.tokenUrl,
    ...(authorizeUrl !== undefined ? { authorizeUrl } : {}),
    ...(deviceAuthorizationUrl !== undefined ? { deviceAuthorizationUrl } : {}),
    ...(p.oauthClient
      ? {
          oauthClient: {
            clientId: p.oauthClient.clientId,
            ...(p.oauthClient.clientSecret !== undefined ? { clientSecret: p.oauthClient.clientSecret } : {}),
          },
        }
      : {}),
    tenant: p.tenant ?? base?.tenant ?? D.tenant,
    scope: p.scope ?? base?.scope ?? D.scope,
    smtp: {
      host: smtp.host ?? base!.smtp.host,
      port: smtp.port ?? base!.smtp.port,
      security: smtp.security ?? base?.smtp.security ?? D.security,
      rejectUnauthorized: smtp.rejectUnauthorized ?? base?.smtp.rejectUnauthorized ?? D.rejectUnauthorized,
      ...((smtp.chunking ?? base?.smtp.chunking) !== undefined
        ? { chunking: smtp.chunking ?? base?.smtp.chunking }
        : {}),
    },
    maxConnectionsPerAccount:
      p.maxConnectionsPerAccount ?? base?.maxConnectionsPerAccount ?? D.maxConnectionsPerAccount,
    maxMessagesPerConnection:
      p.maxMessagesPerConnection ?? base?.maxMessagesPerConnection ?? D.maxMessagesPerConnection,
    messagesPerMinute: p.messagesPerMinute ?? base?.messagesPerMinute ?? D.messagesPerMinute,
    connectionIdleTimeoutMs:
      p.connectionIdleTimeout ?? base?.connectionIdleTimeoutMs ?? D.connectionIdleTimeoutMs,
    connectionMaxAgeMs: p.connectionMaxAge ?? base?.connectionMaxAgeMs ?? D.connectionMaxAgeMs,
    acquireTimeoutMs: p.acquireTimeout ?? base?.acquireTimeoutMs ?? D.acquireTimeoutMs,
    commandTimeoutMs: p.commandTimeout ?? base?.commandTimeoutMs ?? D.commandTimeoutMs,
  };
}
