// What the simulated provider knows about: OAuth clients (Azure app registrations, per tenant),
// Google service accounts, and which mailboxes each may reach. Input comes from the API, the CLI
// and /control; every validation error names the field.
//
// Open until registered: while no client is registered any client_id is taken for a public client
// (the demo and the benchmarks never register one); once one is, only registered clients are
// known. Service accounts likewise, separately.
import { timingSafeEqual, createHash } from 'node:crypto';
import { publicKeyFromPem, type PublicKeyInfo } from './keys.js';

export const GOOGLE_MAIL_SCOPE = 'https://mail.google.com/';

export interface Client {
  clientId: string;
  clientSecret?: string;
  /** home tenant (lower-cased); undefined = multi-tenant (known in every tenant) */
  tenant?: string;
  /** exact redirect URIs besides loopback ones */
  redirectUris: Set<string>;
  /** certificate or public key for private_key_jwt client assertions */
  key?: PublicKeyInfo;
  /** mailboxes an app-only (client_credentials) token may use: addresses, `@domain` or `*` */
  mailboxes: Set<string>;
}

export interface ServiceAccount {
  clientEmail: string;
  clientId: string;
  privateKeyId: string;
  key: PublicKeyInfo;
  /** mailboxes the domain-wide delegation covers: addresses, `@domain` or `*` */
  mailboxes: Set<string>;
  /** scopes the delegation covers */
  scopes: Set<string>;
}

type Obj = Record<string, unknown>;

function object(value: unknown, field: string): Obj {
  if (!value || typeof value !== 'object' || Array.isArray(value))
    throw new Error(`${field}: must be a JSON object`);
  return value as Obj;
}

function checkKeys(o: Obj, field: string, known: readonly string[]): void {
  for (const k of Object.keys(o))
    if (!known.includes(k)) throw new Error(`${field}: unknown field "${k}" (known: ${known.join(', ')})`);
}

function str(o: Obj, key: string, field: string): string | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.trim() === '')
    throw new Error(`${field}.${key}: must be a non-empty string`);
  return v;
}

function strList(o: Obj, key: string, field: string): string[] | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string' && s.trim() !== ''))
    throw new Error(`${field}.${key}: must be a list of non-empty strings`);
  return v as string[];
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const TENANT = /^[A-Za-z0-9][A-Za-z0-9.-]*$/;

export function isEmail(s: string): boolean {
  return EMAIL.test(s);
}

/** `*`, `@domain` or an address; lower-cased. */
export function mailboxPattern(value: string, field: string): string {
  const v = value.trim().toLowerCase();
  if (v === '*' || (v.startsWith('@') && EMAIL.test('x' + v)) || EMAIL.test(v)) return v;
  throw new Error(`${field}: "${value}" is not a mailbox address, @domain or *`);
}

export function matchesMailbox(patterns: Set<string>, mailbox: string): boolean {
  const m = mailbox.toLowerCase();
  return patterns.has('*') || patterns.has(m) || patterns.has(m.slice(m.lastIndexOf('@')));
}

/** An absolute URI without a fragment (RFC 6749 section 3.1.2). */
export function redirectUri(value: string, field: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`${field}: "${value}" is not an absolute URI`);
  }
  if (url.hash !== '' || value.includes('#'))
    throw new Error(`${field}: "${value}" must not have a fragment`);
  return value;
}

export function tenantName(value: string, field: string): string {
  if (!TENANT.test(value)) throw new Error(`${field}: "${value}" is not a tenant id or domain`);
  return value.toLowerCase();
}

/** The well-known tenants that name no directory: any client may use them for delegated flows. */
export const MULTI_TENANT_ALIASES = new Set(['common', 'organizations', 'consumers']);

export function secretsEqual(a: string, b: string): boolean {
  const h = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(h(a), h(b));
}

const CLIENT_FIELDS = [
  'clientId',
  'clientSecret',
  'tenant',
  'redirectUris',
  'certificate',
  'generateCertificate',
  'mailboxes',
] as const;
const SERVICE_ACCOUNT_FIELDS = [
  'clientEmail',
  'publicKey',
  'privateKeyId',
  'clientId',
  'mailboxes',
  'scopes',
];

/** Validate a client registration without storing it. */
export function parseClient(input: unknown, field = 'client'): Client {
  const o = object(input, field);
  checkKeys(o, field, CLIENT_FIELDS);
  const clientId = str(o, 'clientId', field);
  if (!clientId) throw new Error(`${field}.clientId: required`);
  if (/[\s:]/.test(clientId)) throw new Error(`${field}.clientId: must not contain spaces or ":"`);
  const tenant = str(o, 'tenant', field);
  const certificate = str(o, 'certificate', field);
  return {
    clientId,
    clientSecret: str(o, 'clientSecret', field),
    tenant: tenant === undefined ? undefined : tenantName(tenant, `${field}.tenant`),
    redirectUris: new Set(
      (strList(o, 'redirectUris', field) ?? []).map((u, i) => redirectUri(u, `${field}.redirectUris[${i}]`)),
    ),
    key: certificate === undefined ? undefined : publicKeyFromPem(certificate, `${field}.certificate`),
    mailboxes: new Set(
      (strList(o, 'mailboxes', field) ?? []).map((m, i) => mailboxPattern(m, `${field}.mailboxes[${i}]`)),
    ),
  };
}

