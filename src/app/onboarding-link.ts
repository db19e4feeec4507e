// Signed onboarding links (docs/web-onboarding.md): what an administrator hands to a mailbox
// owner. The token in the link is
//
//   v1.<payload>.<mac>    payload = base64url(JSON [id, email | "any", provider, expiry in epoch s])
//                         mac     = base64url(HMAC-SHA256(key, "v1." + payload))
//
// The key is an HKDF subkey of the state store's data key (state/crypto.ts subkey), so a link cannot
// be made without the secret. The MAC is checked, in constant time, before the payload is parsed: a
// tampered link is refused without reading what it claims. Single use and revocation are the state
// store's (state/onboarding-links.ts); expiry is in the signed payload.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const VERSION = 'v1';
const ANY = 'any';
/** far above any real link (about 300 characters), so a pasted novel is refused before any work */
const MAX_TOKEN_LENGTH = 2048;
const B64URL = /^[A-Za-z0-9_-]+$/;
const MAC_B64_LENGTH = 43; // 32 bytes

export interface LinkClaims {
  id: string;
  /** the mailbox the link is for; undefined: any mailbox (the owner types it) */
  email?: string;
  provider: string;
  /** epoch ms, a whole second (the payload carries seconds) */
  expiresAt: number;
}

export type LinkVerdict =
  | { ok: true; claims: LinkClaims }
  /** `invalid`: not a link of ours (malformed, altered, or signed with another key) */
  | { ok: false; reason: 'invalid' }
  /** signed by us, past its expiry */
  | { ok: false; reason: 'expired'; claims: LinkClaims };

/** 128 bits of randomness: the id the state store records the link's use under. */
export function newLinkId(): string {
  return randomBytes(16).toString('base64url');
}

function mac(key: Buffer, signed: string): Buffer {
  return createHmac('sha256', key).update(signed, 'utf8').digest();
}

export function signLink(key: Buffer, claims: LinkClaims): string {
  const payload = Buffer.from(
    JSON.stringify([claims.id, claims.email ?? ANY, claims.provider, Math.floor(claims.expiresAt / 1000)]),
    'utf8',
  ).toString('base64url');
  const signed = `${VERSION}.${payload}`;
  return `${signed}.${mac(key, signed).toString('base64url')}`;
}

/** Checks the MAC (constant time), then the payload's shape, then the expiry against `now` (epoch ms). */
export function verifyLink(key: Buffer, token: string, now: number): LinkVerdict {
  const invalid = { ok: false, reason: 'invalid' } as const;
  if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) return invalid;
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== VERSION) return invalid;
  const [, payload, given] = parts as [string, string, string];
  if (!B64URL.test(payload) || given.length !== MAC_B64_LENGTH || !B64URL.test(given)) return invalid;
  const expected = mac(key, `${VERSION}.${payload}`);
  const received = Buffer.from(given, 'base64url');
  if (received.length !== expected.length || !timingSafeEqual(received, expected)) return invalid;
  // the last character has 2 bits the decoder ignores: only the canonical spelling is the link
  if (received.toString('base64url') !== given) return invalid;

  // Authentic from here on; the shape is still checked so a bug elsewhere cannot make a bad link.
  let fields: unknown;
  try {
    fields = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return invalid;
  }
  if (!Array.isArray(fields) || fields.length !== 4) return invalid;
  const [id, email, provider, exp] = fields as unknown[];
  if (typeof id !== 'string' || !id || typeof email !== 'string' || !email) return invalid;
  if (typeof provider !== 'string' || !provider || !Number.isSafeInteger(exp)) return invalid;
  const claims: LinkClaims = {
    id,
    ...(email !== ANY ? { email } : {}),
    provider,
    expiresAt: (exp as number) * 1000,
  };
  if (now >= claims.expiresAt) return { ok: false, reason: 'expired', claims };
  return { ok: true, claims };
}
