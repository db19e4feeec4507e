// The authorization code grant with PKCE through a loopback redirect, against the conforming server:
// the "browser" is a fetch that follows the server's redirect to our listener.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  buildAuthorizationUrl,
  codeFromPastedRedirect,
  authorizationCodeContext,
  exchangeAuthorizationCode,
  newState,
  sameState,
} from '../../../src/oauth/grants/authorization-code.js';
import { GrantError } from '../../../src/oauth/grants/errors.js';
import { loopbackRedirectUri, startLoopbackRedirect } from '../../../src/oauth/grants/loopback-redirect.js';
import { newPkce } from '../../../src/oauth/grants/pkce.js';
import { TokenClient } from '../../../src/oauth/token-client.js';
import { startOAuthServer, type OAuthServer, type OAuthServerOptions } from './oauth-server.js';
import { expectRejection } from '../../helpers/expect-rejection.js';
import { sleep } from '../../helpers/wait.js';

const CLIENT_ID = 'desktop-app.fake';
const SCOPE = 'https://mail.google.com/';

let srv: OAuthServer | undefined;
let client: TokenClient | undefined;
const cleanups: (() => void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) c();
  client?.close();
  await srv?.close();
  srv = client = undefined;
});

async function server(over: Partial<OAuthServerOptions> = {}): Promise<OAuthServer> {
  srv = await startOAuthServer({
    clients: [{ clientId: CLIENT_ID, redirectUris: ['http://127.0.0.1/callback'] }],
    ...over,
  });
  client = new TokenClient({ timeoutMs: 5000 });
  return srv;
}

const rejection = (p: Promise<unknown>) => expectRejection(p, GrantError);

function refused(port: number): Promise<boolean> {
  return new Promise((ok) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('connect', () => (s.destroy(), ok(false)));
    s.on('error', () => ok(true));
  });
}

/** What `accounts authorize` does: listen, send the user to the URL, wait, exchange. */
async function interactiveFlow(
  s: OAuthServer,
  opts: { forgeState?: string; flavor?: 'google' | 'microsoft' } = {},
) {
  const pkce = newPkce();
  const state = newState();
  const redirect = await startLoopbackRedirect({
    expectedState: state,
    context: { flavor: opts.flavor ?? 'google', clientId: CLIENT_ID, mailbox: 'alice@example.com' },
  });
  cleanups.push(() => redirect.close());
  const url = buildAuthorizationUrl({
    authorizeUrl: s.authorizeUrl,
    clientId: CLIENT_ID,
    redirectUri: redirect.redirectUri,
    scope: SCOPE,
    state: opts.forgeState ?? state,
    codeChallenge: pkce.challenge,
    flavor: opts.flavor ?? 'google',
    loginHint: 'alice@example.com',
  });
  const page = await fetch(url); // follows the 302 to the listener, as a browser would
  const exchange = (async () => {
    const code = await redirect.code;
    return exchangeAuthorizationCode(client!, {
      tokenUrl: s.tokenUrl,
      clientId: CLIENT_ID,
      code,
      redirectUri: redirect.redirectUri,
      codeVerifier: pkce.verifier,
      flavor: opts.flavor ?? 'google',
      mailbox: 'alice@example.com',
    });
  })();
  return { page: { status: page.status, text: await page.text() }, exchange, redirect, pkce };
}

