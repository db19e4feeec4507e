// planAuthorization: which client, endpoints and flavor an authorization uses, and every reason it
// cannot start, with the field to set; beginAuthorization's URL (PKCE S256, state, login hint).
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import {
  AuthorizationError,
  beginAuthorization,
  planAuthorization,
  requireDeviceAuthorizationUrl,
} from '../../src/app/authorize.js';
import { codeChallengeS256 } from '../../src/oauth/grants/pkce.js';

/** A snapshot with inline accounts but an accountsFile path, as if the file held them. */
async function snapshot(providers: Record<string, unknown>, accounts: unknown[] = []): Promise<Config> {
  const { config: c } = await parseConfig({ providers, accounts }, { baseDir: '/tmp', env: {} });
  return { ...c, accountsFile: '/tmp/accounts.yaml' };
}

const failure = (f: () => unknown): AuthorizationError => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(AuthorizationError);
    return e as AuthorizationError;
  }
  throw new Error('expected an AuthorizationError');
};

describe('planAuthorization', () => {
  it('a new account of a provider with an oauthClient: its client, endpoints with the tenant, the flavor of the built-in', async () => {
    const c = await snapshot({
      microsoft: { tenant: 'contoso.example', oauthClient: { clientId: 'app-id' } },
    });
    const plan = planAuthorization(c, 'Alice@Contoso.example');
    expect(plan).toMatchObject({
      email: 'alice@contoso.example',
      client: { clientId: 'app-id' },
      providerClient: true,
      tenant: 'contoso.example',
      authorizeUrl: 'https://login.microsoftonline.com/contoso.example/oauth2/v2.0/authorize',
      deviceAuthorizationUrl: 'https://login.microsoftonline.com/contoso.example/oauth2/v2.0/devicecode',
      tokenUrl: 'https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token',
      flavor: 'microsoft',
      changesAccountsFile: true,
    });
    expect(plan.account).toBeUndefined();
  });

  it('an existing account uses its own client; a plain refresh token in the file is to be taken out', async () => {
    const c = await snapshot({ google: { oauthClient: { clientId: 'shared' } } }, [
      {
        email: 'a@x.com',
        provider: 'google',
        clientId: 'own',
        clientSecret: 's',
        refreshToken: 'rt',
        password: 'p',
      },
      { email: 'b@x.com', provider: 'google', password: 'p' },
    ]);
    expect(planAuthorization(c, 'a@x.com')).toMatchObject({
      client: { clientId: 'own', clientSecret: 's' },
      providerClient: false,
      changesAccountsFile: true,
    });
    expect(planAuthorization(c, 'b@x.com')).toMatchObject({
      client: { clientId: 'shared' },
      changesAccountsFile: false,
    });
  });

  it('says why it cannot start, naming what to set', async () => {
    const c = await snapshot(
      {
        google: { oauthClient: { clientId: 'g' } },
        microsoft: {
          auth: { type: 'client_credentials', tenant: 't.example', clientId: 'app', clientSecret: 's' },
        },
        bare: { tokenUrl: 'http://127.0.0.1:1/token', smtp: { host: 'h', port: 1 } },
        other: {
          tokenUrl: 'http://127.0.0.1:1/token',
          oauthClient: { clientId: 'o' },
          smtp: { host: 'h', port: 1 },
        },
      },
      [{ email: 'm@x.com', provider: 'microsoft', password: 'p' }],
    );
    expect(failure(() => planAuthorization(c, 'n@x.com')).failure).toBe('provider_required');
    expect(failure(() => planAuthorization(c, 'n@x.com', { provider: 'gogle' })).failure).toBe(
      'unknown_provider',
    );
    const appOnly = failure(() => planAuthorization(c, 'm@x.com'));
    expect(appOnly.failure).toBe('app_only');
    expect(appOnly.hint).toMatch(/accounts add --email m@x\.com --provider microsoft --password-stdin/);
    expect(failure(() => planAuthorization(c, 'm@x.com', { provider: 'google' })).failure).toBe(
      'provider_mismatch',
    );
    const noClient = failure(() => planAuthorization(c, 'n@x.com', { provider: 'bare' }));
    expect(noClient).toMatchObject({ failure: 'no_client', field: 'providers.bare.oauthClient' });
    const noEndpoint = failure(() =>
      beginAuthorization(planAuthorization(c, 'n@x.com', { provider: 'other' }), 'http://127.0.0.1:1/cb'),
    );
    expect(noEndpoint).toMatchObject({ failure: 'no_endpoint', field: 'providers.other.authorizeUrl' });
    const google = planAuthorization(c, 'n@x.com', { provider: 'google' });
    expect(failure(() => requireDeviceAuthorizationUrl(google)).hint).toMatch(
      /Google's device flow does not allow Gmail scopes/,
    );

    const inline = { ...c, accountsFile: undefined } as Config;
    expect(failure(() => planAuthorization(inline, 'n@x.com', { provider: 'google' }))).toMatchObject({
      failure: 'inline_accounts',
      field: 'accountsFile',
    });
  });
});

describe('beginAuthorization', () => {
  it('an authorization URL with an S256 challenge of a fresh verifier, a fresh state and the mailbox as login hint', async () => {
    const c = await snapshot({ google: { oauthClient: { clientId: 'g.apps.googleusercontent.com' } } });
    const plan = planAuthorization(c, 'a@x.com', { provider: 'google' });
    const one = beginAuthorization(plan, 'http://127.0.0.1:5000/callback');
    const two = beginAuthorization(plan, 'http://127.0.0.1:5000/callback');
    const q = new URL(one.url).searchParams;
    expect(new URL(one.url).origin + new URL(one.url).pathname).toBe(
      'https://accounts.google.com/o/oauth2/v2/auth',
    );
    expect(q.get('code_challenge')).toBe(codeChallengeS256(one.codeVerifier));
    expect(q.get('code_challenge_method')).toBe('S256');
    expect(q.get('state')).toBe(one.state);
    expect(q.get('login_hint')).toBe('a@x.com');
    expect(q.get('access_type')).toBe('offline');
    expect(q.get('prompt')).toBe('consent');
    expect(two.state).not.toBe(one.state);
    expect(two.codeVerifier).not.toBe(one.codeVerifier);
  });
});
