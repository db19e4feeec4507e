// The shape of the config file, section by section. Leaf values are parsed by small hand-written
// validators so every message says what was expected; zod supplies structure, unknown-key
// detection and issue paths. Sections are parsed separately (see load.ts) so one bad section does
// not hide the problems in another.
//
// Keys, defaults and extensions beyond the README's config reference:
//
//   smtp.listen               ["127.0.0.1:2525"]  plain SMTP (+STARTTLS when smtp.tls is set); a
//                                                 single string is accepted too; ":2525" = loopback
//   smtp.tlsListen            []                  implicit-TLS listeners; needs smtp.tls
//   smtp.tls.cert / .key      -                   PEM file paths (relative to the config file)
//   smtp.requireTls           (absent)            absent = AUTH needs TLS on non-loopback listeners only
//   smtp.hostname             os.hostname()       greeting and EHLO name
//   smtp.maxClients           10000
//   smtp.maxMessageSize       36700160            bytes; advertised as SIZE
//   smtp.maxRecipients        100
//   smtp.idleTimeout          300s                also the deadline of one command line (slowloris)
//   smtp.minDataRate          500                 EXTENSION: bytes/s; a message must arrive within
//                                                 idleTimeout + size / minDataRate (0 = no limit)
//   smtp.trustedNetworks      []                  CIDRs, IPv4 or IPv6; a bare address means /32 or /128
//   smtp.maxInflightMessages  10000               EXTENSION: global budget of messages being relayed;
//                                                 past it clients get `452 4.3.1`
//   smtp.proxyProtocol        false               EXTENSION: true, or the load balancers' IP addresses:
//                                                 connections (from those) start with a PROXY v1 header
//                                                 whose client address is then used everywhere
//   smtp.maxInflightBytes     536870912           EXTENSION: global budget of message bytes held (512 MiB);
//                                                 must be >= smtp.maxMessageSize
//   http.listen               "127.0.0.1:9090"    "" or null disables the HTTP server
//   http.adminToken           (none)              empty = /admin/* disabled
//   http.publicUrl            (none)              EXTENSION: the external base URL of http.listen (http or
//                                                 https, no query); the web onboarding flow's redirect URI
//                                                 is <publicUrl>/oauth/callback; absent = web flow off
//   state.dir                 ./data              relative to the config file
//   state.secretKey           (none)              if set, at least 32 characters; required with state.redis
//   state.redis               (none)              EXTENSION: redis:// or rediss:// URL; several instances
//                                                 share leases, rate windows, tokens and account state there
//   state.instances           1                   EXTENSION: how many proxy instances (hosts) share the Redis;
//                                                 while it is unreachable each keeps to floor(limit / instances x workers)
//   state.keyPrefix           "xoauth2-proxy:"    EXTENSION: prefix of every Redis key
//   state.leaseTtl            30s                 EXTENSION: a dead instance's connection slots return within this
//   workers                   1                   EXTENSION: processes sharing the listeners; "auto" = the cores
//   shutdownTimeout           30s
//   oauth.refreshAhead        5m                  EXTENSION: refresh access tokens this long before expiry
//   oauth.requestTimeout      10s                 EXTENSION: timeout of one token-endpoint request
//   oauth.warmupConcurrency   16                  EXTENSION: token refreshes in parallel at start-up
//   log.level                 info                fatal|error|warn|info|debug|trace|silent
//   log.messages              true                EXTENSION: one log line per relayed message
//   metrics.perAccount        false               EXTENSION: add an `account` label to per-message metrics
//   accountsFile              (none)              YAML/JSON: a list of accounts or {accounts: [...]}
//   accounts                  []                  inline accounts (merged with accountsFile)
//
//   providers.<name>: tokenUrl (required for new names), tenant "", scope "",
//     smtp.host / smtp.port (required for new names), smtp.security starttls (none|starttls|tls),
//     smtp.ca (PEM file path), smtp.rejectUnauthorized true, smtp.chunking true (EXTENSION: BDAT
//     when the server offers CHUNKING and PIPELINING; false = always DATA), maxConnectionsPerAccount 3,
//     maxMessagesPerConnection 100, messagesPerMinute 0 (= unlimited), connectionIdleTimeout 60s,
//     connectionMaxAge 10m (EXTENSION), acquireTimeout 10s (EXTENSION: wait for a free upstream
//     connection before `451 4.7.0`), commandTimeout 30s (EXTENSION: connect/TLS/each reply).
//     Built-in `google` and `microsoft` can be overridden field by field.
//     Onboarding (extension; docs/onboarding.md): authorizeUrl, deviceAuthorizationUrl (built in for
//     google and microsoft; may contain {tenant}); oauthClient {clientId, clientSecret?}: the client
//     accounts without their own clientId use; auth: app-only for every account of the provider,
//     {type: client_credentials, tenant?, clientId, clientSecret | certificate + privateKey (PEM
//     files), scope (https://outlook.office365.com/.default)} or {type: service_account, keyFile
//     (Google JSON key), scope (the provider's)}.
//
//   accounts[]: email, provider (required); clientId (required unless the provider has an
//     oauthClient or auth), clientSecret, refreshToken (absent: the one `accounts authorize` stored
//     in the state store; not allowed with app-only auth), passwordHash ($scrypt$...), password
//     (plain text, warned), tenant, sourceAddress (IP), maxConnections (>= 1), messagesPerMinute
//     (>= 0) (optional). Exactly one of passwordHash/password, or neither (the account can then only
//     send from smtp.trustedNetworks; warned).
//
// Strings anywhere may use ${VAR} or ${VAR:-default}; durations are ms numbers or "250ms", "30s",
// "5m", "1h", "1h30m"; integer and boolean fields also accept "123" / "true" strings (from ${VAR}).

