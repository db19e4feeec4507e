// RS256 JSON Web Tokens (RFC 7515 / 7519) for the two assertion grants: the Google service account
// (jwt-bearer.ts) and Microsoft's certificate client authentication (client-credentials.ts).
import crypto, { type KeyObject } from 'node:crypto';
import { CredentialError } from './errors.js';

/** Compact JWS: base64url(header) "." base64url(claims) "." base64url(RSASSA-PKCS1-v1_5 SHA-256). */
export function signRs256Jwt(
  header: Record<string, unknown>,
  claims: Record<string, unknown>,
  key: KeyObject,
): string {
  const head = Buffer.from(JSON.stringify({ alg: 'RS256', typ: 'JWT', ...header })).toString('base64url');
  const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const input = `${head}.${body}`;
  const signature = crypto.sign('sha256', Buffer.from(input), key).toString('base64url');
  return `${input}.${signature}`;
}

/** Seconds since the epoch, as JWT NumericDate claims are. */
export function numericDate(ms: number): number {
  return Math.floor(ms / 1000);
}

/**
 * An unencrypted RSA private key (RS256 needs RSA; Microsoft and Google want 2048 bits or more).
 * Errors name the field and never quote the key.
 */
export function rsaPrivateKey(pem: unknown, source: string, field: string): KeyObject {
  if (typeof pem !== 'string' || pem.trim() === '') throw new CredentialError(source, field, 'missing');
  if (!pem.includes('-----BEGIN')) throw new CredentialError(source, field, 'not a PEM private key');
  const encrypted = () =>
    new CredentialError(
      source,
      field,
      'the private key is encrypted; decrypt it (openssl pkey -in key.pem -out key-plain.pem)',
    );
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(pem)) throw encrypted();
  let key: KeyObject;
  try {
    key = crypto.createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_MISSING_PASSPHRASE') throw encrypted();
    throw new CredentialError(source, field, 'not a valid PEM private key');
  }
  if (key.asymmetricKeyType !== 'rsa') {
    throw new CredentialError(source, field, `an RSA key is needed for RS256, got ${key.asymmetricKeyType}`);
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < 2048)
    throw new CredentialError(source, field, `the RSA key has ${bits} bits; 2048 or more needed`);
  return key;
}
