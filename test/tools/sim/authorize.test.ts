import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../../src/tools/sim/index.js';
import { ephemeral, getStats, postForm } from './helpers.js';
import {
  accepted,
  authorizeQuery,
  base,
  consent,
  consentTx,
  get,
  postFormRaw,
  RFC7636_VERIFIER,
  smtpAuth,
  tenantUrl,
  type AuthorizeParams,
} from './oauth-helpers.js';
import { sleep } from '../../helpers/wait.js';

const LOOPBACK = 'http://127.0.0.1:53682/callback';
const WEB_CALLBACK = 'https://proxy.example.test/oauth/callback';
const GMAIL = 'https://mail.google.com/';

describe('authorization code flow with PKCE (google style)', () => {
  let sim: Simulator;
  const desktop: AuthorizeParams = {
    clientId: 'desktop.apps.example',
    redirectUri: LOOPBACK,
    state: 'st-1',
    extra: { access_type: 'offline', prompt: 'consent' },
  };
  const exchange = (code: string, extra: Record<string, string> = {}) =>
    postForm(sim.tokenUrl, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: LOOPBACK,
      client_id: 'desktop.apps.example',
      client_secret: 'fake-desktop-secret',
      code_verifier: RFC7636_VERIFIER,
      ...extra,
    });
  const codeFor = async (login: string, p: AuthorizeParams = desktop) =>
    (await consent(sim.endpoints.authorize, p, login)).searchParams.get('code')!;

  beforeAll(async () => {
    sim = await startSimulator({
      ...ephemeral,
      clients: [
        { clientId: 'desktop.apps.example', clientSecret: 'fake-desktop-secret' },
        { clientId: 'public.apps.example' },
      ],
      redirectUris: [WEB_CALLBACK],
    });
  });
  afterAll(() => sim.close());

  it('shows a consent form prefilled from login_hint, with Allow and Deny', async () => {
    const page = await get(
      `${sim.endpoints.authorize}?${authorizeQuery({ ...desktop, extra: { ...desktop.extra, login_hint: 'ann@example.com' } })}`,
    );
    expect(page.status).toBe(200);
    expect(page.text).toMatch(/<input type="email" name="login" id="login" value="ann@example.com"/);
    expect(page.text).toMatch(/<button type="submit" id="allow" name="action" value="allow">/);
    expect(page.text).toMatch(/<button type="submit" id="deny" name="action" value="deny"/);
    expect(page.text).toContain(GMAIL);
  });

  it('redirects with code and state; the code (RFC 7636 appendix B pair) gives tokens for that mailbox', async () => {
    const back = await consent(sim.endpoints.authorize, desktop, 'Ann@Example.com');
    expect(back.origin + back.pathname).toBe(LOOPBACK);
    expect(back.searchParams.get('state')).toBe('st-1');
    const code = back.searchParams.get('code')!;
    expect(code).toBeTruthy();
    const r = await exchange(code);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      access_token: expect.any(String),
      expires_in: 3600,
      token_type: 'Bearer',
      scope: GMAIL,
      refresh_token: expect.stringMatching(/^simrt\.ann@example\.com\./),
    });
    expect(accepted(await smtpAuth(sim, 'ann@example.com', r.body.access_token))).toBe(true);
    expect(accepted(await smtpAuth(sim, 'bob@example.com', r.body.access_token))).toBe(false);
    // The refresh token works for its client, and only with the client's secret.
    const refresh = (extra: Record<string, string>) =>
      postForm(sim.tokenUrl, { grant_type: 'refresh_token', refresh_token: r.body.refresh_token, ...extra });
    const ok = await refresh({ client_id: 'desktop.apps.example', client_secret: 'fake-desktop-secret' });
    expect(ok.status).toBe(200);
    expect(accepted(await smtpAuth(sim, 'ann@example.com', ok.body.access_token))).toBe(true);
    expect(await refresh({ client_id: 'desktop.apps.example', client_secret: 'wrong' })).toEqual({
      status: 401,
      body: { error: 'invalid_client', error_description: 'Unauthorized' },
    });
    expect(await refresh({ client_id: 'public.apps.example' })).toEqual({
      status: 400,
      body: { error: 'unauthorized_client', error_description: 'Unauthorized' },
    });
  });

  it('takes the client credentials in HTTP Basic too (RFC 6749 section 2.3.1)', async () => {
    const code = await codeFor('basic@example.com');
    const res = await postFormRaw(
      sim.tokenUrl,
      { grant_type: 'authorization_code', code, redirect_uri: LOOPBACK, code_verifier: RFC7636_VERIFIER },
      {
        authorization: 'Basic ' + Buffer.from('desktop.apps.example:fake-desktop-secret').toString('base64'),
      },
    );
    expect(res.status).toBe(200);
    expect(res.json.refresh_token).toMatch(/^simrt\.basic@example\.com\./);
  });

  it('refuses a wrong code_verifier with invalid_grant, and the code is then used up', async () => {
    const code = await codeFor('cat@example.com');
    const wrong = await exchange(code, { code_verifier: 'x'.repeat(43) });
    expect(wrong).toEqual({
      status: 400,
      body: { error: 'invalid_grant', error_description: 'Invalid code verifier.' },
    });
    expect((await exchange(code)).body.error).toBe('invalid_grant');
    const missing = await exchange(await codeFor('cat@example.com'), { code_verifier: '' });
    expect(missing.body).toEqual({ error: 'invalid_grant', error_description: 'Missing code verifier.' });
  });

  it('refuses a replayed code and revokes what the first redemption issued (RFC 6749 section 10.5)', async () => {
    const code = await codeFor('dan@example.com');
    const first = await exchange(code);
    expect(first.status).toBe(200);
    expect(await exchange(code)).toEqual({
      status: 400,
      body: { error: 'invalid_grant', error_description: 'Bad Request' },
    });
    expect(accepted(await smtpAuth(sim, 'dan@example.com', first.body.access_token))).toBe(false);
    const refresh = await postForm(sim.tokenUrl, {
      grant_type: 'refresh_token',
      client_id: 'desktop.apps.example',
      client_secret: 'fake-desktop-secret',
      refresh_token: first.body.refresh_token,
    });
    expect(refresh.body).toEqual({
      error: 'invalid_grant',
      error_description: 'Token has been expired or revoked.',
    });
  });

  it('refuses a redirect_uri other than the authorization request had, and a code of another client', async () => {
    const code = await codeFor('eve@example.com');
    expect((await exchange(code, { redirect_uri: 'http://127.0.0.1:53682/other' })).body.error).toBe(
      'invalid_grant',
    );
    const code2 = await codeFor('eve@example.com');
    const other = await postForm(sim.tokenUrl, {
      grant_type: 'authorization_code',
      code: code2,
      redirect_uri: LOOPBACK,
      client_id: 'public.apps.example',
      code_verifier: RFC7636_VERIFIER,
    });
    expect(other).toEqual({
      status: 400,
      body: { error: 'invalid_grant', error_description: 'Bad Request' },
    });
  });

  it('authenticates a confidential client before looking at the code', async () => {
    const code = await codeFor('fay@example.com');
    expect(await exchange(code, { client_secret: '' })).toEqual({
      status: 400,
      body: { error: 'invalid_request', error_description: 'client_secret is missing.' },
    });
    expect((await exchange(code, { client_secret: 'nope' })).status).toBe(401);
    expect((await exchange(code)).status).toBe(200); // the code survived the failed client authentication
  });

  it('lets a code expire', async () => {
    sim.setFlows({ codeLifetimeSec: 0.05 });
    try {
      const code = await codeFor('gus@example.com');
      await sleep(120);
      expect((await exchange(code)).body).toEqual({
        error: 'invalid_grant',
        error_description: 'Bad Request',
      });
    } finally {
      sim.setFlows({ codeLifetimeSec: 60 });
    }
  });

  it('issues a refresh token only offline, and for a client already allowed only with prompt=consent', async () => {
    const online = await exchange(await codeFor('hal@example.com', { ...desktop, extra: {} }));
    expect(online.status).toBe(200);
    expect(online.body.refresh_token).toBeUndefined();
    const first = await exchange(
      await codeFor('hal@example.com', { ...desktop, extra: { access_type: 'offline' } }),
    );
    expect(first.body.refresh_token).toBeUndefined(); // hal allowed the client already (online)
    const again = await exchange(
      await codeFor('hal@example.com', { ...desktop, extra: { access_type: 'offline', prompt: 'consent' } }),
    );
    expect(again.body.refresh_token).toMatch(/^simrt\.hal@example\.com\./);
    const ivy = await exchange(
      await codeFor('ivy@example.com', { ...desktop, extra: { access_type: 'offline' } }),
    );
    expect(ivy.body.refresh_token).toMatch(/^simrt\.ivy@example\.com\./); // a first consent
  });

  it('sends the user back with error=access_denied and the state on Deny', async () => {
    const back = await consent(sim.endpoints.authorize, desktop, '', 'deny');
    expect(back.origin + back.pathname).toBe(LOOPBACK);
    expect(Object.fromEntries(back.searchParams)).toEqual({ error: 'access_denied', state: 'st-1' });
  });

  it('redirects errors about the request itself: plain PKCE, no challenge, wrong response_type', async () => {
    const errorOf = async (p: Record<string, string>) => {
      const q = new URLSearchParams(authorizeQuery(desktop));
      for (const [k, v] of Object.entries(p)) {
        if (v === '') q.delete(k);
        else q.set(k, v);
      }
      const r = await get(`${sim.endpoints.authorize}?${q}`);
      expect(r.status).toBe(302);
      const url = new URL(r.location!);
      expect(url.searchParams.get('state')).toBe('st-1');
      return url.searchParams.get('error');
    };
    expect(await errorOf({ code_challenge_method: 'plain', code_challenge: RFC7636_VERIFIER })).toBe(
      'invalid_request',
    );
    expect(await errorOf({ code_challenge_method: '' })).toBe('invalid_request');
    expect(await errorOf({ code_challenge: '' })).toBe('invalid_request');
    expect(await errorOf({ response_type: 'token' })).toBe('unsupported_response_type');
    expect(await errorOf({ scope: '' })).toBe('invalid_request');
  });

  it('never redirects to an unknown client or an unregistered redirect URI (an error page instead)', async () => {
    const page = async (p: Partial<AuthorizeParams>) =>
      get(`${sim.endpoints.authorize}?${authorizeQuery({ ...desktop, ...p })}`);
    const unknown = await page({ clientId: 'stranger.apps.example' });
    expect(unknown.status).toBe(401);
    expect(unknown.location).toBeUndefined();
    expect(unknown.text).toContain('data-error="invalid_client"');
    for (const uri of [
      'https://evil.example/cb',
      'http://192.168.1.5:8080/cb',
      'http://127.0.0.1:53682/cb#frag',
      'not a uri',
    ]) {
      const r = await page({ redirectUri: uri });
      expect(r.status, uri).toBe(400);
      expect(r.location, uri).toBeUndefined();
    }
    // loopback on any port (RFC 8252 section 7.3), and the registered web callback
    for (const uri of [
      'http://127.0.0.1:1/cb',
      'http://[::1]:65000/',
      'http://localhost:8080/x',
      WEB_CALLBACK,
    ])
      expect((await page({ redirectUri: uri })).status, uri).toBe(200);
  });

  it('refuses parameters given twice (RFC 6749 section 3.1 and 3.2)', async () => {
    const twice = (param: string, value: string) =>
      `${sim.endpoints.authorize}?${authorizeQuery(desktop)}&${param}=${value}`;
    const page = await get(twice('client_id', 'public.apps.example'));
    expect(page.status).toBe(400);
    expect(page.location).toBeUndefined();
    const back = await get(twice('scope', 'openid'));
    expect(new URL(back.location!).searchParams.get('error')).toBe('invalid_request');
    const code = await codeFor('leo@example.com');
    const body = new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: LOOPBACK,
      client_id: 'desktop.apps.example',
      client_secret: 'fake-desktop-secret',
      code_verifier: RFC7636_VERIFIER,
    });
    body.append('code', code);
    const res = await fetch(sim.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: body.toString(),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      error: 'invalid_request',
      error_description: "The parameter 'code' is included more than once.",
    });
  });

  it('counts refusals by reason in /stats', async () => {
    sim.reset();
    const code = await codeFor('jay@example.com');
    await exchange(code, { code_verifier: 'y'.repeat(43) });
    await exchange(code);
    const stats = await getStats(sim);
    expect(stats.oauth.refused).toEqual({ pkce_mismatch: 1, code_replayed: 1 });
    expect(stats.oauth.consents).toEqual({ allowed: 1, denied: 0 });
  });

  it('an answered consent page cannot be submitted again', async () => {
    const pageRes = await get(`${sim.endpoints.authorize}?${authorizeQuery(desktop)}`);
    const tx = consentTx(pageRes.text);
    const url = sim.endpoints.authorize;
    expect((await postFormRaw(url, { tx, login: 'kim@example.com', action: 'allow' })).status).toBe(302);
    const again = await postFormRaw(url, { tx, login: 'kim@example.com', action: 'allow' });
    expect(again.status).toBe(400);
    expect(again.location).toBeUndefined();
  });
});

