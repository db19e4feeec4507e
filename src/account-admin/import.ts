// Parsing of the Python PowerMTA proxy's account formats into our account objects (pure: no I/O).
//
// JSON: `{accounts: [{account_id, email, provider: gmail|outlook, client_id, client_secret,
// refresh_token, oauth_token_url, ip_address, connection_settings: {max_connections_per_account}}]}`
// (keys starting with `_` are ignored, as the Python proxy does).
// CSV: `email,account_id,refresh_token,client_id[,timestamp,hostname]`, with optional header and
// `#` comment lines; or `email,password` (for app-only providers, or accounts to be authorized
// later): the password is given back as `password` for the caller to hash, never written as is.

import YAML from 'yaml';
import { normalizeEmail } from '../shared/email.js';
import type { Issue } from '../shared/issue.js';

export type ImportFormat = 'json' | 'csv';

/** An account in our file format (camelCase keys), not yet validated. */
export type RawAccount = Record<string, unknown> & { email: string; provider: string };

export interface ImportedAccount {
  /** `accounts[2]` or `line 4` */
  source: string;
  account: RawAccount;
}

/** A provider the imported accounts need that is not a built-in (e.g. consumer Outlook.com). */
export interface NeededProvider {
  name: string;
  tokenUrl: string;
  scope: string;
  smtp: { host: string; port: number; security: 'starttls' | 'tls' | 'none' };
  maxConnectionsPerAccount: number;
  messagesPerMinute: number;
  /** emails assigned to it */
  accounts: string[];
}

export interface ImportParseResult {
  accounts: ImportedAccount[];
  providers: NeededProvider[];
  /** `path` names the entry: `accounts[2] (a@example.com)`, `line 4`, `(file)` */
  errors: Issue[];
  notes: string[];
}

export interface ImportParseOptions {
  /** force this provider for every account (`google`, `microsoft`, or a configured name; gmail/outlook accepted) */
  provider?: string;
}

export const GOOGLE_TOKEN_URLS = [
  'https://oauth2.googleapis.com/token',
  'https://accounts.google.com/o/oauth2/token',
  'https://www.googleapis.com/oauth2/v4/token',
];
const MS_TOKEN_URL = /^https:\/\/login\.microsoftonline\.com\/([^/]+)\/oauth2\/v2\.0\/token\/?$/i;
export const CONSUMER_OUTLOOK_TOKEN_URL = 'https://login.live.com/oauth20_token.srf';

const PROVIDER_MAP: Readonly<Record<string, string>> = {
  gmail: 'google',
  google: 'google',
  outlook: 'microsoft',
  microsoft: 'microsoft',
  office365: 'microsoft',
  hotmail: 'microsoft',
};

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function normalizeProviderName(name: string): string {
  const n = name.trim();
  return PROVIDER_MAP[n.toLowerCase()] ?? n;
}

/** google / microsoft from a client id, or undefined when it looks like neither. */
export function inferProvider(clientId: string): 'google' | 'microsoft' | undefined {
  const id = clientId.trim();
  if (/\.apps\.googleusercontent\.com$/i.test(id)) return 'google';
  if (GUID.test(id)) return 'microsoft';
  return undefined;
}

