// PKCE (RFC 7636): the Appendix B vector, and verifiers that are valid by section 4.1.
import { describe, expect, it } from 'vitest';
import { codeChallengeS256, newCodeVerifier, newPkce } from '../../../src/oauth/grants/pkce.js';

describe('PKCE', () => {
  it('matches RFC 7636 Appendix B', () => {
    expect(codeChallengeS256('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk')).toBe(
      'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
    );
  });

  it('makes random verifiers of 43..128 unreserved characters, challenge without padding', () => {
    for (const len of [43, 64, 100, 128]) {
      const v = newCodeVerifier(len);
      expect(v).toMatch(new RegExp(`^[A-Za-z0-9\\-._~]{${len}}$`));
    }
    const a = newPkce();
    const b = newPkce();
    expect(a.verifier).toHaveLength(43);
    expect(a.verifier).not.toBe(b.verifier);
    expect(a.method).toBe('S256');
    expect(a.challenge).toBe(codeChallengeS256(a.verifier));
    expect(a.challenge).toMatch(/^[A-Za-z0-9_-]{43}$/); // 32 bytes, base64url, no "="
  });

  it('refuses lengths and verifiers outside RFC 7636 section 4.1', () => {
    expect(() => newCodeVerifier(42)).toThrow(/43\.\.128/);
    expect(() => newCodeVerifier(129)).toThrow(/43\.\.128/);
    expect(() => codeChallengeS256('short')).toThrow(/43\.\.128/);
    expect(() => codeChallengeS256('a'.repeat(42) + '+')).toThrow();
  });
});
