import { describe, expect, it } from 'vitest';
import { BUILTIN_PROVIDERS, tokenUrl } from '../../src/config/providers.js';

describe('tokenUrl', () => {
  const microsoft = BUILTIN_PROVIDERS.microsoft;

  it("fills in the account's tenant, else the provider's", () => {
    expect(tokenUrl(microsoft, 'contoso.onmicrosoft.com')).toBe(
      'https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token',
    );
    expect(tokenUrl(microsoft)).toBe('https://login.microsoftonline.com/common/oauth2/v2.0/token');
    expect(tokenUrl(microsoft, undefined)).toBe(tokenUrl(microsoft));
  });

  it('escapes the tenant so it stays one path segment', () => {
    expect(tokenUrl(microsoft, 'a/b?c')).toBe(
      'https://login.microsoftonline.com/a%2Fb%3Fc/oauth2/v2.0/token',
    );
  });

  it('leaves an endpoint without {tenant} alone', () => {
    expect(tokenUrl(BUILTIN_PROVIDERS.google, 'ignored')).toBe('https://oauth2.googleapis.com/token');
  });
});