import net from 'node:net';
import os from 'node:os';
import { z } from 'zod';
import { normalizeEmail } from '../shared/email.js';
import type { Issue } from '../shared/issue.js';
import { parseHostPort } from '../shared/net.js';
import { DURATION_HINT, parseDuration } from './duration.js';
import { describeValue, formatPath } from './errors.js';
import { parsePasswordHash } from './password-hash.js';
import { didYouMean } from './suggest.js';
import type { HostPort, Security } from './types.js';

// ---------------------------------------------------------------------------------------------
// Leaf validators

type Bad = (message: string, path?: PropertyKey[]) => void;

/** A field parsed by `parse`, which reports problems through `bad` (several for lists). */
function leaf<T>(parse: (v: unknown, bad: Bad) => T) {
  return z
    .unknown()
    .optional()
    .transform((v, ctx): T => {
      let failed = false;
      const out = parse(v, (message, path) => {
        failed = true;
        ctx.addIssue({ code: 'custom', message, path: path as (string | number)[] | undefined });
      });
      return failed ? (z.NEVER as T) : out;
    });
}

const absent = (v: unknown): v is undefined | null => v === undefined || v === null;

function asString(v: unknown, bad: Bad, what = 'a string'): string | undefined {
  if (typeof v === 'string') return v;
  // Quoting advice: YAML turns `clientId: 0123` or `yes` into numbers/booleans.
  bad(
    `expected ${what}, got ${describeValue(v)}${typeof v === 'number' || typeof v === 'boolean' ? ' (quote it)' : ''}`,
  );
  return undefined;
}

/**
 * Like asString for fields that hold secrets: a wrong type is named but its value is never echoed.
 * These messages reach the log (admin API failures, reload errors) and an unquoted numeric PIN or
 * token (`password: 12345678`) is still a secret.
 */
function asSecretString(v: unknown, bad: Bad, what = 'a string'): string | undefined {
  if (typeof v === 'string') return v;
  const type =
    v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'a mapping' : `a ${typeof v}`;
  bad(`expected ${what}, got ${type}${typeof v === 'number' || typeof v === 'boolean' ? ' (quote it)' : ''}`);
  return undefined;
}

/** Required non-empty string. */
export const requiredString = (what = 'a non-empty string') =>
  leaf((v, bad) => {
    if (absent(v) || v === '') {
      bad(`required: expected ${what}`);
      return '';
    }
    return (asString(v, bad, what) ?? '').trim();
  });

/** Optional string; empty (e.g. an unset ${VAR}) counts as absent. */
export const optionalString = (fallback?: string) =>
  leaf((v, bad): string | undefined => {
    if (absent(v) || v === '') return fallback;
    return asString(v, bad);
  });

/** optionalString for secrets (see asSecretString). */
const optionalSecret = () =>
  leaf((v, bad): string | undefined => (absent(v) || v === '' ? undefined : asSecretString(v, bad)));

/** Optional string where "" is a meaningful value (provider scope, tenant). */
const optionalText = () => leaf((v, bad): string | undefined => (absent(v) ? undefined : asString(v, bad)));