export class Directory {
  readonly clients = new Map<string, Client>();
  /** keyed by lower-cased client_email */
  readonly serviceAccounts = new Map<string, ServiceAccount>();
  /** redirect URIs allowed for every client (`--redirect-uri`) */
  readonly redirectUris = new Set<string>();

  get clientsOpen(): boolean {
    return this.clients.size === 0;
  }

  get serviceAccountsOpen(): boolean {
    return this.serviceAccounts.size === 0;
  }

  addRedirectUri(value: unknown, field = 'redirectUri'): void {
    if (typeof value !== 'string') throw new Error(`${field}: must be a string`);
    this.redirectUris.add(redirectUri(value, field));
  }

  /**
   * Register (or replace) a client. `certificate` is a PEM certificate or public key;
   * `generateCertificate` must have been resolved by the caller (it is async) into `certificate`.
   */
  registerClient(input: unknown, field = 'client'): Client {
    const client = parseClient(input, field);
    this.clients.set(client.clientId, client);
    return client;
  }

  registerServiceAccount(input: unknown, field = 'serviceAccount'): ServiceAccount {
    const o = object(input, field);
    checkKeys(o, field, SERVICE_ACCOUNT_FIELDS);
    const clientEmail = str(o, 'clientEmail', field);
    if (!clientEmail || !isEmail(clientEmail))
      throw new Error(`${field}.clientEmail: must be an email address`);
    const publicKey = str(o, 'publicKey', field);
    if (!publicKey) throw new Error(`${field}.publicKey: required`);
    const sa: ServiceAccount = {
      clientEmail,
      clientId: str(o, 'clientId', field) ?? clientEmail,
      privateKeyId: str(o, 'privateKeyId', field) ?? '',
      key: publicKeyFromPem(publicKey, `${field}.publicKey`),
      mailboxes: new Set(
        (strList(o, 'mailboxes', field) ?? ['*']).map((m, i) =>
          mailboxPattern(m, `${field}.mailboxes[${i}]`),
        ),
      ),
      scopes: new Set(strList(o, 'scopes', field) ?? [GOOGLE_MAIL_SCOPE]),
    };
    this.serviceAccounts.set(clientEmail.toLowerCase(), sa);
    return sa;
  }

  serviceAccount(email: string): ServiceAccount | undefined {
    return this.serviceAccounts.get(email.toLowerCase());
  }

  /**
   * Grant or withdraw a mailbox for an app (Add-MailboxPermission / Remove-MailboxPermission) or a
   * service account (domain-wide delegation). Takes effect at the next SMTP AUTH or token request.
   */
  setPermission(input: unknown, field = 'permission'): void {
    const o = object(input, field);
    checkKeys(o, field, ['clientId', 'serviceAccount', 'mailbox', 'allow']);
    const mailbox = str(o, 'mailbox', field);
    if (!mailbox) throw new Error(`${field}.mailbox: required`);
    const pattern = mailboxPattern(mailbox, `${field}.mailbox`);
    if (o.allow !== undefined && typeof o.allow !== 'boolean')
      throw new Error(`${field}.allow: must be true or false`);
    const allow = o.allow !== false;
    const clientId = str(o, 'clientId', field);
    const saEmail = str(o, 'serviceAccount', field);
    if ((clientId === undefined) === (saEmail === undefined))
      throw new Error(`${field}: give exactly one of "clientId" and "serviceAccount"`);
    const target = clientId !== undefined ? this.clients.get(clientId) : this.serviceAccount(saEmail!);
    if (!target)
      throw new Error(
        clientId !== undefined
          ? `${field}.clientId: "${clientId}" is not a registered client`
          : `${field}.serviceAccount: "${saEmail}" is not a registered service account`,
      );
    if (allow) target.mailboxes.add(pattern);
    else target.mailboxes.delete(pattern);
  }

  /** What is registered, secrets and keys left out (GET /control/directory). */
  describe(): Record<string, unknown> {
    return {
      clientsOpen: this.clientsOpen,
      serviceAccountsOpen: this.serviceAccountsOpen,
      redirectUris: [...this.redirectUris],
      clients: [...this.clients.values()].map((c) => ({
        clientId: c.clientId,
        tenant: c.tenant ?? null,
        confidential: c.clientSecret !== undefined || c.key !== undefined,
        hasSecret: c.clientSecret !== undefined,
        certificate: c.key ? { x5t: c.key.x5t ?? null } : null,
        redirectUris: [...c.redirectUris],
        mailboxes: [...c.mailboxes],
      })),
      serviceAccounts: [...this.serviceAccounts.values()].map((s) => ({
        clientEmail: s.clientEmail,
        clientId: s.clientId,
        privateKeyId: s.privateKeyId,
        mailboxes: [...s.mailboxes],
        scopes: [...s.scopes],
      })),
    };
  }
}

/** A client that holds a credential must authenticate at the token endpoint (RFC 6749 section 3.2.1). */
export function isConfidential(c: Client): boolean {
  return c.clientSecret !== undefined || c.key !== undefined;
}
