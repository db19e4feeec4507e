// The onboarding links table: single use (one claim wins), a failed flow gives the link back,
// revocation, persistence, and a MAC key that follows the secret but is not the data key.
import { describe, expect, it } from 'vitest';
import { subkey } from '../../src/state/crypto.js';
import { storeFixture } from './store-fixture.js';

const { tmpDir, open, closeAll } = storeFixture('xo2-links-');

const T0 = Date.UTC(2030, 0, 1);
const link = (id: string, over: Record<string, unknown> = {}) => ({
  id,
  provider: 'google',
  createdAt: T0,
  expiresAt: T0 + 7 * 86_400_000,
  ...over,
});

describe('onboarding links in the state store', () => {
  it('a link is claimed once; a released claim can be claimed again; a finished one cannot', () => {
    const { onboardingLinks: links } = open(tmpDir());
    links.add(link('l1', { email: 'alice@example.com' }));
    expect(links.get('l1')).toEqual(link('l1', { email: 'alice@example.com' }));
    expect(links.claim('l1', T0 + 1)).toBe(true);
    expect(links.claim('l1', T0 + 2)).toBe(false);
    links.release('l1');
    expect(links.get('l1')?.usedAt).toBeUndefined();
    expect(links.claim('l1', T0 + 3)).toBe(true);
    links.finish('l1', 'alice@example.com');
    links.release('l1'); // a finished link stays used
    expect(links.get('l1')).toMatchObject({ usedAt: T0 + 3, usedBy: 'alice@example.com' });
    expect(links.claim('l1', T0 + 4)).toBe(false);
    expect(links.claim('unknown', T0)).toBe(false);
  });

  it('a revoked link cannot be claimed, and revoking twice says so', () => {
    const { onboardingLinks: links } = open(tmpDir());
    links.add(link('l2'));
    expect(links.revoke('l2', T0 + 5)).toBe(true);
    expect(links.revoke('l2', T0 + 6)).toBe(false);
    expect(links.revoke('nope', T0)).toBe(false);
    expect(links.claim('l2', T0 + 7)).toBe(false);
    expect(links.get('l2')).toEqual({ ...link('l2'), revokedAt: T0 + 5 });
  });

  it('survives a restart, lists newest first and prunes long-expired links', () => {
    const dir = tmpDir();
    const a = open(dir);
    a.onboardingLinks.add(link('old', { createdAt: T0 - 10, expiresAt: T0 - 1 }));
    a.onboardingLinks.add(link('new', { email: 'bob@example.com' }));
    a.onboardingLinks.claim('new', T0 + 1);
    a.close();
    const b = open(dir);
    expect(b.onboardingLinks.list().map((l) => l.id)).toEqual(['new', 'old']);
    expect(b.onboardingLinks.get('new')?.usedAt).toBe(T0 + 1);
    expect(b.onboardingLinks.prune(T0)).toBe(1);
    expect(b.onboardingLinks.list().map((l) => l.id)).toEqual(['new']);
  });

  it('the MAC key is stable across restarts, changes with the secret, and is 32 bytes', () => {
    const dir = tmpDir();
    const first = Buffer.from(open(dir).onboardingLinks.macKey);
    closeAll();
    expect(open(dir).onboardingLinks.macKey.equals(first)).toBe(true);
    closeAll();
    const other = open(dir, 'another-secret-key-of-32-characters-or-more');
    expect(other.onboardingLinks.macKey.equals(first)).toBe(false);
    expect(first).toHaveLength(32);
  });

  it('subkeys of one key differ by label and from the key', () => {
    const key = Buffer.alloc(32, 7);
    const a = subkey(key, 'onboarding-link');
    expect(a.equals(subkey(key, 'onboarding-link'))).toBe(true);
    expect(a.equals(subkey(key, 'something-else'))).toBe(false);
    expect(a.equals(key)).toBe(false);
  });
});
