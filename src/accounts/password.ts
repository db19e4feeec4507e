// Client passwords are stored as PHC-style scrypt strings:
//   $scrypt$ln=14,r=8,p=1$<salt, base64 without padding>$<key, base64 without padding>
// scrypt runs on the libuv thread pool (async) so verification never blocks the event loop.

import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const LN = 14; // N = 2^14: ~16 MiB and tens of ms per hash; the OWASP baseline for scrypt
const R = 8;
const P = 1;
const SALT_BYTES = 16;
const KEY_BYTES = 32;

export interface ScryptParams {
  ln: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

const PHC = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

/** Parse and bound-check a hash; undefined when malformed (bounds stop a hostile value costing GiBs). */
export function parsePasswordHash(phc: string): ScryptParams | undefined {
  const m = PHC.exec(phc);
  if (!m) return undefined;
  const [ln, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (ln < 1 || ln > 20 || r < 1 || r > 32 || p < 1 || p > 16) return undefined;
  const salt = Buffer.from(m[4]!, 'base64');
  const hash = Buffer.from(m[5]!, 'base64');
  if (salt.length < 8 || hash.length < 16 || hash.length > 64) return undefined;
  return { ln, r, p, salt, hash };
}

function b64(buf: Buffer): string {
  return buf.toString('base64').replace(/=+$/, '');
}

/**
 * At most this many KDFs run at once: each takes 16 MiB and a libuv pool thread, so an AUTH storm
 * (an MTA opening hundreds of connections, or password spraying) can neither grow memory without
 * bound nor starve the pool the rest of the process uses. Extra verifications queue (FIFO).
 */
const MAX_CONCURRENT_KDF = 2;
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
    const N = 2 ** ln;
    // scrypt needs 128*N*r*p bytes; Node's default maxmem (32 MiB) is too tight for larger params.
    const opts: ScryptOptions = { N, r, p, maxmem: 128 * N * r * p + 16 * 1024 * 1024 };
    return await new Promise<Buffer>((resolve, reject) => {
      scrypt(pw.normalize('NFC'), salt, keyLen, opts, (err, key) => (err ? reject(err) : resolve(key)));
    });
  } finally {
    running--;
    queue.shift()?.();
  }
}

export async function hashPassword(pw: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await derive(pw, salt, KEY_BYTES, LN, R, P);
  return `$scrypt$ln=${LN},r=${R},p=${P}$${b64(salt)}$${b64(key)}`;
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
export const DUMMY_PASSWORD_HASH = `$scrypt$ln=${LN},r=${R},p=${P}$${b64(randomBytes(SALT_BYTES))}$${b64(randomBytes(KEY_BYTES))}`;
