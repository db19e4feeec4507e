// scrypt (RFC 7914) in JavaScript, for client password checks. Why not node:crypto's: OpenSSL
// mallocs its 128·r·N-byte block (16 MiB for our hashes) on a libuv pool thread, and glibc, once
// such a block is freed, raises its mmap threshold to 16 MiB, so every later block is carved from
// that thread's malloc arena and kept: +64 MB of RSS after a few logins, unless GLIBC_TUNABLES
// fixes the threshold (docs/performance.md). Here the block is one allocation larger than glibc's
// ceiling for that threshold (32 MiB on 64-bit), which glibc always maps with mmap and which
// never moves the threshold, and which is given back soon after the last check. It runs on the
// main thread in slices of about a millisecond, so the event loop keeps serving connections while
// a password is checked.
import { pbkdf2Sync } from 'node:crypto';
import os from 'node:os';

export interface ScryptCost {
  N: number;
  r: number;
  p: number;
}

/** glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit (4 MiB x sizeof(long)); a larger block is always mmapped. */
const GLIBC_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024;
/** A block is kept this long after a check, for the next one. */
const KEEP_BLOCK_MS = 1000;
/** Longest stretch of work between two event-loop turns. */
const SLICE_MS = 1;

const LITTLE_ENDIAN = os.endianness() === 'LE';

