// Driving the simulator's OAuth endpoints over real sockets, as a client and as the user at the
// consent page would: fetch with redirects left to the caller, JWTs signed with node:crypto.
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import type { Simulator } from '../../../src/tools/sim/index.js';
import { RawSmtp, xoauth2 } from './helpers.js';

/** RFC 7636 Appendix B. */
export const RFC7636_VERIFIER = 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk';
export const RFC7636_CHALLENGE = 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM';

export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const DEVICE_CODE = 'urn:ietf:params:oauth:grant-type:device_code';
export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export const base = (sim: Simulator) => `http://${sim.http.host}:${sim.http.port}`;
export const tenantUrl = (sim: Simulator, tenant: string, what: 'authorize' | 'token' | 'devicecode') =>
  `${base(sim)}/${tenant}/oauth2/v2.0/${what}`;

export function signJwt(header: object, payload: object, key: KeyObject | string): string {
  const input = [header, payload].map((p) => Buffer.from(JSON.stringify(p)).toString('base64url')).join('.');
  return `${input}.${sign('sha256', Buffer.from(input), key).toString('base64url')}`;
}

export function rsaKeyPair(): { privateKey: KeyObject; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { privateKey, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string };
}

export function x5tOf(certPem: string): string {
  const der = Buffer.from(certPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  return createHash('sha1').update(der).digest('base64url');
}

export interface HttpAnswer {
  status: number;
  /** the Location header of a redirect */
  location?: string;
  text: string;
  json?: any;
}

async function answer(res: Response): Promise<HttpAnswer> {
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, location: res.headers.get('location') ?? undefined, text, json };
}

export async function get(url: string): Promise<HttpAnswer> {
  return answer(await fetch(url, { redirect: 'manual' }));
}

export async function postFormRaw(
  url: string,
  params: Record<string, string>,
  headers: Record<string, string> = {},
): Promise<HttpAnswer> {
  return answer(
    await fetch(url, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams(params).toString(),
    }),
  );
}

/** The hidden transaction id of a consent page. */
export function consentTx(html: string): string {
  const m = /name="tx" value="([^"]+)"/.exec(html);
  if (!m) throw new Error(`not a consent page: ${html.slice(0, 300)}`);
  return m[1]!;
}

export interface AuthorizeParams {
  clientId: string;
  redirectUri: string;
  scope?: string;
  state?: string;
  challenge?: string;
  extra?: Record<string, string>;
}

export function authorizeQuery(p: AuthorizeParams): string {
  return new URLSearchParams({
    response_type: 'code',
    client_id: p.clientId,
    redirect_uri: p.redirectUri,
    scope: p.scope ?? 'https://mail.google.com/',
    ...(p.state !== undefined ? { state: p.state } : {}),
    code_challenge: p.challenge ?? RFC7636_CHALLENGE,
    code_challenge_method: 'S256',
    ...p.extra,
  }).toString();
}

/** GET the authorize URL, answer its consent page, and return where the browser is sent. */
export async function consent(
  authorizeUrl: string,
  p: AuthorizeParams,
  login: string,
  action: 'allow' | 'deny' = 'allow',
): Promise<URL> {
  const page = await get(`${authorizeUrl}?${authorizeQuery(p)}`);
  if (page.status !== 200)
    throw new Error(`authorize: ${page.status} ${page.location ?? page.text.slice(0, 300)}`);
  const posted = await postFormRaw(new URL(authorizeUrl).href, { tx: consentTx(page.text), login, action });
  if (posted.status !== 302 || !posted.location)
    throw new Error(`consent: ${posted.status} ${posted.text.slice(0, 300)}`);
  return new URL(posted.location);
}

/** The first line of the reply to AUTH XOAUTH2 as `user` with `token`, on a fresh connection. */
export async function smtpAuth(sim: Simulator, user: string, token: string): Promise<string> {
  const c = await RawSmtp.connect(sim.smtp);
  try {
    await c.read();
    await c.cmd('EHLO client.test');
    return (await c.cmd(`AUTH XOAUTH2 ${xoauth2(user, token)}`))[0]!;
  } finally {
    c.close();
  }
}

export const accepted = (reply: string) => reply.startsWith('235 ');
