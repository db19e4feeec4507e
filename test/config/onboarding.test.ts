// The onboarding settings of providers and what they change for accounts: authorization endpoints,
// the OAuth client, app-only auth (client credentials, service account), accounts with only an
// email and a password. Every bad field is named by its path; the contents of certificates and key
// files are checked by app/credentials.ts (the grants own those formats).
import crypto from 'node:crypto';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { providerUrl, tokenUrl } from '../../src/config/providers.js';
import { credentialIssues } from '../../src/app/credentials.js';
import {
  GOOGLE_ENDPOINTS,
  MICROSOFT_APP_ONLY_SCOPE,
  MICROSOFT_ENDPOINTS,
} from '../../src/oauth/grants/providers.js';
import { CLIENT_CREDENTIALS_SCOPE } from '../../src/config/providers.js';
import { HASH1, issuesOf, tempDir } from './helpers.js';

const parse = (raw: unknown, baseDir = '/tmp') => parseConfig(raw, { baseDir, env: {} });
const user = (email: string, provider: string, extra: Record<string, unknown> = {}) => ({
  email,
  provider,
  passwordHash: HASH1,
  ...extra,
});

describe('built-in onboarding endpoints', () => {
  it('google and microsoft know their authorization and device endpoints; {tenant} is filled in like the token URL', async () => {
    const { config } = await parse({});
    const g = config.providers.google!;
    const m = config.providers.microsoft!;
    expect(providerUrl(g, 'authorizeUrl')).toBe(GOOGLE_ENDPOINTS.authorizeUrl);
    expect(providerUrl(g, 'deviceAuthorizationUrl')).toBe(GOOGLE_ENDPOINTS.deviceAuthorizationUrl);
    expect(providerUrl(m, 'authorizeUrl', 'contoso.onmicrosoft.com')).toBe(
      MICROSOFT_ENDPOINTS.authorizeUrl.replace('{tenant}', 'contoso.onmicrosoft.com'),
    );
    expect(providerUrl(m, 'deviceAuthorizationUrl')).toBe(
      MICROSOFT_ENDPOINTS.deviceAuthorizationUrl.replace('{tenant}', 'common'),
    );
    expect(tokenUrl(m)).toBe(MICROSOFT_ENDPOINTS.tokenUrl.replace('{tenant}', 'common'));
    expect(CLIENT_CREDENTIALS_SCOPE).toBe(MICROSOFT_APP_ONLY_SCOPE);
  });

  it('a custom provider may set them, or have none', async () => {
    const { config } = await parse({
      providers: {
        sim: {
          tokenUrl: 'http://127.0.0.1:1/{tenant}/token',
          authorizeUrl: 'http://127.0.0.1:1/{tenant}/authorize',
          tenant: 't1',
          smtp: { host: '127.0.0.1', port: 2 },
        },
        bare: { tokenUrl: 'http://127.0.0.1:1/token', smtp: { host: '127.0.0.1', port: 2 } },
      },
    });
    expect(providerUrl(config.providers.sim!, 'authorizeUrl')).toBe('http://127.0.0.1:1/t1/authorize');
    expect(providerUrl(config.providers.bare!, 'authorizeUrl')).toBeUndefined();
    const issues = await issuesOf(
      parse({ providers: { google: { authorizeUrl: 'ftp://x', deviceAuthorizationUrl: 5 } } }),
    );
    expect(issues).toEqual([
      { path: 'providers.google.authorizeUrl', message: 'expected an http(s) URL, got "ftp://x"' },
      {
        path: 'providers.google.deviceAuthorizationUrl',
        message: 'expected an http(s) URL, got number 5 (quote it)',
      },
    ]);
  });
});

describe('accounts with only an email and a password', () => {
  it('a provider with an oauthClient: no clientId needed; no refreshToken: it comes from the state store', async () => {
    const { config, warnings } = await parse({
      providers: {
        google: { oauthClient: { clientId: 'app.apps.googleusercontent.com', clientSecret: 's' } },
      },
      accounts: [user('a@example.com', 'google')],
    });
    expect(config.accounts[0]).toEqual({ email: 'a@example.com', provider: 'google', passwordHash: HASH1 });
    expect(config.providers.google!.oauthClient).toEqual({
      clientId: 'app.apps.googleusercontent.com',
      clientSecret: 's',
    });
    expect(warnings).toEqual([]);
  });

  it('without an oauthClient the account names the client id it lacks; an empty refreshToken is a mistake', async () => {
    const issues = await issuesOf(
      parse({
        accounts: [
          user('a@example.com', 'microsoft'),
          user('b@example.com', 'google', { clientId: 'c', refreshToken: '' }),
        ],
      }),
    );
    expect(issues).toEqual([
      {
        path: 'accounts[0].clientId',
        message:
          'required: expected the OAuth client id (or set providers.microsoft.oauthClient for every account of "microsoft")',
      },
      {
        path: 'accounts[1].refreshToken',
        message:
          'expected a non-empty string (leave refreshToken out to use the one `xoauth2-proxy accounts authorize` stores)',
      },
    ]);
  });

  it('an app-only provider takes no client or refresh token from its accounts, naming each', async () => {
    const issues = await issuesOf(
      parse({
        providers: {
          microsoft: {
            auth: {
              type: 'client_credentials',
              tenant: 'contoso.example',
              clientId: 'app',
              clientSecret: 's',
            },
          },
        },
        accounts: [
          user('a@example.com', 'microsoft', { clientId: 'c', refreshToken: 'r', tenant: 'other.example' }),
        ],
      }),
    );
    expect(issues.map((i) => i.path)).toEqual(['accounts[0].clientId', 'accounts[0].refreshToken']);
    expect(issues[0]!.message).toMatch(
      /^not used: provider "microsoft" gets tokens for its mailboxes as Microsoft app-only \(client credentials\) \(providers\.microsoft\.auth\), so an account needs only email and password; remove clientId$/,
    );
  });
});

