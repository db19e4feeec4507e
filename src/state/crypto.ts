// Secrets at rest: AES-256-GCM with a random 12-byte IV per value. The AAD binds each ciphertext to
// its row and column, so a value copied into another account's row does not decrypt.
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, scryptSync } from 'node:crypto';

const VERSION = 1;
const IV_LEN = 12;
const TAG_LEN = 16;
export const KEY_LEN = 32;
export const SALT_LEN = 16;

/** Thrown when a sealed value is malformed, tampered with, or was sealed under another key. */
export class DecryptError extends Error {
  readonly code = 'DECRYPT_FAILED';
  constructor(message = 'cannot decrypt value (wrong key or corrupted data)') {
    super(message);
    this.name = 'DecryptError';
  }
}

/**
 * Derives the 256-bit data key from the operator's secret. Runs once at open (about 0.1 s,
 * synchronous on purpose: start-up only), expensive so a stolen database plus a guessable secret
 * resists brute force.
 */
export function deriveKey(secret: string, salt: Buffer): Buffer {
  return scryptSync(secret, salt, KEY_LEN, { N: 1 << 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 });
}

/**
 * A key for another purpose (e.g. signing onboarding links), derived from the data key with HKDF-SHA256
 * and a label of its own: the data key itself is only ever used to seal, and keys for different
 * labels are independent.
 */
export function subkey(key: Buffer, label: string): Buffer {
  return Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), `xoauth2-proxy ${label}`, KEY_LEN));
}

/** Layout: version (1) | iv (12) | tag (16) | ciphertext. */
export function seal(key: Buffer, plaintext: string, aad: string): Buffer {
  const iv = randomBytes(IV_LEN);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_LEN });
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), ct]);
}

export function open(key: Buffer, sealed: Uint8Array, aad: string): string {
  const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  if (buf.length < 1 + IV_LEN + TAG_LEN || buf[0] !== VERSION)
    throw new DecryptError('malformed sealed value');
  const iv = buf.subarray(1, 1 + IV_LEN);
  const tag = buf.subarray(1 + IV_LEN, 1 + IV_LEN + TAG_LEN);
  const ct = buf.subarray(1 + IV_LEN + TAG_LEN);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_LEN });
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(ct), decipher.final()]).toString('utf8');
  } catch {
    throw new DecryptError();
  }
}

/** SHA-256 hex; identifies a secret (e.g. the configured refresh token) without storing it. */
export function fingerprint(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}