describe('authorization URL', () => {
  const base = {
    clientId: 'cid',
    redirectUri: 'http://127.0.0.1:5000/callback',
    scope: 'https://mail.google.com/',
    state: 'st',
    codeChallenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
  };

  it('carries response_type, client, redirect, scope, state and the S256 challenge; Google extras', () => {
    const u = new URL(
      buildAuthorizationUrl({
        ...base,
        authorizeUrl: 'https://accounts.google.com/o/oauth2/v2/auth',
        loginHint: 'alice@example.com',
      }),
    );
    expect(u.origin + u.pathname).toBe('https://accounts.google.com/o/oauth2/v2/auth');
    expect(Object.fromEntries(u.searchParams)).toEqual({
      response_type: 'code',
      client_id: 'cid',
      redirect_uri: 'http://127.0.0.1:5000/callback',
      scope: 'https://mail.google.com/',
      state: 'st',
      code_challenge: base.codeChallenge,
      code_challenge_method: 'S256',
      access_type: 'offline',
      prompt: 'consent',
      login_hint: 'alice@example.com',
    });
  });

  it('Microsoft: offline_access added to the scope; select_account without a login hint', () => {
    const authorizeUrl = 'https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize';
    const plain = new URL(
      buildAuthorizationUrl({ ...base, authorizeUrl, scope: 'https://outlook.office.com/SMTP.Send' }),
    ).searchParams;
    expect(plain.get('scope')).toBe('https://outlook.office.com/SMTP.Send offline_access');
    expect(plain.get('prompt')).toBe('select_account');
    expect(plain.has('access_type')).toBe(false);
    const hinted = new URL(
      buildAuthorizationUrl({
        ...base,
        authorizeUrl,
        scope: 'https://outlook.office.com/SMTP.Send offline_access',
        loginHint: 'bob@contoso.com',
      }),
    ).searchParams;
    expect(hinted.get('scope')).toBe('https://outlook.office.com/SMTP.Send offline_access');
    expect(hinted.get('login_hint')).toBe('bob@contoso.com');
    expect(hinted.has('prompt')).toBe(false);
  });

  it('generic providers get no extras; the endpoint URL keeps its own query', () => {
    const q = new URL(
      buildAuthorizationUrl({ ...base, authorizeUrl: 'http://127.0.0.1:1/authorize?tenant=x' }),
    ).searchParams;
    expect(q.get('tenant')).toBe('x');
    expect(q.has('prompt') || q.has('access_type') || q.has('login_hint')).toBe(false);
  });

  it('state is random, compared in constant time', () => {
    const a = newState();
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(newState()).not.toBe(a);
    expect(sameState(a, a)).toBe(true);
    expect(sameState(a, a.slice(0, -1))).toBe(false);
    expect(sameState(a, `${a}x`)).toBe(false);
    expect(sameState('', '')).toBe(false);
  });
});

