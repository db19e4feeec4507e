import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DecryptError, deriveKey, fingerprint, open, seal } from '../../src/state/crypto.js';

const key = randomBytes(32);

describe('AES-256-GCM seal/open', () => {
  it('round-trips and uses a fresh IV per value', () => {
    const a = seal(key, 'secret-token', 'a@x\0access_token');
    const b = seal(key, 'secret-token', 'a@x\0access_token');
    expect(a.equals(b)).toBe(false);
    expect(a.includes(Buffer.from('secret-token'))).toBe(false);
    expect(open(key, a, 'a@x\0access_token')).toBe('secret-token');
  });

  it('rejects any tampered byte (version, IV, tag, ciphertext)', () => {
    const sealed = seal(key, 'secret-token', 'aad');
    for (const i of [0, 1, 13, 20, sealed.length - 1]) {
      const t = Buffer.from(sealed);
      t[i]! ^= 0x01;
      expect(() => open(key, t, 'aad'), `byte ${i}`).toThrow(DecryptError);
    }
    expect(() => open(key, sealed.subarray(0, 20), 'aad')).toThrow(DecryptError);
  });

  it('rejects another key and another AAD (a value moved to another row)', () => {
    const sealed = seal(key, 'secret-token', 'a@x\0access_token');
    expect(() => open(randomBytes(32), sealed, 'a@x\0access_token')).toThrow(DecryptError);
    expect(() => open(key, sealed, 'b@x\0access_token')).toThrow(DecryptError);
  });

  it('derives the same key from the same secret and salt only', () => {
    const salt = randomBytes(16);
    expect(deriveKey('s'.repeat(32), salt).equals(deriveKey('s'.repeat(32), salt))).toBe(true);
    expect(deriveKey('s'.repeat(32), salt).equals(deriveKey('t'.repeat(32), salt))).toBe(false);
    expect(deriveKey('s'.repeat(32), salt).equals(deriveKey('s'.repeat(32), randomBytes(16)))).toBe(false);
    expect(fingerprint('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});