/** B ^= X-block of `src` at `si`; B = Salsa20/8(B); out[oi..] = B. All 16-word blocks. */
function xorSalsa8(B: Uint32Array, src: Uint32Array, si: number, out: Uint32Array, oi: number): void {
  const j0 = B[0]! ^ src[si]!,
    j1 = B[1]! ^ src[si + 1]!,
    j2 = B[2]! ^ src[si + 2]!,
    j3 = B[3]! ^ src[si + 3]!,
    j4 = B[4]! ^ src[si + 4]!,
    j5 = B[5]! ^ src[si + 5]!,
    j6 = B[6]! ^ src[si + 6]!,
    j7 = B[7]! ^ src[si + 7]!,
    j8 = B[8]! ^ src[si + 8]!,
    j9 = B[9]! ^ src[si + 9]!,
    j10 = B[10]! ^ src[si + 10]!,
    j11 = B[11]! ^ src[si + 11]!,
    j12 = B[12]! ^ src[si + 12]!,
    j13 = B[13]! ^ src[si + 13]!,
    j14 = B[14]! ^ src[si + 14]!,
    j15 = B[15]! ^ src[si + 15]!;
  let x0 = j0,
    x1 = j1,
    x2 = j2,
    x3 = j3,
    x4 = j4,
    x5 = j5,
    x6 = j6,
    x7 = j7,
    x8 = j8,
    x9 = j9,
    x10 = j10,
    x11 = j11,
    x12 = j12,
    x13 = j13,
    x14 = j14,
    x15 = j15,
    u: number;
  for (let i = 0; i < 8; i += 2) {
    // columns
    u = (x0 + x12) | 0;
    x4 ^= (u << 7) | (u >>> 25);
    u = (x4 + x0) | 0;
    x8 ^= (u << 9) | (u >>> 23);
    u = (x8 + x4) | 0;
    x12 ^= (u << 13) | (u >>> 19);
    u = (x12 + x8) | 0;
    x0 ^= (u << 18) | (u >>> 14);
    u = (x5 + x1) | 0;
    x9 ^= (u << 7) | (u >>> 25);
    u = (x9 + x5) | 0;
    x13 ^= (u << 9) | (u >>> 23);
    u = (x13 + x9) | 0;
    x1 ^= (u << 13) | (u >>> 19);
    u = (x1 + x13) | 0;
    x5 ^= (u << 18) | (u >>> 14);
    u = (x10 + x6) | 0;
    x14 ^= (u << 7) | (u >>> 25);
    u = (x14 + x10) | 0;
    x2 ^= (u << 9) | (u >>> 23);
    u = (x2 + x14) | 0;
    x6 ^= (u << 13) | (u >>> 19);
    u = (x6 + x2) | 0;
    x10 ^= (u << 18) | (u >>> 14);
    u = (x15 + x11) | 0;
    x3 ^= (u << 7) | (u >>> 25);
    u = (x3 + x15) | 0;
    x7 ^= (u << 9) | (u >>> 23);
    u = (x7 + x3) | 0;
    x11 ^= (u << 13) | (u >>> 19);
    u = (x11 + x7) | 0;
    x15 ^= (u << 18) | (u >>> 14);
    // rows
    u = (x0 + x3) | 0;
    x1 ^= (u << 7) | (u >>> 25);
    u = (x1 + x0) | 0;
    x2 ^= (u << 9) | (u >>> 23);
    u = (x2 + x1) | 0;
    x3 ^= (u << 13) | (u >>> 19);
    u = (x3 + x2) | 0;
    x0 ^= (u << 18) | (u >>> 14);
    u = (x5 + x4) | 0;
    x6 ^= (u << 7) | (u >>> 25);
    u = (x6 + x5) | 0;
    x7 ^= (u << 9) | (u >>> 23);
    u = (x7 + x6) | 0;
    x4 ^= (u << 13) | (u >>> 19);
    u = (x4 + x7) | 0;
    x5 ^= (u << 18) | (u >>> 14);
    u = (x10 + x9) | 0;
    x11 ^= (u << 7) | (u >>> 25);
    u = (x11 + x10) | 0;
    x8 ^= (u << 9) | (u >>> 23);
    u = (x8 + x11) | 0;
    x9 ^= (u << 13) | (u >>> 19);
    u = (x9 + x8) | 0;
    x10 ^= (u << 18) | (u >>> 14);
    u = (x15 + x14) | 0;
    x12 ^= (u << 7) | (u >>> 25);
    u = (x12 + x15) | 0;
    x13 ^= (u << 9) | (u >>> 23);
    u = (x13 + x12) | 0;
    x14 ^= (u << 13) | (u >>> 19);
    u = (x14 + x13) | 0;
    x15 ^= (u << 18) | (u >>> 14);
  }
  out[oi] = B[0] = x0 + j0;
  out[oi + 1] = B[1] = x1 + j1;
  out[oi + 2] = B[2] = x2 + j2;
  out[oi + 3] = B[3] = x3 + j3;
  out[oi + 4] = B[4] = x4 + j4;
  out[oi + 5] = B[5] = x5 + j5;
  out[oi + 6] = B[6] = x6 + j6;
  out[oi + 7] = B[7] = x7 + j7;
  out[oi + 8] = B[8] = x8 + j8;
  out[oi + 9] = B[9] = x9 + j9;
  out[oi + 10] = B[10] = x10 + j10;
  out[oi + 11] = B[11] = x11 + j11;
  out[oi + 12] = B[12] = x12 + j12;
  out[oi + 13] = B[13] = x13 + j13;
  out[oi + 14] = B[14] = x14 + j14;
  out[oi + 15] = B[15] = x15 + j15;
}

/** BlockMix_salsa20/8 of the 32r words at V[i..] into V[o..] (even sub-blocks first, RFC 7914 4). */
function blockMix(V: Uint32Array, i: number, o: number, r: number, X: Uint32Array): void {
  const last = i + (2 * r - 1) * 16;
  for (let k = 0; k < 16; k++) X[k] = V[last + k]!;
  for (let b = 0; b < r; b++) {
    xorSalsa8(X, V, i + 32 * b, V, o + 16 * b);
    xorSalsa8(X, V, i + 32 * b + 16, V, o + 16 * (r + b));
  }
}

function swapWords(w: Uint32Array): void {
  for (let k = 0; k < w.length; k++) {
    const v = w[k]!;
    w[k] = ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24);
  }
}

/**
 * The block of the last check, kept for the next one while checks follow each other (an AUTH
 * storm) and given back KEEP_BLOCK_MS after the last: handed to a fresh ArrayBuffer, which dies in
 * the next young-generation GC, so glibc unmaps it then instead of after some later full GC.
 */
let kept: ArrayBuffer | null = null;
let release: NodeJS.Timeout | null = null;

