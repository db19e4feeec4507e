// Account validation, shared by the loader, the admin API and the offline `accounts` commands.

import path from 'node:path';
import { normalizeEmail } from '../shared/email.js';
import type { Issue } from '../shared/issue.js';
import { ConfigError, describeValue, joinPath } from './errors.js';
import { DocumentError, readDocument } from './files.js';
import { interpolateEnv, unsetWarning } from './interpolate.js';
import { BUILTIN_PROVIDERS, PROVIDER_ALIASES } from './providers.js';
import { accountSchema, parseWith, unknownKeyMessage } from './schema.js';
import { closest } from './suggest.js';
import type { AccountConfig, ProviderConfig } from './types.js';

export type ProviderNames = Readonly<Record<string, ProviderConfig>> | readonly string[];

export type AccountValidation =
  { ok: true; account: AccountConfig; warnings: Issue[] } | { ok: false; issues: Issue[] };

function providerNames(providers: ProviderNames): readonly string[] {
  return Array.isArray(providers) ? providers : Object.keys(providers);
}

function providerOf(providers: ProviderNames, name: string): ProviderConfig | undefined {
  if (Array.isArray(providers)) return undefined;
  const r = providers as Readonly<Record<string, ProviderConfig>>;
  return Object.hasOwn(r, name) ? r[name] : undefined;
}

const APP_ONLY_LABEL = {
  client_credentials: 'Microsoft app-only (client credentials)',
  service_account: 'a Google service account',
} as const;

/**
 * What the account's provider says about its credentials: app-only providers take no client or
 * refresh token from the account; refresh-token providers need a client id from the account or
 * their oauthClient. Unknown modes (a provider known by name only) check nothing.
 */
function credentialIssues(raw: Record<string, unknown>, provider: ProviderConfig | undefined): Issue[] {
  if (!provider) return [];
  const issues: Issue[] = [];
  const present = (k: string) => raw[k] !== undefined && raw[k] !== null && raw[k] !== '';
  const auth = provider.auth;
  if (auth) {
    const fields = [
      'clientId',
      'clientSecret',
      'refreshToken',
      ...(auth.type === 'service_account' ? ['tenant'] : []),
    ];
    for (const k of fields.filter(present)) {
      issues.push({
        path: k,
        message:
          `not used: provider "${provider.name}" gets tokens for its mailboxes as ${APP_ONLY_LABEL[auth.type]} ` +
          `(providers.${provider.name}.auth), so an account needs only email and password; remove ${k}`,
      });
    }
    return issues;
  }
  if (!present('clientId')) {
    if (present('clientSecret')) {
      issues.push({
        path: 'clientSecret',
        message: `set clientId with it, or put the secret in providers.${provider.name}.oauthClient`,
      });
    } else if (!provider.oauthClient) {
      issues.push({
        path: 'clientId',
        message: `required: expected the OAuth client id (or set providers.${provider.name}.oauthClient for every account of "${provider.name}")`,
      });
    }
  }
  return issues;
}

export function unknownProviderMessage(name: string, known: readonly string[]): string {
  const guess = closest(name, known, PROVIDER_ALIASES);
  const hint = guess ? ` (did you mean "${guess}"?)` : ` (known providers: ${[...known].sort().join(', ')})`;
  return `unknown provider "${name}"${hint}`;
}

/**
 * Validate one account object as written in a config or accounts file (or posted to the admin
 * API). Issue and warning paths are relative to the account: `provider`, `email`, ... (empty =
 * the account as a whole).
 */
export function validateAccount(
  raw: unknown,
  providers: ProviderNames,
  /** names that count as known without a resolved provider (providers whose entry has errors) */
  alsoKnown: readonly string[] = [],
): AccountValidation {
  const known = [...new Set([...providerNames(providers), ...alsoKnown])];
  const parsed = parseWith(accountSchema, raw);
  const issues = parsed.ok ? [] : [...parsed.issues];
  // Checked on the raw value too, so an unknown provider is reported even when other fields fail.
  const rawObj = raw !== null && typeof raw === 'object' ? (raw as Record<string, unknown>) : undefined;
  const rawProvider = rawObj?.provider;
  if (typeof rawProvider === 'string' && rawProvider.trim() && !known.includes(rawProvider.trim())) {
    issues.push({ path: 'provider', message: unknownProviderMessage(rawProvider.trim(), known) });
  }
  if (rawObj && typeof rawProvider === 'string') {
    const reported = new Set(issues.map((i) => i.path));
    for (const i of credentialIssues(rawObj, providerOf(providers, rawProvider.trim())))
      if (!reported.has(i.path)) issues.push(i);
  }
  if (parsed.ok && parsed.value.password !== undefined && parsed.value.passwordHash !== undefined) {
    issues.push({ path: 'password', message: 'set either passwordHash or password, not both' });
  }
  if (!parsed.ok || issues.length) return { ok: false, issues };

  const a = parsed.value;
  const account: AccountConfig = { email: a.email, provider: a.provider };
  // Only set keys that have values, so snapshots compare cleanly on reload.
  for (const key of [
    'clientId',
    'clientSecret',
    'refreshToken',
    'passwordHash',
    'password',
    'tenant',
    'sourceAddress',
    'maxConnections',
    'messagesPerMinute',
  ] as const) {
    if (a[key] !== undefined) (account as unknown as Record<string, unknown>)[key] = a[key];
  }
  const warnings: Issue[] = [];
  if (a.password !== undefined) {
    warnings.push({
      path: 'password',
      message: 'plain-text password; store a passwordHash from `xoauth2-proxy hash-password` instead',
    });
  } else if (a.passwordHash === undefined) {
    warnings.push({
      path: '',
      message: `${a.email} has no passwordHash or password: it can only send from smtp.trustedNetworks`,
    });
  }
  return { ok: true, account, warnings };
}