export function detectFormat(fileName: string, text: string): ImportFormat {
  if (/\.json$/i.test(fileName)) return 'json';
  if (/\.csv$/i.test(fileName)) return 'csv';
  return /^\s*[[{]/.test(text) ? 'json' : 'csv';
}

export function parseImport(
  text: string,
  format: ImportFormat,
  opts: ImportParseOptions = {},
): ImportParseResult {
  return format === 'json' ? parsePythonProxyJson(text, opts) : parseCsvAccounts(text, opts);
}

const str = (v: unknown): string | undefined => {
  if (typeof v === 'string') return v.trim() || undefined;
  if (typeof v === 'number') return String(v);
  return undefined;
};

class ProviderCollector {
  readonly byUrl = new Map<string, NeededProvider>();

  /** The provider for `base` (google|microsoft) accounts whose token endpoint is `url`. */
  resolve(base: string, url: string | undefined, email: string, account: RawAccount): string {
    if (!url) return base;
    const u = url.trim();
    if (base === 'google' && GOOGLE_TOKEN_URLS.includes(u.replace(/\/$/, ''))) return base;
    if (base === 'microsoft') {
      const m = MS_TOKEN_URL.exec(u);
      if (m) {
        if (m[1]!.toLowerCase() !== 'common') account.tenant = m[1]!;
        return base;
      }
    }
    if (base !== 'google' && base !== 'microsoft') return base; // a configured provider: trust it
    let p = this.byUrl.get(u);
    if (!p) {
      p = makeProvider(
        base,
        u,
        [...this.byUrl.values()].map((x) => x.name),
      );
      this.byUrl.set(u, p);
    }
    p.accounts.push(email);
    return p.name;
  }
}

function makeProvider(base: string, url: string, taken: string[]): NeededProvider {
  const consumer = url.replace(/\/$/, '').toLowerCase() === CONSUMER_OUTLOOK_TOKEN_URL;
  let name: string;
  if (consumer) name = 'outlook-consumer';
  else {
    let host = 'custom';
    try {
      host = new URL(url).hostname.replace(/[^A-Za-z0-9]+/g, '-');
    } catch {}
    name = `${base}-${host}`;
  }
  for (let i = 2; taken.includes(name); i++) name = `${name.replace(/-\d+$/, '')}-${i}`;
  const google = base === 'google';
  return {
    name,
    tokenUrl: url,
    scope: google ? 'https://mail.google.com/' : 'https://outlook.office.com/SMTP.Send offline_access',
    smtp: google
      ? { host: 'smtp.gmail.com', port: 587, security: 'starttls' }
      : consumer
        ? { host: 'smtp-mail.outlook.com', port: 587, security: 'starttls' }
        : { host: 'smtp.office365.com', port: 587, security: 'starttls' },
    maxConnectionsPerAccount: google ? 5 : 3,
    messagesPerMinute: google ? 0 : 30,
    accounts: [],
  };
}

export function parsePythonProxyJson(text: string, opts: ImportParseOptions = {}): ImportParseResult {
  const out: ImportParseResult = { accounts: [], providers: [], errors: [], notes: [] };
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    out.errors.push({ path: '(file)', message: `not valid JSON: ${(err as Error).message}` });
    return out;
  }
  const list = Array.isArray(doc) ? doc : (doc as { accounts?: unknown } | null)?.accounts;
  if (!Array.isArray(list)) {
    out.errors.push({ path: '(file)', message: 'expected {"accounts": [...]} or a list of accounts' });
    return out;
  }
  const collector = new ProviderCollector();
  const forced = opts.provider ? normalizeProviderName(opts.provider) : undefined;
  list.forEach((entry, i) => {
    const source = `accounts[${i}]`;
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
      out.errors.push({ path: source, message: 'expected an object' });
      return;
    }
    const e: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(entry)) if (!k.startsWith('_')) e[k] = v;
    const email = str(e.email);
    const clientId = str(e.client_id);
    const refreshToken = str(e.refresh_token);
    const missing = [!email && 'email', !clientId && 'client_id', !refreshToken && 'refresh_token'].filter(
      Boolean,
    );
    if (missing.length) {
      out.errors.push({
        path: email ? `${source} (${email})` : source,
        message: `missing ${missing.join(', ')}`,
      });
      return;
    }
    let base = forced;
    if (!base) {
      const p = str(e.provider);
      base = p ? PROVIDER_MAP[p.toLowerCase()] : inferProvider(clientId!);
      if (!base) {
        out.errors.push({
          path: `${source} (${email})`,
          message: p
            ? `unknown provider "${p}" (expected gmail or outlook); use --provider`
            : 'no provider and cannot tell it from client_id; use --provider',
        });
        return;
      }
    }
    const account: RawAccount = { email: normalizeEmail(email!), provider: base, clientId: clientId! };
    const secret = str(e.client_secret);
    if (secret) account.clientSecret = secret;
    account.refreshToken = refreshToken!;
    const ip = str(e.ip_address);
    if (ip) account.sourceAddress = ip;
    const cs = e.connection_settings as Record<string, unknown> | undefined;
    const maxConn = cs && typeof cs === 'object' ? Number(cs.max_connections_per_account) : NaN;
    if (Number.isInteger(maxConn) && maxConn > 0) account.maxConnections = maxConn;
    account.provider = forced
      ? base
      : collector.resolve(base, str(e.oauth_token_url), account.email, account);
    out.accounts.push({ source, account });
  });
  out.providers = [...collector.byUrl.values()];
  return out;
}

