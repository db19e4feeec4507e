// JSON Web Tokens as the token endpoint receives them (RFC 7519 compact form): parsing and RS256
// signature checks (RFC 7518 section 3.3) with node:crypto, nothing else.
import { verify, type KeyObject } from 'node:crypto';

export interface Jwt {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  /** `base64url(header).base64url(payload)`, the bytes the signature covers */
  signingInput: string;
  signature: Buffer;
}

const B64URL = /^[A-Za-z0-9_-]*$/;

function jsonObject(part: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return value && typeof value === 'object' && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** The three parts of a compact JWS, or undefined when it is not one. */
export function parseJwt(token: string): Jwt | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((p) => B64URL.test(p))) return undefined;
  const header = jsonObject(parts[0]!);
  const payload = jsonObject(parts[1]!);
  if (!header || !payload) return undefined;
  return {
    header,
    payload,
    signingInput: `${parts[0]}.${parts[1]}`,
    signature: Buffer.from(parts[2]!, 'base64url'),
  };
}

/** The payload of anything shaped like a JWT, signature and header unread. */
export function decodeJwtPayload(token: string): Record<string, unknown> | undefined {
  const parts = token.split('.');
  return parts.length === 3 ? jsonObject(parts[1]!) : undefined;
}

/** true when the header says RS256 and the signature verifies with this RSA public key. */
export function verifyRs256(jwt: Jwt, key: KeyObject): boolean {
  if (jwt.header.alg !== 'RS256' || key.asymmetricKeyType !== 'rsa') return false;
  try {
    return verify('sha256', Buffer.from(jwt.signingInput), key, jwt.signature);
  } catch {
    return false;
  }
}

/** A numeric date claim (seconds since the epoch), or undefined when absent or not a number. */
export function numericDate(payload: Record<string, unknown>, claim: string): number | undefined {
  const v = payload[claim];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}
