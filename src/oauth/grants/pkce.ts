// Proof Key for Code Exchange (RFC 7636): the verifier stays with us, only its S256 challenge goes
// into the authorization URL, so an intercepted code is useless without the verifier.
import crypto from 'node:crypto';

export interface Pkce {
  /** sent with the code exchange (`code_verifier`) */
  verifier: string;
  /** sent in the authorization URL (`code_challenge`) */
  challenge: string;
  method: 'S256';
}

/** RFC 7636 section 4.1: 43 to 128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~". */
const VERIFIER = /^[A-Za-z0-9\-._~]{43,128}$/;

/**
 * A verifier from crypto-random bytes. base64url's alphabet is a subset of the unreserved set; the
 * default length (43) carries the 256 bits RFC 7636 section 7.1 asks for.
 */
export function newCodeVerifier(length = 43): string {
  if (!Number.isInteger(length) || length < 43 || length > 128) {
    throw new RangeError(`code verifier length must be 43..128, got ${length}`);
  }
  return crypto
    .randomBytes(Math.ceil((length * 3) / 4))
    .toString('base64url')
    .slice(0, length);
}

/** `BASE64URL(SHA256(ASCII(verifier)))` without padding (RFC 7636 section 4.2). */
export function codeChallengeS256(verifier: string): string {
  if (!VERIFIER.test(verifier)) {
    throw new RangeError('code verifier must be 43..128 characters of A-Z a-z 0-9 - . _ ~');
  }
  return crypto.createHash('sha256').update(verifier, 'ascii').digest('base64url');
}

export function newPkce(length?: number): Pkce {
  const verifier = newCodeVerifier(length);
  return { verifier, challenge: codeChallengeS256(verifier), method: 'S256' };
}
