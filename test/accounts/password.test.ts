import { describe, expect, it } from 'vitest';
import { DUMMY_PASSWORD_HASH, hashPassword, verifyPassword } from '../../src/accounts/password.js';
import { parsePasswordHash } from '../../src/config/password-hash.js';

describe('password hashing', () => {
  it('produces a PHC scrypt string that verifies the right password only', async () => {
    const h = await hashPassword('correct horse');
    expect(h).toMatch(/^\$scrypt\$ln=14,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    expect(await verifyPassword('correct horse', h)).toBe(true);
    expect(await verifyPassword('correct horsE', h)).toBe(false);
    expect(await verifyPassword('', h)).toBe(false);
  });

  it('salts: the same password hashes differently each time', async () => {
    expect(await hashPassword('x')).not.toBe(await hashPassword('x'));
  });

  it('verifies a hash made earlier (the examples use this one)', async () => {
    const h = '$scrypt$ln=14,r=8,p=1$cbbVr58WmVDL+kfrDMPrPA$mM+k73xXx+FRhr6La5pR0Fcoz1hRA5KbRpqM1Ud+NFo';
    expect(await verifyPassword('demo-password-1', h)).toBe(true);
    expect(await verifyPassword('demo-password-2', h)).toBe(false);
  });

  it.each([
    [''],
    ['plain'],
    ['$scrypt$'],
    ['$scrypt$ln=14,r=8,p=1$c2FsdHNhbHQ'],
    ['$scrypt$ln=14,r=8,p=1$!!!$abc'],
    ['$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA'],
    // absurd cost parameters are refused rather than allocating gigabytes
    ['$scrypt$ln=30,r=8,p=1$cbbVr58WmVDL+kfrDMPrPA$mM+k73xXx+FRhr6La5pR0Fcoz1hRA5KbRpqM1Ud+NFo'],
  ])('returns false (not throwing) for malformed hash %j', async (phc) => {
    expect(parsePasswordHash(phc)).toBeUndefined();
    await expect(verifyPassword('x', phc)).resolves.toBe(false);
  });

  it('DUMMY_PASSWORD_HASH is well-formed, uses the default cost and matches nothing obvious', async () => {
    const p = parsePasswordHash(DUMMY_PASSWORD_HASH);
    expect(p).toMatchObject({ ln: 14, r: 8, p: 1 });
    expect(p!.hash.length).toBe(32);
    expect(await verifyPassword('', DUMMY_PASSWORD_HASH)).toBe(false);
    expect(await verifyPassword('password', DUMMY_PASSWORD_HASH)).toBe(false);
  });
});