function toInt(v: unknown, bad: Bad, min: number, max: number): number {
  const n = typeof v === 'string' && /^\s*-?\d+\s*$/.test(v) ? Number(v) : v;
  const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
  if (typeof n !== 'number' || !Number.isInteger(n)) {
    bad(`expected an integer ${range}, got ${describeValue(v)}`);
    return 0;
  }
  if (n < min || n > max) bad(`expected an integer ${range}, got ${n}`);
  return n;
}

export const integer = (fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  leaf((v, bad) => (absent(v) ? fallback : toInt(v, bad, min, max)));

const optionalInteger = (min = 0, max = Number.MAX_SAFE_INTEGER) =>
  leaf((v, bad): number | undefined => (absent(v) ? undefined : toInt(v, bad, min, max)));

function toBool(v: unknown, bad: Bad): boolean {
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === 'false') return v === 'true';
  bad(`expected true or false, got ${describeValue(v)}`);
  return false;
}

const boolean = (fallback: boolean) => leaf((v, bad) => (absent(v) || v === '' ? fallback : toBool(v, bad)));
const optionalBoolean = () =>
  leaf((v, bad): boolean | undefined => (absent(v) || v === '' ? undefined : toBool(v, bad)));

function toDuration(v: unknown, bad: Bad): number {
  const ms = parseDuration(v);
  if (ms === undefined) bad(`expected ${DURATION_HINT}, got ${describeValue(v)}`);
  return ms ?? 0;
}

/** Duration in ms. */
export const duration = (fallbackMs: number) =>
  leaf((v, bad) => (absent(v) ? fallbackMs : toDuration(v, bad)));
const optionalDuration = () =>
  leaf((v, bad): number | undefined => (absent(v) ? undefined : toDuration(v, bad)));

function oneOf<T extends string>(values: readonly T[], v: unknown, bad: Bad): T | undefined {
  if (typeof v === 'string' && (values as readonly string[]).includes(v)) return v as T;
  const hint = typeof v === 'string' ? didYouMean(v, values) : '';
  bad(`expected one of ${values.map((x) => `"${x}"`).join(', ')}, got ${describeValue(v)}${hint}`);
  return undefined;
}

function toHostPort(v: unknown, bad: Bad, path?: PropertyKey[]): HostPort | undefined {
  // A bare port (YAML number) listens on loopback, like ":2525".
  if (typeof v === 'number' && Number.isInteger(v)) v = `:${v}`;
  if (typeof v !== 'string') {
    bad(`expected "HOST:PORT", got ${describeValue(v)}`, path);
    return undefined;
  }
  try {
    return parseHostPort(v);
  } catch (err) {
    bad(`expected "HOST:PORT": ${(err as Error).message}`, path);
    return undefined;
  }
}

/** A list of HOST:PORT strings; a single string is a one-element list. */
const hostPortList = (fallback: string[]) =>
  leaf((v, bad): HostPort[] => {
    if (absent(v)) v = fallback;
    if (!Array.isArray(v)) v = [v];
    return (v as unknown[]).flatMap((item, i) => toHostPort(item, bad, [i]) ?? []);
  });

/** "10.0.0.0/8" / "2001:db8::/32" / a bare address -> normalized "addr/prefix", or an error message. */
export function parseCidr(s: string): { cidr: string } | { error: string } {
  const [addr = '', prefixText, ...rest] = s.trim().split('/');
  const family = net.isIPv4(addr) ? 'ipv4' : net.isIPv6(addr) ? 'ipv6' : undefined;
  if (!family || rest.length) return { error: `"${s}" is not a CIDR such as "10.0.0.0/8" or "fd00::/8"` };
  const max = family === 'ipv4' ? 32 : 128;
  const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= max)) return { error: `"${s}": prefix length must be 0 to ${max}` };
  try {
    // The SMTP side matches with net.BlockList; make sure it accepts what we accept.
    new net.BlockList().addSubnet(addr, prefix, family);
  } catch (err) {
    return { error: `"${s}": ${(err as Error).message}` };
  }
  return { cidr: `${addr}/${prefix}` };
}

const cidrList = () =>
  leaf((v, bad): string[] => {
    if (absent(v)) return [];
    if (!Array.isArray(v)) v = [v];
    return (v as unknown[]).flatMap((item, i) => {
      if (typeof item !== 'string') {
        bad(`expected a CIDR string, got ${describeValue(item)}`, [i]);
        return [];
      }
      const r = parseCidr(item);
      if ('error' in r) {
        bad(r.error, [i]);
        return [];
      }
      return [r.cidr];
    });
  });