export interface LocatedAccount {
  account: AccountConfig;
  /** where it was defined, e.g. `accounts[1]` or `accounts.yaml: accounts[0]` */
  where: string;
}

/**
 * Validate a list of raw accounts; `where(i)` names entry i. Duplicates (emails are lower-cased)
 * are checked against `seen`, which is shared across inline accounts and the accounts file.
 */
export function validateAccountList(
  entries: readonly unknown[],
  providers: ProviderNames,
  where: (i: number) => string,
  seen: Map<string, string> = new Map(),
  alsoKnown: readonly string[] = [],
): { accounts: LocatedAccount[]; issues: Issue[]; warnings: string[] } {
  const accounts: LocatedAccount[] = [];
  const issues: Issue[] = [];
  const warnings: string[] = [];
  entries.forEach((raw, i) => {
    const at = where(i);
    const r = validateAccount(raw, providers, alsoKnown);
    if (!r.ok)
      for (const iss of r.issues) issues.push({ path: joinPath(at, iss.path), message: iss.message });
    // Duplicates are checked even for otherwise invalid entries so one run reports everything.
    const rawEmail =
      raw !== null && typeof raw === 'object' ? (raw as Record<string, unknown>).email : undefined;
    const email = typeof rawEmail === 'string' ? normalizeEmail(rawEmail) : '';
    if (email) {
      const first = seen.get(email);
      if (first !== undefined) {
        issues.push({
          path: joinPath(at, 'email'),
          message: `duplicate account "${email}" (also at ${first}; emails are case-insensitive)`,
        });
        return;
      }
      seen.set(email, at);
    }
    if (!r.ok) return;
    for (const w of r.warnings) warnings.push(`${joinPath(at, w.path)}: ${w.message}`);
    accounts.push({ account: r.account, where: at });
  });
  return { accounts, issues, warnings };
}

/** Entries of an accounts document: a list, or a mapping `{accounts: [...]}` (`wrapped`). */
export function accountEntries(doc: unknown, label: string): { entries: unknown[]; wrapped: boolean } {
  if (doc === null || doc === undefined) return { entries: [], wrapped: false };
  if (Array.isArray(doc)) return { entries: doc, wrapped: false };
  if (typeof doc === 'object') {
    const issues: Issue[] = [];
    for (const key of Object.keys(doc)) {
      if (key !== 'accounts')
        issues.push({ path: `${label}: ${key}`, message: unknownKeyMessage(key, ['accounts']) });
    }
    const list = (doc as Record<string, unknown>).accounts ?? [];
    if (!Array.isArray(list)) {
      issues.push({ path: `${label}: accounts`, message: `expected a list, got ${describeValue(list)}` });
    }
    if (issues.length) throw new ConfigError(issues);
    return { entries: list as unknown[], wrapped: true };
  }
  throw new ConfigError([
    {
      path: label,
      message: `expected a list of accounts or a mapping with "accounts:", got ${describeValue(doc)}`,
    },
  ]);
}

/** Read an accounts file without validating the entries (for tools that rewrite it). */
export async function readAccountsFile(
  file: string,
  label = path.basename(file),
): Promise<{ entries: unknown[]; wrapped: boolean }> {
  let doc: unknown;
  try {
    doc = await readDocument(file);
  } catch (err) {
    if (err instanceof DocumentError) throw new ConfigError([{ path: label, message: err.message }]);
    throw err;
  }
  return accountEntries(doc, label);
}

export interface LoadAccountsOptions {
  /** providers accounts may name (default: the built-ins) */
  providers?: ProviderNames;
  env?: NodeJS.ProcessEnv;
  /** prefix of issue paths (default: the file's base name) */
  label?: string;
}

/**
 * Read and validate an accounts file on its own. Throws ConfigError with paths such as
 * `accounts.yaml: accounts[2].email`.
 */
export async function loadAccountsFile(
  file: string,
  opts: LoadAccountsOptions = {},
): Promise<{ accounts: AccountConfig[]; warnings: string[] }> {
  const label = opts.label ?? path.basename(file);
  const { entries } = await readAccountsFile(file, label);
  const { value, unset } = interpolateEnv(entries, opts.env ?? process.env, ['accounts']);
  const r = validateAccountList(
    value as unknown[],
    opts.providers ?? BUILTIN_PROVIDERS,
    (i) => `${label}: accounts[${i}]`,
  );
  const warnings = [...unset.map((u) => `${label}: ${unsetWarning(u)}`), ...r.warnings];
  if (r.issues.length) throw new ConfigError(r.issues, warnings);
  return { accounts: r.accounts.map((a) => a.account), warnings };
}