describe('authorization code flow', () => {
  it('loopback redirect, code exchange with the verifier, refresh token', async () => {
    const s = await server({ refreshTokens: 'access_type_offline' });
    const { page, exchange, redirect, pkce } = await interactiveFlow(s);
    expect(page.status).toBe(200);
    expect(page.text).toContain('You can close this window');
    const tokens = await exchange;
    expect(tokens.accessToken).toMatch(/^at-/);
    expect(tokens.refreshToken).toMatch(/^rt-/);
    expect(tokens.expiresInSec).toBe(3600);
    expect(tokens.scope).toBe(SCOPE);
    expect(s.tokenCalls).toHaveLength(1);
    const call = s.tokenCalls[0]!;
    expect(call.status).toBe(200);
    expect(call.params.get('grant_type')).toBe('authorization_code');
    expect(call.params.get('redirect_uri')).toBe(redirect.redirectUri);
    expect(call.params.get('code_verifier')).toBe(pkce.verifier);
    // the server saw the challenge only, and the Google extras
    const q = s.authorizeQueries[0]!;
    expect(q.get('code_challenge')).toBe(pkce.challenge);
    expect(q.get('access_type')).toBe('offline');
    // one callback, then the listener is gone
    await sleep(20);
    expect(await refused(redirect.port)).toBe(true);
  });

  it('a wrong state is refused before any code exchange', async () => {
    const s = await server();
    const { page, exchange } = await interactiveFlow(s, { forgeState: newState() });
    expect(page.status).toBe(400);
    expect(page.text).toContain('different state');
    const e = await rejection(exchange);
    expect(e.failure).toBe('state_mismatch');
    expect(e.kind).toBe('permanent');
    expect(s.tokenCalls).toHaveLength(0);
  });

  it('access_denied comes back as a permanent error with what to do', async () => {
    const s = await server();
    s.consent = 'deny';
    const { page, exchange } = await interactiveFlow(s);
    expect(page.status).toBe(400);
    expect(page.text).toContain('access_denied');
    const e = await rejection(exchange);
    expect(e.failure).toBe('oauth_error');
    expect(e.oauthError).toBe('access_denied');
    expect(e.kind).toBe('permanent');
    expect(e.description).toBe('The resource owner denied the request.');
    expect(e.hint).toMatch(
      /alice@example.com is not a test user; run `xoauth2-proxy accounts authorize alice@example.com` again/,
    );
    expect(s.tokenCalls).toHaveLength(0);
  });

  it('a server that returns no refresh token is an error naming the fix', async () => {
    const s = await server({ refreshTokens: 'never' });
    const e = await rejection((await interactiveFlow(s)).exchange);
    expect(e.failure).toBe('no_refresh_token');
    expect(e.kind).toBe('permanent');
    expect(e.hint).toMatch(/access_type=offline and prompt=consent/);
  });

  it('Microsoft flavor gets a refresh token from a server that needs offline_access', async () => {
    const s = await server({ refreshTokens: 'offline_access_scope' });
    const { exchange } = await interactiveFlow(s, { flavor: 'microsoft' });
    expect((await exchange).refreshToken).toMatch(/^rt-/);
    expect(s.authorizeQueries[0]!.get('scope')).toBe(`${SCOPE} offline_access`);
  });

  it("the server's PKCE check: a wrong verifier and a reused code are invalid_grant", async () => {
    const s = await server();
    const pkce = newPkce();
    const state = newState();
    const redirect = await startLoopbackRedirect({ expectedState: state });
    cleanups.push(() => redirect.close());
    await fetch(
      buildAuthorizationUrl({
        authorizeUrl: s.authorizeUrl,
        clientId: CLIENT_ID,
        redirectUri: redirect.redirectUri,
        scope: SCOPE,
        state,
        codeChallenge: pkce.challenge,
      }),
    );
    const code = await redirect.code;
    const req = { tokenUrl: s.tokenUrl, clientId: CLIENT_ID, code, redirectUri: redirect.redirectUri };
    const e = await rejection(
      exchangeAuthorizationCode(client!, { ...req, codeVerifier: newPkce().verifier }),
    );
    expect(e.oauthError).toBe('invalid_grant');
    expect(e.kind).toBe('permanent');
    expect(e.hint).toMatch(/PKCE verifier/);
    // the failed attempt used the code up (RFC 6749 section 4.1.2: single use)
    const again = await rejection(
      exchangeAuthorizationCode(client!, { ...req, codeVerifier: pkce.verifier }),
    );
    expect(again.oauthError).toBe('invalid_grant');
  });
});

describe('pasted redirect URL (--no-browser)', () => {
  /** The browser on another machine cannot reach our port: the user copies the address bar. */
  async function addressBar(s: OAuthServer, redirectUri: string, state: string, challenge: string) {
    const res = await fetch(
      buildAuthorizationUrl({
        authorizeUrl: s.authorizeUrl,
        clientId: CLIENT_ID,
        redirectUri,
        scope: SCOPE,
        state,
        codeChallenge: challenge,
      }),
      { redirect: 'manual' },
    );
    expect(res.status).toBe(302);
    return res.headers.get('location')!;
  }
  const ctx = authorizationCodeContext({
    clientId: CLIENT_ID,
    flavor: 'google',
    mailbox: 'alice@example.com',
  });

  it('takes the code from the pasted URL and exchanges it', async () => {
    const s = await server();
    const redirectUri = loopbackRedirectUri(53682);
    const pkce = newPkce();
    const state = newState();
    const pasted = `  ${await addressBar(s, redirectUri, state, pkce.challenge)}\n`;
    const code = codeFromPastedRedirect(pasted, { redirectUri, state }, ctx);
    const tokens = await exchangeAuthorizationCode(client!, {
      tokenUrl: s.tokenUrl,
      clientId: CLIENT_ID,
      code,
      redirectUri,
      codeVerifier: pkce.verifier,
    });
    expect(tokens.refreshToken).toMatch(/^rt-/);
  });

  it('refuses a wrong state, another redirect URI, an error and text that is not a URL', async () => {
    const s = await server();
    const redirectUri = loopbackRedirectUri(53682);
    const state = newState();
    const pasted = await addressBar(s, redirectUri, newState(), newPkce().challenge);
    const cases: [string, RegExp][] = [
      [pasted, /different state/],
      [pasted.replace(':53682/', ':53683/'), /not the redirect URI/],
      [pasted.replace('/callback', '/other'), /not the redirect URI/],
      ['4/0AbCdEf-the-code-alone', /not a URL/],
      [`${redirectUri}?code=abc`, /no state/],
    ];
    for (const [text, reason] of cases) {
      let err: unknown;
      try {
        codeFromPastedRedirect(text, { redirectUri, state }, ctx);
      } catch (e) {
        err = e;
      }
      expect(err, text).toBeInstanceOf(GrantError);
      expect((err as GrantError).reason).toMatch(reason);
    }
    s.consent = 'deny';
    const denied = await addressBar(s, redirectUri, state, newPkce().challenge);
    expect(() => codeFromPastedRedirect(denied, { redirectUri, state }, ctx)).toThrow(/access_denied/);
    expect(s.tokenCalls).toHaveLength(0);
  });
});

