import { randomBytes, scryptSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { scrypt } from '../../src/accounts/scrypt.js';

const hex = (s: string) => s.replace(/\s+/g, '');

describe('scrypt', () => {
  // RFC 7914 section 12
  it.each([
    [
      '',
      '',
      { N: 16, r: 1, p: 1 },
      `77 d6 57 62 38 65 7b 20 3b 19 ca 42 c1 8a 04 97 f1 6b 48 44 e3 07 4a e8 df df fa 3f ed e2 14 42
       fc d0 06 9d ed 09 48 f8 32 6a 75 3a 0f c8 1f 17 e8 d3 e0 fb 2e 0d 36 28 cf 35 e2 0c 38 d1 89 06`,
    ],
    [
      'password',
      'NaCl',
      { N: 1024, r: 8, p: 16 },
      `fd ba be 1c 9d 34 72 00 78 56 e7 19 0d 01 e9 fe 7c 6a d7 cb c8 23 78 30 e7 73 76 63 4b 37 31 62
       2e af 30 d9 2e 22 a3 88 6f f1 09 27 9d 98 30 da c7 27 af b9 4a 83 ee 6d 83 60 cb df a2 cc 06 40`,
    ],
    [
      'pleaseletmein',
      'SodiumChloride',
      { N: 16384, r: 8, p: 1 },
      `70 23 bd cb 3a fd 73 48 46 1c 06 cd 81 fd 38 eb fd a8 fb ba 90 4f 8e 3e a9 b5 43 f6 54 5d a1 f2
       d5 43 29 55 61 3f 0f cf 62 d4 97 05 24 2a 9a f9 e6 1e 85 dc 0d 65 1e 40 df cf 01 7b 45 57 58 87`,
    ],
  ])('matches the RFC 7914 test vector for %j / %j', async (pw, salt, cost, want) => {
    const key = await scrypt(Buffer.from(pw), Buffer.from(salt), 64, cost);
    expect(key.toString('hex')).toBe(hex(want));
  });

  it('equals node:crypto scrypt for random passwords, salts, lengths and costs', async () => {
    for (let i = 0; i < 12; i++) {
      const pw = randomBytes(i * 3);
      const salt = randomBytes(8 + i);
      const cost = { N: 2 ** (1 + (i % 9)), r: 1 + (i % 4), p: 1 + (i % 3) };
      const len = 16 + i * 4;
      const want = scryptSync(pw, salt, len, { ...cost, maxmem: 64 * 1024 * 1024 });
      expect((await scrypt(pw, salt, len, cost)).equals(want), JSON.stringify(cost)).toBe(true);
    }
  });

  it('refuses parameters RFC 7914 does not allow', async () => {
    const z = Buffer.alloc(0);
    await expect(scrypt(z, z, 32, { N: 1000, r: 8, p: 1 })).rejects.toThrow(/N must be a power of 2/);
    await expect(scrypt(z, z, 32, { N: 1024, r: 0, p: 1 })).rejects.toThrow(/r must be/);
    await expect(scrypt(z, z, 32, { N: 1024, r: 8, p: 0 })).rejects.toThrow(/p must be/);
  });

  it('lets the event loop run while it works (the cost of a client password check)', async () => {
    let last = performance.now();
    let longest = 0;
    let turns = 0;
    const tick = setInterval(() => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
      turns++;
    }, 1);
    const started = performance.now();
    await scrypt(Buffer.from('pw'), randomBytes(16), 32, { N: 2 ** 14, r: 8, p: 1 });
    const took = performance.now() - started;
    clearInterval(tick);
    // the check takes tens of ms or more; the timer kept firing throughout (generous bound for a loaded CI box)
    expect(turns).toBeGreaterThan(3);
    expect(longest).toBeLessThan(Math.max(50, took / 3));
  });
});