describe('providers.<name>.auth', () => {
  it('client credentials with a secret: the app tenant is required (not "common"), the scope defaults to .default', async () => {
    const { config } = await parse({
      providers: {
        microsoft: {
          auth: { type: 'client_credentials', tenant: 'contoso.example', clientId: 'app', clientSecret: 's' },
        },
      },
      accounts: [user('a@example.com', 'microsoft')],
    });
    expect(config.providers.microsoft!.auth).toEqual({
      type: 'client_credentials',
      tenant: 'contoso.example',
      clientId: 'app',
      clientSecret: 's',
      scope: 'https://outlook.office365.com/.default',
    });
    const issues = await issuesOf(
      parse({
        providers: {
          microsoft: { auth: { type: 'client_credentials', clientId: 'app', clientSecret: 's' } },
        },
      }),
    );
    expect(issues).toEqual([
      {
        path: 'providers.microsoft.auth.tenant',
        message:
          'required: the directory (tenant) ID or a verified domain of the app registration (client credentials do not work with "common")',
      },
    ]);
  });

  it('names what is missing or contradictory, and unknown types and keys', async () => {
    const issues = await issuesOf(
      parse({
        providers: {
          microsoft: { auth: { type: 'client_credentials', tenant: 't.example', clientId: 'app' } },
          a: {
            tokenUrl: 'http://127.0.0.1:1/token',
            smtp: { host: 'h', port: 1 },
            auth: { type: 'client_credentials', clientId: 'app', clientSecret: 's', certificate: './c.pem' },
          },
          b: {
            tokenUrl: 'http://127.0.0.1:1/token',
            smtp: { host: 'h', port: 1 },
            auth: { type: 'service_acount' },
          },
          c: {
            tokenUrl: 'http://127.0.0.1:1/token',
            smtp: { host: 'h', port: 1 },
            auth: { type: 'service_account', keyfile: 'x' },
          },
          d: { tokenUrl: 'http://127.0.0.1:1/token', smtp: { host: 'h', port: 1 }, auth: 'yes' },
        },
      }),
    );
    expect(issues).toEqual(
      expect.arrayContaining([
        {
          path: 'providers.microsoft.auth.clientSecret',
          message: 'required: a client secret, or certificate and privateKey (PEM files) instead',
        },
        { path: 'providers.a.auth.certificate', message: 'set either clientSecret or certificate, not both' },
        {
          path: 'providers.a.auth.privateKey',
          message: "required with certificate: the PEM file of the certificate's RSA private key",
        },
        {
          path: 'providers.b.auth.type',
          message:
            'expected "client_credentials" or "service_account", got "service_acount" (did you mean "service_account"?)',
        },
        { path: 'providers.c.auth.keyfile', message: 'unknown key "keyfile" (did you mean "keyFile"?)' },
        {
          path: 'providers.c.auth.keyFile',
          message: 'required: expected the path of the service account JSON key file',
        },
        { path: 'providers.d.auth', message: expect.stringMatching(/^expected a mapping with a type/) },
      ]),
    );
  });

  it('files are read at load (a missing one names the field); their contents are checked field by field', async () => {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const dir = await tempDir({
      'good.json': JSON.stringify({
        type: 'service_account',
        client_email: 'sa@p.iam.gserviceaccount.com',
        client_id: '42',
        private_key: pem,
        token_uri: 'https://oauth2.googleapis.com/token',
      }),
      'no-email.json': JSON.stringify({
        type: 'service_account',
        private_key: pem,
        token_uri: 'https://oauth2.googleapis.com/token',
      }),
    });
    const cfg = (keyFile: string) => ({
      providers: { google: { auth: { type: 'service_account', keyFile } } },
      accounts: [user('a@example.com', 'google')],
    });
    const { config } = await parse(cfg('./good.json'), dir);
    expect(config.providers.google!.auth).toMatchObject({
      type: 'service_account',
      keyFile: path.join(dir, 'good.json'),
      scope: 'https://mail.google.com/',
    });
    expect(credentialIssues(config)).toEqual([]);

    expect(await issuesOf(parse(cfg('./missing.json'), dir))).toEqual([
      {
        path: 'providers.google.auth.keyFile',
        message: `cannot read the key file ${path.join(dir, 'missing.json')}: no such file`,
      },
    ]);
    const bad = await parse(cfg('./no-email.json'), dir);
    expect(credentialIssues(bad.config)).toEqual([
      {
        path: 'providers.google.auth.keyFile',
        message: `${path.join(dir, 'no-email.json')}: client_email: missing`,
      },
    ]);
  });
});
