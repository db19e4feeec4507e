import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { describe, expect, it } from 'vitest';
import {
  isPasswordCsv,
  detectFormat,
  inferProvider,
  parseCsvAccounts,
  parsePythonProxyJson,
  providersSnippet,
  splitCsvLine,
} from '../../src/account-admin/import.js';

const fixture = (name: string) => readFileSync(path.join(__dirname, '../fixtures', name), 'utf8');

describe('Python proxy JSON import', () => {
  const r = parsePythonProxyJson(fixture('python-proxy-accounts.json'));

  it('maps every field of the fixture', () => {
    expect(r.errors).toEqual([]);
    expect(r.accounts.map((a) => a.account)).toEqual([
      {
        email: 'sender1@example.com',
        provider: 'google',
        clientId: '000000000000-fakefakefakefake.apps.googleusercontent.com',
        clientSecret: 'FAKE-client-secret-1',
        refreshToken: '1//FAKE-refresh-token-1',
        sourceAddress: '192.0.2.10',
        maxConnections: 5,
      },
      {
        // empty client_secret omitted; login.live.com -> the outlook-consumer provider
        email: 'sender2@example.net',
        provider: 'outlook-consumer',
        clientId: '00000000-0000-0000-0000-000000000000',
        refreshToken: 'M.FAKE_refresh_token_2',
        sourceAddress: '192.0.2.11',
      },
      {
        email: 'sender3@example.org',
        provider: 'microsoft',
        clientId: '00000000-0000-0000-0000-000000000001',
        refreshToken: '0.FAKE-refresh-token-3',
      },
    ]);
    // `_comment`, account_id, vmta_name are not carried over
    expect(JSON.stringify(r.accounts)).not.toMatch(/_comment|vmta|account_id/);
  });

  it('names the custom provider and prints a snippet the config loader accepts', async () => {
    expect(r.providers).toHaveLength(1);
    expect(r.providers[0]).toMatchObject({
      name: 'outlook-consumer',
      tokenUrl: 'https://login.live.com/oauth20_token.srf',
      accounts: ['sender2@example.net'],
    });
    const snippet = providersSnippet(r.providers);
    const doc = YAML.parse(snippet);
    expect(doc.providers['outlook-consumer']).toMatchObject({
      tokenUrl: 'https://login.live.com/oauth20_token.srf',
      smtp: { host: 'smtp-mail.outlook.com', port: 587, security: 'starttls' },
    });
  });

  it('a Microsoft tenant URL becomes tenant, not a custom provider; unknown providers are errors', () => {
    const text = JSON.stringify({
      _note: 'ignored',
      accounts: [
        {
          email: 'T@Contoso.com',
          provider: 'outlook',
          client_id: '11111111-2222-3333-4444-555555555555',
          refresh_token: 'r',
          oauth_token_url: 'https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token',
        },
        { email: 'y@example.com', provider: 'yahoo', client_id: 'c', refresh_token: 'r' },
        { email: 'z@example.com', provider: 'gmail', client_id: 'c' },
      ],
    });
    const out = parsePythonProxyJson(text);
    expect(out.accounts[0]!.account).toMatchObject({
      email: 't@contoso.com',
      provider: 'microsoft',
      tenant: 'contoso.onmicrosoft.com',
    });
    expect(out.providers).toEqual([]);
    expect(out.errors).toEqual([
      { path: 'accounts[1] (y@example.com)', message: expect.stringMatching(/unknown provider "yahoo"/) },
      { path: 'accounts[2] (z@example.com)', message: 'missing refresh_token' },
    ]);
  });

  it('--provider forces every account', () => {
    const out = parsePythonProxyJson(fixture('python-proxy-accounts.json'), { provider: 'sim' });
    expect(out.accounts.map((a) => a.account.provider)).toEqual(['sim', 'sim', 'sim']);
    expect(out.providers).toEqual([]);
  });
});

