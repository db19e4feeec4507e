// Client passwords: scrypt hashes in the format of config/password-hash.ts, computed by ./scrypt.ts
// (in slices on the main thread, without growing malloc arenas; why there: docs/performance.md).

import { randomBytes, timingSafeEqual } from 'node:crypto';
import { formatPasswordHash, parsePasswordHash } from '../config/password-hash.js';
import { scrypt } from './scrypt.js';

const LN = 14; // N = 2^14: ~16 MiB and tens of ms per hash; the OWASP baseline for scrypt
const R = 8;
const P = 1;
const SALT_BYTES = 16;
const KEY_BYTES = 32;

/**
 * One KDF at a time: each takes a 16 MiB block, and they all share the main thread, so running two
 * at once would finish neither sooner. An AUTH storm (an MTA opening hundreds of connections, or
 * password spraying) therefore holds one block, not one per login. Extra verifications queue (FIFO).
 */
const MAX_CONCURRENT_KDF = 1;
let running = 0;
const queue: (() => void)[] = [];

async function derive(
  pw: string,
  salt: Buffer,
  keyLen: number,
  ln: number,
  r: number,
  p: number,
): Promise<Buffer> {
  if (running >= MAX_CONCURRENT_KDF) await new Promise<void>((resolve) => queue.push(resolve));
  running++;
  try {
    return await scrypt(Buffer.from(pw.normalize('NFC'), 'utf8'), salt, keyLen, { N: 1 << ln, r, p });
  } finally {
    running--;
    queue.shift()?.();
  }
}

export async function hashPassword(pw: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(pw, salt, KEY_BYTES, LN, R, P);
  return formatPasswordHash({ ln: LN, r: R, p: P, salt, hash });
}

/** true only when `pw` matches; false for a wrong password or a malformed hash (never throws). */
export async function verifyPassword(pw: string, phc: string): Promise<boolean> {
  const params = parsePasswordHash(phc);
  if (!params) return false;
  try {
    const key = await derive(pw, params.salt, params.hash.length, params.ln, params.r, params.p);
    return timingSafeEqual(key, params.hash);
  } catch {
    return false;
  }
}

/**
 * Verify unknown usernames against this so they cost the same scrypt work as known ones.
 * A random salt and random key with the default parameters: a well-formed hash of no known
 * password, built without running scrypt, so importing this module costs nothing.
 */
export const DUMMY_PASSWORD_HASH = formatPasswordHash({
  ln: LN,
  r: R,
  p: P,
  salt: randomBytes(SALT_BYTES),
  hash: randomBytes(KEY_BYTES),
});