/** Split one CSV line (RFC 4180 quotes; no embedded newlines). */
export function splitCsvLine(line: string): string[] {
  const fields: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"' && cur.trim() === '') {
      quoted = true;
      cur = '';
    } else if (ch === ',') {
      fields.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  fields.push(cur.trim());
  return fields;
}

/** Data lines of a CSV (no blank, comment or header lines), with their line numbers. */
function csvRows(text: string): { n: number; fields: string[] }[] {
  const rows: { n: number; fields: string[] }[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const trimmed = line.replace(/^\uFEFF/, '').trim();
    if (!trimmed || trimmed.startsWith('#')) return;
    const fields = splitCsvLine(trimmed);
    if (fields[0]!.toLowerCase() === 'email') return; // header
    rows.push({ n: i + 1, fields });
  });
  return rows;
}

/** A CSV of `email,password` lines (the onboarding of app-only mailboxes), not the Python proxy's. */
export function isPasswordCsv(text: string): boolean {
  const rows = csvRows(text);
  return rows.length > 0 && rows.every((r) => r.fields.length === 2);
}

export function parseCsvAccounts(text: string, opts: ImportParseOptions = {}): ImportParseResult {
  const out: ImportParseResult = { accounts: [], providers: [], errors: [], notes: [] };
  const forced = opts.provider ? normalizeProviderName(opts.provider) : undefined;
  // email,password only when every line is: a two-field line among the Python proxy's is a broken one
  const passwordForm = isPasswordCsv(text);
  let googleWithoutSecret = 0;
  text.split(/\r?\n/).forEach((line, i) => {
    const source = `line ${i + 1}`;
    const trimmed = line.replace(/^\uFEFF/, '').trim();
    if (!trimmed || trimmed.startsWith('#')) return;
    const f = splitCsvLine(trimmed);
    if (f[0]!.toLowerCase() === 'email') return; // header
    if (passwordForm) {
      const [email, password] = f;
      if (!email || !password) {
        out.errors.push({ path: source, message: 'expected email,password (both non-empty)' });
      } else if (!forced) {
        out.errors.push({
          path: `${source} (${email})`,
          message: 'an email,password line needs --provider (the provider whose app-only auth serves it)',
        });
      } else {
        out.accounts.push({ source, account: { email: normalizeEmail(email), provider: forced, password } });
      }
      return;
    }
    const [email, , refreshToken, clientId] = f;
    if (f.length < 4 || !email || !refreshToken || !clientId) {
      out.errors.push({
        path: source,
        message:
          'expected email,account_id,refresh_token,client_id[,timestamp,hostname] (or a file of email,password lines)',
      });
      return;
    }
    const provider = forced ?? inferProvider(clientId);
    if (!provider) {
      out.errors.push({
        path: `${source} (${email})`,
        message: `cannot tell the provider from client_id "${clientId}" (not *.apps.googleusercontent.com nor a GUID); use --provider`,
      });
      return;
    }
    if (provider === 'google') googleWithoutSecret++;
    out.accounts.push({
      source,
      account: { email: normalizeEmail(email), provider, clientId, refreshToken },
    });
  });
  if (googleWithoutSecret) {
    out.notes.push(
      `${googleWithoutSecret} Google account(s) from CSV have no clientSecret (the CSV format has none); ` +
        "Google's token endpoint needs it for web and desktop OAuth clients: add clientSecret to those accounts",
    );
  }
  return out;
}

/** The YAML to add under `providers:` in the config for the providers the import needs. */
export function providersSnippet(providers: readonly NeededProvider[]): string {
  const obj: Record<string, unknown> = {};
  for (const p of providers) {
    obj[p.name] = {
      tokenUrl: p.tokenUrl,
      scope: p.scope,
      smtp: { ...p.smtp },
      maxConnectionsPerAccount: p.maxConnectionsPerAccount,
      messagesPerMinute: p.messagesPerMinute,
    };
  }
  return YAML.stringify({ providers: obj }, { lineWidth: 0 });
}