describe('CSV import', () => {
  it('reads the fixture: comment skipped, provider inferred from client_id, extra columns ignored', () => {
    const r = parseCsvAccounts(fixture('python-proxy-accounts.csv'));
    expect(r.errors).toEqual([]);
    expect(r.accounts).toEqual([
      {
        source: 'line 2',
        account: {
          email: 'sender4@example.com',
          provider: 'google',
          clientId: '000000000000-fake4.apps.googleusercontent.com',
          refreshToken: '1//FAKE-refresh-token-4',
        },
      },
      {
        source: 'line 3',
        account: {
          email: 'sender5@hotmail.example',
          provider: 'microsoft',
          clientId: '00000000-0000-0000-0000-000000000005',
          refreshToken: 'M.FAKE_refresh_token_5',
        },
      },
    ]);
    expect(r.notes.join('\n')).toMatch(/clientSecret/);
  });

  it('header line, quotes, and an error naming the line when the provider cannot be told', () => {
    const text =
      'email,account_id,refresh_token,client_id\n"a@x.io",a1,"tok,en",abc.apps.googleusercontent.com\n\nb@x.io,b1,rt,not-a-guid\nc@x.io,c1\n';
    const r = parseCsvAccounts(text);
    expect(r.accounts.map((a) => a.account)).toEqual([
      {
        email: 'a@x.io',
        provider: 'google',
        clientId: 'abc.apps.googleusercontent.com',
        refreshToken: 'tok,en',
      },
    ]);
    expect(r.errors).toEqual([
      {
        path: 'line 4 (b@x.io)',
        message: expect.stringMatching(/cannot tell the provider from client_id "not-a-guid".*--provider/),
      },
      {
        path: 'line 5',
        message: expect.stringMatching(/expected email,account_id,refresh_token,client_id/),
      },
    ]);
    expect(parseCsvAccounts(text, { provider: 'outlook' }).accounts.map((a) => a.account.provider)).toEqual([
      'microsoft',
      'microsoft',
    ]);
  });

  it('helpers', () => {
    expect(splitCsvLine('a, "b ""q"" c" ,d')).toEqual(['a', 'b "q" c', 'd']);
    expect(inferProvider('00000000-0000-0000-0000-00000000000A')).toBe('microsoft');
    expect(inferProvider('x.apps.googleusercontent.com')).toBe('google');
    expect(inferProvider('whatever')).toBeUndefined();
    expect(detectFormat('accounts.txt', ' {"accounts":[]}')).toBe('json');
    expect(detectFormat('accounts.txt', 'a@b,1,2,3')).toBe('csv');
  });
});

describe('CSV of emails and passwords', () => {
  it('every line email,password: accounts of the given provider with the password (for the caller to hash)', () => {
    const text = 'email,password\nA@Contoso.example,"pw,with comma"\nb@contoso.example,pw-b\n';
    expect(isPasswordCsv(text)).toBe(true);
    const r = parseCsvAccounts(text, { provider: 'm365' });
    expect(r.errors).toEqual([]);
    expect(r.accounts).toEqual([
      {
        source: 'line 2',
        account: { email: 'a@contoso.example', provider: 'm365', password: 'pw,with comma' },
      },
      { source: 'line 3', account: { email: 'b@contoso.example', provider: 'm365', password: 'pw-b' } },
    ]);
    expect(parseCsvAccounts(text).errors[0]).toEqual({
      path: 'line 2 (A@Contoso.example)',
      message: 'an email,password line needs --provider (the provider whose app-only auth serves it)',
    });
  });

  it("a two-field line among the Python proxy's is an error, never a password", () => {
    const text = 'a@x.io,a1,rt,abc.apps.googleusercontent.com\nc@x.io,c1\n';
    expect(isPasswordCsv(text)).toBe(false);
    const r = parseCsvAccounts(text);
    expect(r.accounts.map((a) => a.account.email)).toEqual(['a@x.io']);
    expect(r.errors).toEqual([
      { path: 'line 2', message: expect.stringMatching(/^expected email,account_id/) },
    ]);
  });
});