// ---------------------------------------------------------------------------------------------
// Objects: unknown keys are errors with a "did you mean" hint

// The error map only sees the issue, so the allowed keys travel in the message to zodIssues().
const UNKNOWN_KEYS_TAG = '\u0000unknown-keys:';

function strict<S extends z.core.$ZodLooseShape>(shape: S) {
  const allowed = Object.keys(shape);
  return z.strictObject(shape, {
    error: (iss) =>
      iss.code === 'unrecognized_keys' ? UNKNOWN_KEYS_TAG + JSON.stringify(allowed) : undefined,
  });
}

export function unknownKeyMessage(key: string, allowed: readonly string[]): string {
  const hint = didYouMean(key, allowed);
  return hint
    ? `unknown key "${key}"${hint}`
    : `unknown key "${key}" (expected one of: ${allowed.join(', ')})`;
}

/** Zod issues -> Issues with paths relative to `prefix`. */
export function zodIssues(issues: readonly z.core.$ZodIssue[], prefix: PropertyKey[] = []): Issue[] {
  const out: Issue[] = [];
  for (const iss of issues) {
    const path = [...prefix, ...iss.path];
    if (iss.code === 'unrecognized_keys' && iss.message.startsWith(UNKNOWN_KEYS_TAG)) {
      const allowed = JSON.parse(iss.message.slice(UNKNOWN_KEYS_TAG.length)) as string[];
      for (const key of iss.keys) {
        out.push({ path: formatPath([...path, key]), message: unknownKeyMessage(key, allowed) });
      }
    } else if (iss.code === 'invalid_type') {
      const expected =
        iss.expected === 'object' ? 'a mapping' : iss.expected === 'array' ? 'a list' : iss.expected;
      out.push({ path: formatPath(path), message: `expected ${expected}, got ${describeValue(iss.input)}` });
    } else {
      out.push({ path: formatPath(path), message: iss.message });
    }
  }
  return out;
}

/** safeParse with our issue format. */
export function parseWith<S extends z.ZodType>(
  schema: S,
  value: unknown,
  prefix: PropertyKey[] = [],
): { ok: true; value: z.output<S> } | { ok: false; issues: Issue[] } {
  const r = schema.safeParse(value, { reportInput: true });
  return r.success ? { ok: true, value: r.data } : { ok: false, issues: zodIssues(r.error.issues, prefix) };
}

/** A section that may be missing or empty (`smtp:` with nothing under it parses as null). */
const section = <S extends z.core.$ZodLooseShape>(shape: S) => z.preprocess((v) => v ?? {}, strict(shape));

// ---------------------------------------------------------------------------------------------
// Sections

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const SECURITY: readonly Security[] = ['none', 'starttls', 'tls'];

export const smtpSchema = section({
  listen: hostPortList(['127.0.0.1:2525']),
  tlsListen: hostPortList([]),
  tls: strict({ cert: requiredString('a PEM file path'), key: requiredString('a PEM file path') }).nullish(),
  requireTls: optionalBoolean(),
  hostname: optionalString(os.hostname()),
  maxClients: integer(10_000, 1),
  maxMessageSize: integer(36_700_160, 1),
  maxRecipients: integer(100, 1),
  idleTimeout: duration(300_000),
  minDataRate: integer(500, 0),
  trustedNetworks: cidrList(),
  proxyProtocol: leaf((v, bad): boolean | string[] => {
    if (absent(v) || v === false) return false;
    if (v === true) return true;
    if (!Array.isArray(v)) {
      bad(`expected true, false or a list of load balancer IP addresses, got ${describeValue(v)}`);
      return false;
    }
    return (v as unknown[]).flatMap((item, i) => {
      if (typeof item !== 'string' || net.isIP(item.trim()) === 0) {
        bad(`expected the IP address of a load balancer, got ${describeValue(item)}`, [i]);
        return [];
      }
      return [item.trim()];
    });
  }),
  maxInflightMessages: integer(10_000, 1),
  maxInflightBytes: integer(536_870_912, 1),
});