describe('loopback redirect listener', () => {
  it('listens on 127.0.0.1; other paths and methods do not count; one callback only', async () => {
    const state = newState();
    const r = await startLoopbackRedirect({ expectedState: state, path: '/oauth' });
    cleanups.push(() => r.close());
    expect(r.redirectUri).toBe(`http://127.0.0.1:${r.port}/oauth`);
    expect((await fetch(`http://127.0.0.1:${r.port}/favicon.ico`)).status).toBe(404);
    expect((await fetch(`${r.redirectUri}?code=x&state=${state}`, { method: 'POST' })).status).toBe(405);
    const ok = await fetch(`${r.redirectUri}?code=the-code&state=${state}`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('cache-control')).toBe('no-store');
    expect(await r.code).toBe('the-code');
    await sleep(20);
    expect(await refused(r.port)).toBe(true);
  });

  it('uses the given port; an abort stops it', async () => {
    const probe = net.createServer();
    await new Promise<void>((ok) => probe.listen(0, '127.0.0.1', ok));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise((ok) => probe.close(ok));
    const ac = new AbortController();
    const r = await startLoopbackRedirect({ expectedState: newState(), port, signal: ac.signal });
    expect(r.port).toBe(port);
    ac.abort();
    const e = await rejection(r.code);
    expect(e.failure).toBe('aborted');
    expect(await refused(port)).toBe(true);
  });

  it('a port in use is a clear error', async () => {
    const busy = net.createServer();
    await new Promise<void>((ok) => busy.listen(0, '127.0.0.1', ok));
    cleanups.push(() => busy.close());
    const port = (busy.address() as net.AddressInfo).port;
    await expect(startLoopbackRedirect({ expectedState: 's', port })).rejects.toThrow(
      `cannot listen on 127.0.0.1:${port} for the OAuth redirect: EADDRINUSE`,
    );
  });

  it('survives a request line that is not a URL, and still takes the callback', async () => {
    const state = newState();
    const r = await startLoopbackRedirect({ expectedState: state });
    cleanups.push(() => r.close());
    const raw = await new Promise<string>((ok, fail) => {
      const s = net.connect(r.port, '127.0.0.1', () => s.write('GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n'));
      let got = '';
      s.on('data', (d) => (got += d.toString()));
      s.on('end', () => ok(got));
      s.on('error', fail);
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400/);
    expect((await fetch(`${r.redirectUri}?code=c&state=${state}`)).status).toBe(200);
    expect(await r.code).toBe('c');
  });

  it('escapes what it echoes into the page', async () => {
    const state = newState();
    const r = await startLoopbackRedirect({ expectedState: state });
    cleanups.push(() => r.close());
    const res = await fetch(`${r.redirectUri}?state=${state}&error=%3Cscript%3E`);
    expect(await res.text()).not.toContain('<script>');
    expect((await rejection(r.code)).oauthError).toBe('invalid_error_code');
  });
});