describe('authorization code flow (microsoft style, per tenant, rotating refresh tokens)', () => {
  let sim: Simulator;
  const SCOPE = 'https://outlook.office.com/SMTP.Send offline_access';
  const app: AuthorizeParams = {
    clientId: 'contoso-app-id',
    redirectUri: LOOPBACK,
    scope: SCOPE,
    state: 'ms',
  };
  beforeAll(async () => {
    sim = await startSimulator({
      ...ephemeral,
      style: 'microsoft',
      rotateRefreshTokens: true,
      clients: [{ clientId: 'contoso-app-id', tenant: 'contoso.onmicrosoft.com' }],
    });
  });
  afterAll(() => sim.close());
  const exchange = (tenant: string, code: string, extra: Record<string, string> = {}) =>
    postForm(tenantUrl(sim, tenant, 'token'), {
      grant_type: 'authorization_code',
      client_id: 'contoso-app-id',
      code,
      redirect_uri: LOOPBACK,
      code_verifier: RFC7636_VERIFIER,
      scope: SCOPE,
      ...extra,
    });
  const codeFor = async (login: string) =>
    (await consent(tenantUrl(sim, 'contoso.onmicrosoft.com', 'authorize'), app, login)).searchParams.get(
      'code',
    )!;

  it('publishes provider-shaped endpoints with {tenant}', () => {
    expect(sim.endpoints).toEqual({
      authorize: `${base(sim)}/{tenant}/oauth2/v2.0/authorize`,
      token: `${base(sim)}/{tenant}/oauth2/v2.0/token`,
      deviceAuthorization: `${base(sim)}/{tenant}/oauth2/v2.0/devicecode`,
      verification: `${base(sim)}/devicelogin`,
    });
  });

  it('gives a refresh token for offline_access; it rotates like the others', async () => {
    const r = await exchange('contoso.onmicrosoft.com', await codeFor('lea@contoso.example'));
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      token_type: 'Bearer',
      expires_in: 3600,
      ext_expires_in: 3600,
      scope: SCOPE,
    });
    expect(accepted(await smtpAuth(sim, 'lea@contoso.example', r.body.access_token))).toBe(true);
    const refresh = (rt: string) =>
      postForm(tenantUrl(sim, 'contoso.onmicrosoft.com', 'token'), {
        grant_type: 'refresh_token',
        client_id: 'contoso-app-id',
        refresh_token: rt,
        scope: SCOPE,
      });
    const r2 = await refresh(r.body.refresh_token);
    expect(r2.status).toBe(200);
    expect(r2.body.refresh_token).not.toBe(r.body.refresh_token);
    expect((await refresh(r.body.refresh_token)).body.error).toBe('invalid_grant');
    expect((await refresh(r2.body.refresh_token)).status).toBe(200);
  });

  it('words refusals as Azure AD: AADSTS codes at the start and in error_codes', async () => {
    const code = await codeFor('max@contoso.example');
    const wrong = await exchange('contoso.onmicrosoft.com', code, { code_verifier: 'z'.repeat(43) });
    expect(wrong.status).toBe(400);
    expect(wrong.body).toMatchObject({ error: 'invalid_grant', error_codes: [501481] });
    expect(wrong.body.error_description).toMatch(/^AADSTS501481: The Code_Verifier does not match/);
    const code2 = await codeFor('max@contoso.example');
    expect((await exchange('contoso.onmicrosoft.com', code2)).status).toBe(200);
    const replay = await exchange('contoso.onmicrosoft.com', code2);
    expect(replay.body.error_codes).toEqual([54005]);
    expect(replay.body.error_description).toMatch(
      /^AADSTS54005: OAuth2 Authorization code was already redeemed/,
    );
    sim.setFlows({ codeLifetimeSec: 0.05 });
    try {
      const code3 = await codeFor('max@contoso.example');
      await sleep(120);
      expect((await exchange('contoso.onmicrosoft.com', code3)).body.error_codes).toEqual([70008]);
    } finally {
      sim.setFlows({ codeLifetimeSec: 60 });
    }
  });

  it('does not know the app in another tenant (AADSTS700016), on the page and at the token endpoint', async () => {
    const page = await get(
      `${tenantUrl(sim, 'fabrikam.onmicrosoft.com', 'authorize')}?${authorizeQuery(app)}`,
    );
    expect(page.status).toBe(400);
    expect(page.text).toContain('AADSTS700016');
    const code = await codeFor('ned@contoso.example');
    const r = await exchange('fabrikam.onmicrosoft.com', code);
    expect(r.body).toMatchObject({ error: 'unauthorized_client', error_codes: [700016] });
    // common is any tenant: the app signs users in there too
    expect((await get(`${tenantUrl(sim, 'common', 'authorize')}?${authorizeQuery(app)}`)).status).toBe(200);
  });

  it('answers Deny with access_denied and an AADSTS65004 description', async () => {
    const back = await consent(tenantUrl(sim, 'contoso.onmicrosoft.com', 'authorize'), app, '', 'deny');
    expect(back.searchParams.get('error')).toBe('access_denied');
    expect(back.searchParams.get('error_description')).toMatch(/^AADSTS65004/);
    expect(back.searchParams.get('state')).toBe('ms');
  });

  it('has no tenant paths in google style', async () => {
    const g = await startSimulator(ephemeral);
    try {
      expect((await get(`${base(g)}/common/oauth2/v2.0/authorize`)).status).toBe(404);
    } finally {
      await g.close();
    }
  });
});

describe('authorization code flow while no client is registered', () => {
  it('takes any client_id for a public client, and binds the code to it', async () => {
    const sim = await startSimulator(ephemeral);
    try {
      const p: AuthorizeParams = {
        clientId: 'anything',
        redirectUri: LOOPBACK,
        extra: { access_type: 'offline' },
      };
      const code = (await consent(sim.endpoints.authorize, p, 'oz@example.com')).searchParams.get('code')!;
      const r = await postForm(sim.tokenUrl, {
        grant_type: 'authorization_code',
        client_id: 'anything',
        code,
        redirect_uri: LOOPBACK,
        code_verifier: RFC7636_VERIFIER,
      });
      expect(r.status).toBe(200);
      expect(accepted(await smtpAuth(sim, 'oz@example.com', r.body.access_token))).toBe(true);
    } finally {
      await sim.close();
    }
  });
});
