// Signed onboarding links: a link made with the key verifies; any change to it, a link made with
// another key, and a link past its expiry do not.
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { newLinkId, signLink, verifyLink, type LinkClaims } from '../../src/app/onboarding-link.js';

const KEY = Buffer.alloc(32, 1);
const OTHER_KEY = Buffer.alloc(32, 2);
const NOW = Date.UTC(2030, 0, 1);
const claims: LinkClaims = {
  id: 'AAAAAAAAAAAAAAAAAAAAAA',
  email: 'alice@example.com',
  provider: 'google',
  expiresAt: NOW + 7 * 86_400_000,
};

/** the token with the character at `i` replaced by another base64url character */
function flip(token: string, i: number): string {
  const c = token[i] === 'A' ? 'B' : 'A';
  return token.slice(0, i) + c + token.slice(i + 1);
}

describe('onboarding link signing', () => {
  it('a signed link verifies and gives back its claims', () => {
    const token = signLink(KEY, claims);
    expect(token).toMatch(/^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    expect(verifyLink(KEY, token, NOW)).toEqual({ ok: true, claims });
  });

  it('a link for any mailbox has no email', () => {
    const { email: _e, ...any } = claims;
    const v = verifyLink(KEY, signLink(KEY, any), NOW);
    expect(v).toEqual({ ok: true, claims: any });
  });

  it('ids are random, 128 bits', () => {
    const ids = new Set(Array.from({ length: 100 }, newLinkId));
    expect(ids.size).toBe(100);
    for (const id of ids) expect(Buffer.from(id, 'base64url')).toHaveLength(16);
  });

  it('every changed character of the link makes it invalid', () => {
    const token = signLink(KEY, claims);
    for (let i = 0; i < token.length; i++) {
      if (token[i] === '.') continue;
      expect(verifyLink(KEY, flip(token, i), NOW).ok, `character ${i} changed`).toBe(false);
    }
  });

  it('the MAC in another spelling of the same bytes (the unused low bits of its last character) is invalid', () => {
    const token = signLink(KEY, claims);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(token.at(-1)!);
    const sameBytes = token.slice(0, -1) + alphabet[last ^ 1];
    expect(Buffer.from(sameBytes.split('.')[2]!, 'base64url')).toEqual(
      Buffer.from(token.split('.')[2]!, 'base64url'),
    );
    expect(verifyLink(KEY, sameBytes, NOW)).toEqual({ ok: false, reason: 'invalid' });
  });

  it('a payload re-encoded with a later expiry, the old MAC kept, is invalid (not "expired", not valid)', () => {
    const expired = signLink(KEY, { ...claims, expiresAt: NOW - 1000 });
    const [, , oldMac] = expired.split('.');
    const later = Buffer.from(
      JSON.stringify([claims.id, claims.email, claims.provider, Math.floor(NOW / 1000) + 86_400]),
    ).toString('base64url');
    expect(verifyLink(KEY, `v1.${later}.${oldMac}`, NOW)).toEqual({ ok: false, reason: 'invalid' });
  });

  it('a link signed with another key, or a payload swapped between two links, is invalid', () => {
    expect(verifyLink(KEY, signLink(OTHER_KEY, claims), NOW)).toEqual({ ok: false, reason: 'invalid' });
    const a = signLink(KEY, claims).split('.');
    const b = signLink(KEY, { ...claims, email: 'mallory@example.com' }).split('.');
    expect(verifyLink(KEY, `v1.${b[1]}.${a[2]}`, NOW).ok).toBe(false);
  });

  it('a correctly signed payload of the wrong shape is invalid', () => {
    const forge = (fields: unknown) => {
      const payload = Buffer.from(JSON.stringify(fields)).toString('base64url');
      const mac = createHmac('sha256', KEY).update(`v1.${payload}`).digest('base64url');
      return `v1.${payload}.${mac}`;
    };
    expect(verifyLink(KEY, forge(['id', 'any', 'google', 1e10]), NOW).ok).toBe(true); // the forge is right
    for (const bad of [
      ['id', 'any', 'google'],
      ['', 'any', 'google', 1e10],
      ['id', '', 'google', 1e10],
      ['id', 'any', '', 1e10],
      ['id', 'any', 'google', '1e10'],
      ['id', 'any', 'google', 1.5],
      { id: 'id' },
    ])
      expect(verifyLink(KEY, forge(bad), NOW), JSON.stringify(bad)).toEqual({ ok: false, reason: 'invalid' });
  });

  it('malformed tokens are invalid', () => {
    const token = signLink(KEY, claims);
    for (const bad of [
      '',
      'v1',
      'v1..',
      token.replace(/^v1/, 'v2'),
      token + '.x',
      token.slice(0, -1),
      token + 'A',
      token.split('.').slice(0, 2).join('.') + '.' + '!'.repeat(43),
      'v1.' + 'A'.repeat(3000) + '.' + 'A'.repeat(43),
    ])
      expect(verifyLink(KEY, bad, NOW), bad.slice(0, 40)).toEqual({ ok: false, reason: 'invalid' });
  });

  it('expires at its expiry, to the second, and says so with its claims', () => {
    const token = signLink(KEY, claims);
    expect(verifyLink(KEY, token, claims.expiresAt - 1).ok).toBe(true);
    expect(verifyLink(KEY, token, claims.expiresAt)).toEqual({ ok: false, reason: 'expired', claims });
    // sub-second expiries are cut to the second (the payload carries seconds)
    const cut = verifyLink(KEY, signLink(KEY, { ...claims, expiresAt: NOW + 1999 }), NOW);
    expect(cut.ok && cut.claims.expiresAt).toBe(NOW + 1000);
  });
});