export const httpSchema = section({
  listen: leaf((v, bad): HostPort | undefined => {
    if (v === undefined) v = '127.0.0.1:9090';
    // Explicitly empty / null / false turns the HTTP server off.
    if (v === null || v === '' || v === false) return undefined;
    return toHostPort(v, bad);
  }),
  adminToken: optionalSecret(),
  publicUrl: leaf((v, bad): string | undefined => {
    if (absent(v) || v === '') return undefined;
    const s = asString(v, bad, 'an http(s) URL');
    if (s === undefined) return undefined;
    let url: URL | undefined;
    try {
      url = new URL(s.trim());
    } catch {}
    if (!url || !['http:', 'https:'].includes(url.protocol)) {
      bad(`expected an http(s) URL such as "https://relay.example.com", got ${describeValue(s)}`);
      return undefined;
    }
    if (url.search || url.hash || url.username || url.password) {
      bad('expected a base URL without query, fragment or credentials');
      return undefined;
    }
    // no trailing slash: paths are appended to it (`/oauth/callback`)
    return url.origin + url.pathname.replace(/\/+$/, '');
  }),
});

export const stateSchema = section({
  dir: optionalString('./data'),
  secretKey: leaf((v, bad): string | undefined => {
    if (absent(v) || v === '') return undefined;
    const s = asSecretString(v, bad);
    if (s !== undefined && s.length < 32) bad(`must be at least 32 characters (got ${s.length})`);
    return s;
  }),
  redis: leaf((v, bad): string | undefined => {
    if (absent(v) || v === '') return undefined;
    const s = asSecretString(v, bad, 'a redis:// or rediss:// URL');
    if (s === undefined) return undefined;
    let url: URL | undefined;
    try {
      url = new URL(s);
    } catch {
      url = undefined;
    }
    // the URL may carry a password: never echo it
    if (!url || (url.protocol !== 'redis:' && url.protocol !== 'rediss:') || !url.hostname)
      bad('expected a redis://host:port or rediss://host:port URL');
    return s;
  }),
  instances: integer(1, 1, 10_000),
  keyPrefix: leaf((v, bad): string => {
    if (absent(v)) return 'xoauth2-proxy:';
    const s = asString(v, bad) ?? 'xoauth2-proxy:';
    if (/[\s{}]/.test(s)) bad('must not contain spaces or braces (braces are Redis hash tags)');
    return s;
  }),
  leaseTtl: duration(30_000),
});

/** `workers`: a count, or "auto" (0 here; resolved to the number of cores by the loader). */
export const workersSchema = leaf((v, bad): number => {
  if (absent(v) || v === '') return 1;
  if (v === 'auto') return 0;
  return toInt(v, bad, 1, 1024);
});

export const oauthSchema = section({
  refreshAhead: duration(300_000),
  requestTimeout: duration(10_000),
  warmupConcurrency: integer(16, 1),
});

export const logSchema = section({
  level: leaf((v, bad) => (absent(v) || v === '' ? 'info' : (oneOf(LOG_LEVELS, v, bad) ?? 'info'))),
  messages: boolean(true),
});

export const metricsSchema = section({ perAccount: boolean(false) });

export const shutdownTimeoutSchema = duration(30_000);
export const accountsFileSchema = optionalString();

/** An http(s) URL (optional). */
const httpUrl = () =>
  leaf((v, bad): string | undefined => {
    if (absent(v) || v === '') return undefined;
    const s = asString(v, bad, 'an http(s) URL');
    if (s === undefined) return undefined;
    let ok = false;
    try {
      ok = ['http:', 'https:'].includes(new URL(s.replaceAll('{tenant}', 'tenant')).protocol);
    } catch {}
    if (!ok) bad(`expected an http(s) URL, got ${describeValue(s)}`);
    return s;
  });

/** A `providers:` entry as written: every field optional, so overrides of built-ins can be merged. */
export const providerSchema = section({
  tokenUrl: httpUrl(),
  authorizeUrl: httpUrl(),
  deviceAuthorizationUrl: httpUrl(),
  oauthClient: strict({
    clientId: requiredString('the OAuth client id of the app registration'),
    clientSecret: optionalSecret(),
  }).nullish(),
  // checked by its own schema (clientCredentialsAuthSchema / serviceAccountAuthSchema) once the type is known
  auth: z.unknown().optional(),
  tenant: optionalText(),
  scope: optionalText(),
  smtp: strict({
    host: optionalString(),
    port: optionalInteger(1, 65535),
    security: leaf((v, bad): Security | undefined => (absent(v) ? undefined : oneOf(SECURITY, v, bad))),
    ca: optionalString(),
    rejectUnauthorized: optionalBoolean(),
    chunking: optionalBoolean(),
  }).nullish(),
  maxConnectionsPerAccount: optionalInteger(1),
  maxMessagesPerConnection: optionalInteger(1),
  messagesPerMinute: optionalInteger(0),
  connectionIdleTimeout: optionalDuration(),
  connectionMaxAge: optionalDuration(),
  acquireTimeout: optionalDuration(),
  commandTimeout: optionalDuration(),
});
export type ProviderInput = z.output<typeof providerSchema>;