function takeBlock(bytes: number): ArrayBuffer {
  const size = Math.max(bytes, GLIBC_MMAP_THRESHOLD_MAX + 64 * 1024);
  const b = kept;
  kept = null;
  if (b && b.byteLength === size) return b;
  if (b) giveBack(b);
  return new ArrayBuffer(size);
}

function keepBlock(b: ArrayBuffer): void {
  if (kept) giveBack(kept); // two checks ran at once
  kept = b;
  if (release) clearTimeout(release);
  release = setTimeout(() => {
    release = null;
    if (kept) giveBack(kept);
    kept = null;
  }, KEEP_BLOCK_MS);
  release.unref();
}

function giveBack(b: ArrayBuffer): void {
  structuredClone(b, { transfer: [b] });
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Throws on parameters RFC 7914 does not allow. */
export function checkScryptCost({ N, r, p }: ScryptCost): void {
  if (!Number.isInteger(N) || N < 2 || (N & (N - 1)) !== 0 || N > 2 ** 24)
    throw new RangeError(`scrypt N must be a power of 2 from 2 to 2^24, got ${N}`);
  if (!Number.isInteger(r) || r < 1 || r > 64) throw new RangeError(`scrypt r must be 1..64, got ${r}`);
  if (!Number.isInteger(p) || p < 1 || p > 64) throw new RangeError(`scrypt p must be 1..64, got ${p}`);
}

/** scrypt(password, salt, N, r, p, keyLen) of RFC 7914, yielding to the event loop about every SLICE_MS. */
export async function scrypt(
  password: Buffer,
  salt: Buffer,
  keyLen: number,
  cost: ScryptCost,
): Promise<Buffer> {
  checkScryptCost(cost);
  // small integers from here on: a cost computed as 2 ** ln arrives as a heap number, and indices
  // derived from it made the optimized loops bail out ("not a Smi") and run unoptimized, 5x slower
  const N = cost.N | 0;
  const r = cost.r | 0;
  const p = cost.p | 0;
  const R = 32 * r; // words per block
  const B = pbkdf2Sync(password, salt, 1, p * 128 * r, 'sha256');
  // V (N blocks), then two work blocks
  const scratch = takeBlock(4 * R * (N + 2));
  try {
    const V = new Uint32Array(scratch, 0, R * (N + 2));
    const X = new Uint32Array(16);
    const work = [R * N, R * (N + 1)];
    let sliceEnd = performance.now() + SLICE_MS;
    for (let b = 0; b < p; b++) {
      const Bi = new Uint32Array(B.buffer.slice(B.byteOffset + 4 * R * b, B.byteOffset + 4 * R * (b + 1)));
      if (!LITTLE_ENDIAN) swapWords(Bi);
      V.set(Bi, 0);
      // ROMix: V[i + 1] = BlockMix(V[i]), the last one into the first work block
      for (let i = 0; i < N - 1; i++) {
        blockMix(V, i * R, (i + 1) * R, r, X);
        if ((i & 31) === 31 && performance.now() >= sliceEnd) {
          await nextTurn();
          sliceEnd = performance.now() + SLICE_MS;
        }
      }
      blockMix(V, (N - 1) * R, work[0]!, r, X);
      let cur = work[0]!;
      let next = work[1]!;
      for (let i = 0; i < N; i++) {
        const j = (V[cur + R - 16]! & (N - 1)) * R;
        for (let k = 0; k < R; k++) V[cur + k]! ^= V[j + k]!;
        blockMix(V, cur, next, r, X);
        const t = cur;
        cur = next;
        next = t;
        if ((i & 31) === 31 && performance.now() >= sliceEnd) {
          await nextTurn();
          sliceEnd = performance.now() + SLICE_MS;
        }
      }
      const out = V.slice(cur, cur + R);
      if (!LITTLE_ENDIAN) swapWords(out);
      Buffer.from(out.buffer).copy(B, 4 * R * b);
    }
  } finally {
    keepBlock(scratch);
  }
  return pbkdf2Sync(password, B, 1, keyLen, 'sha256');
}