export const AUTH_TYPES = ['client_credentials', 'service_account'] as const;
const authType = (t: (typeof AUTH_TYPES)[number]) => leaf(() => t);

/** `providers.<name>.auth` with `type: client_credentials` (Microsoft app-only). */
export const clientCredentialsAuthSchema = strict({
  type: authType('client_credentials'),
  tenant: optionalString(),
  clientId: requiredString("the app registration's application (client) id"),
  clientSecret: optionalSecret(),
  certificate: optionalString(),
  privateKey: optionalString(),
  scope: optionalText(),
});

/** `providers.<name>.auth` with `type: service_account` (Google domain-wide delegation). */
export const serviceAccountAuthSchema = strict({
  type: authType('service_account'),
  keyFile: requiredString('the path of the service account JSON key file'),
  scope: optionalText(),
});

/** The `type` of an `auth:` mapping, or a problem with it. */
export function authTypeOf(v: unknown): { type: (typeof AUTH_TYPES)[number] } | { error: string } {
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    return { error: `expected a mapping with a type (${AUTH_TYPES.join(' or ')}), got ${describeValue(v)}` };
  const t = (v as Record<string, unknown>).type;
  if (typeof t === 'string' && (AUTH_TYPES as readonly string[]).includes(t))
    return { type: t as (typeof AUTH_TYPES)[number] };
  if (t === undefined || t === null || t === '')
    return { error: `required: expected ${AUTH_TYPES.map((x) => `"${x}"`).join(' or ')}` };
  const hint = typeof t === 'string' ? didYouMean(t, AUTH_TYPES) : '';
  return {
    error: `expected ${AUTH_TYPES.map((x) => `"${x}"`).join(' or ')}, got ${describeValue(t)}${hint}`,
  };
}

const EMAIL = /^[^\s@]+@[^\s@.]+(?:\.[^\s@.]+)*$/;

export const accountSchema = section({
  email: leaf((v, bad) => {
    if (absent(v) || v === '') {
      bad('required: expected an email address');
      return '';
    }
    const s = asString(v, bad, 'an email address')?.trim();
    if (s !== undefined && !EMAIL.test(s)) bad(`expected an email address, got ${describeValue(s)}`);
    return normalizeEmail(s ?? '');
  }),
  provider: requiredString('a provider name'),
  // required unless the provider has an oauthClient or app-only auth (config/accounts.ts checks)
  clientId: optionalString(),
  clientSecret: optionalSecret(),
  // absent: the one `accounts authorize` stored in the state store; "" is a mistake (an unset ${VAR})
  refreshToken: leaf((v, bad): string | undefined => {
    if (v === undefined || v === null) return undefined;
    const s = asSecretString(v, bad, 'a non-empty string');
    if (s !== undefined && s.trim() === '')
      bad(
        'expected a non-empty string (leave refreshToken out to use the one `xoauth2-proxy accounts authorize` stores)',
      );
    return s?.trim();
  }),
  passwordHash: leaf((v, bad): string | undefined => {
    if (absent(v) || v === '') return undefined;
    // a plain-text password put here by mistake is a secret too
    const s = asSecretString(v, bad);
    if (s !== undefined && !parsePasswordHash(s)) {
      bad('expected a "$scrypt$ln=..,r=..,p=..$salt$hash" value from `xoauth2-proxy hash-password`');
    }
    return s;
  }),
  password: optionalSecret(),
  tenant: optionalString(),
  sourceAddress: leaf((v, bad): string | undefined => {
    if (absent(v) || v === '') return undefined;
    const s = asString(v, bad, 'an IP address');
    if (s !== undefined && !net.isIP(s)) bad(`expected an IPv4 or IPv6 address, got ${describeValue(s)}`);
    return s;
  }),
  maxConnections: optionalInteger(1),
  messagesPerMinute: optionalInteger(0),
});
export type AccountInput = z.output<typeof accountSchema>;

export const TOP_LEVEL_KEYS = [
  'smtp',
  'http',
  'state',
  'shutdownTimeout',
  'workers',
  'oauth',
  'log',
  'metrics',
  'providers',
  'accountsFile',
  'accounts',
] as const;
