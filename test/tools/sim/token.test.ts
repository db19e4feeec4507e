import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simRefreshToken, startSimulator, type Simulator } from '../../../src/tools/sim/index.js';
import { authedClient, ephemeral, getStats, postForm, postJson, RawSmtp, xoauth2 } from './helpers.js';

const refresh = (sim: Simulator, rt: string, extra: Record<string, string> = {}) =>
  postForm(sim.tokenUrl, { grant_type: 'refresh_token', client_id: 'cid', refresh_token: rt, ...extra });

const jwt = (payload: object) =>
  [{ alg: 'RS256', typ: 'JWT' }, payload]
    .map((p) => Buffer.from(JSON.stringify(p)).toString('base64url'))
    .join('.') + '.c2lnbmF0dXJl';

async function smtpAccepts(sim: Simulator, user: string, token: string): Promise<boolean> {
  const c = await RawSmtp.connect(sim.smtp);
  await c.read();
  await c.cmd('EHLO client.test');
  const r = await c.cmd(`AUTH XOAUTH2 ${xoauth2(user, token)}`);
  c.close();
  return r[0] === '235 2.7.0 Accepted' || r[0] === '235 2.7.0 Authentication successful';
}

describe('token endpoint (google style)', () => {
  let sim: Simulator;
  beforeAll(async () => {
    sim = await startSimulator({ ...ephemeral, tokenLifetimeSec: 120 });
  });
  afterAll(() => sim.close());

  it('exchanges a refresh token for an access token bound to its user', async () => {
    const r = await refresh(sim, simRefreshToken('Ann@Example.com', 'a1'), {
      scope: 'https://mail.google.com/',
    });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      access_token: expect.stringMatching(/^simat\.[A-Za-z0-9_-]+$/),
      expires_in: 120,
      token_type: 'Bearer',
      scope: 'https://mail.google.com/',
    });
    expect(await smtpAccepts(sim, 'ann@example.com', r.body.access_token)).toBe(true);
    expect(await smtpAccepts(sim, 'someone@example.com', r.body.access_token)).toBe(false);
  });

  it('answers invalid_grant for unknown and malformed refresh tokens', async () => {
    for (const rt of ['nonsense', 'simrt.not-an-email.x', 'simrt.a@example.com.', '1//0google-style']) {
      const r = await refresh(sim, rt);
      expect(r).toEqual({
        status: 400,
        body: { error: 'invalid_grant', error_description: 'Token has been expired or revoked.' },
      });
    }
  });

  it('rejects a request without client_id or refresh_token as Google does', async () => {
    const noClient = await postForm(sim.tokenUrl, {
      grant_type: 'refresh_token',
      refresh_token: simRefreshToken('a@example.com'),
    });
    expect(noClient).toEqual({
      status: 400,
      body: { error: 'invalid_request', error_description: 'Could not determine client ID from request.' },
    });
    const noToken = await postForm(sim.tokenUrl, { grant_type: 'refresh_token', client_id: 'cid' });
    expect(noToken.status).toBe(400);
    expect(noToken.body.error).toBe('invalid_request');
    const badGrant = await postForm(sim.tokenUrl, { grant_type: 'password', client_id: 'cid' });
    expect(badGrant.body.error).toBe('unsupported_grant_type');
  });

  it('revokes a refresh token (API) and the access tokens issued from it', async () => {
    const rt = simRefreshToken('ben@example.com', 'r1');
    const at = (await refresh(sim, rt)).body.access_token;
    sim.revoke(rt);
    expect((await refresh(sim, rt)).body.error).toBe('invalid_grant');
    expect(await smtpAccepts(sim, 'ben@example.com', at)).toBe(false);
    // another refresh token of the same user still works
    expect((await refresh(sim, simRefreshToken('ben@example.com', 'r2'))).status).toBe(200);
  });

  it('revokes every refresh token of a user through POST /control/revoke {email}', async () => {
    const rt = simRefreshToken('cat@example.com', 'c1');
    const at = (await refresh(sim, rt)).body.access_token;
    const base = `http://${sim.http.host}:${sim.http.port}`;
    expect((await postJson(`${base}/control/revoke`, { email: 'CAT@example.com' })).status).toBe(200);
    expect((await refresh(sim, rt)).body.error).toBe('invalid_grant');
    expect((await refresh(sim, simRefreshToken('cat@example.com', 'other'))).body.error).toBe(
      'invalid_grant',
    );
    expect(await smtpAccepts(sim, 'cat@example.com', at)).toBe(false);
    expect(
      (await postJson(`${base}/control/revoke`, { refreshToken: simRefreshToken('dan@example.com') })).status,
    ).toBe(200);
    expect((await refresh(sim, simRefreshToken('dan@example.com'))).body.error).toBe('invalid_grant');
    expect((await postJson(`${base}/control/revoke`, {})).status).toBe(400);
  });

  it('issues tokens for the JWT bearer grant to the assertion sub (signature not checked)', async () => {
    const r = await postForm(sim.tokenUrl, {
      grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
      assertion: jwt({
        iss: 'svc@project.iam.gserviceaccount.com',
        sub: 'eve@example.com',
        exp: Date.now() / 1000 + 600,
      }),
    });
    expect(r.status).toBe(200);
    expect(await smtpAccepts(sim, 'eve@example.com', r.body.access_token)).toBe(true);
    expect(await smtpAccepts(sim, 'svc@project.iam.gserviceaccount.com', r.body.access_token)).toBe(false);
    const expired = await postForm(sim.tokenUrl, {
      grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
      assertion: jwt({ sub: 'eve@example.com', exp: Date.now() / 1000 - 3600 }),
    });
    expect(expired.body.error).toBe('invalid_grant');
  });

  it('counts token requests per user', async () => {
    sim.reset();
    await refresh(sim, simRefreshToken('fay@example.com'));
    await refresh(sim, simRefreshToken('FAY@example.com', 'b'));
    await refresh(sim, 'garbage');
    const stats = await getStats(sim);
    expect(stats.tokenRequests).toBe(3);
    expect(stats.tokenRequestsPerUser).toEqual({ 'fay@example.com': 2 });
    expect(stats.tokenErrors).toBe(1);
  });

  it('answers 500 when tokenErrorRate is 1 and delays by tokenLatencyMs', async () => {
    sim.setFaults({ tokenErrorRate: 1, tokenLatencyMs: 200 });
    try {
      const t0 = Date.now();
      const r = await refresh(sim, simRefreshToken('gus@example.com'));
      expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
      expect(r.status).toBe(500);
      expect(r.body.error).toBe('internal_failure');
    } finally {
      sim.setFaults({ tokenErrorRate: 0, tokenLatencyMs: 0 });
    }
    expect((await refresh(sim, simRefreshToken('gus@example.com'))).status).toBe(200);
  });
  it('resets the connection without an answer when tokenResetRate is 1', async () => {
    sim.setFaults({ tokenResetRate: 1 });
    try {
      await expect(refresh(sim, simRefreshToken('hal@example.com'))).rejects.toThrow();
    } finally {
      sim.setFaults({ tokenResetRate: 0 });
    }
    expect((await refresh(sim, simRefreshToken('hal@example.com'))).status).toBe(200);
  });
});

describe('token endpoint (microsoft style, rotating refresh tokens)', () => {
  let sim: Simulator;
  beforeAll(async () => {
    sim = await startSimulator({ ...ephemeral, style: 'microsoft', rotateRefreshTokens: true });
  });
  afterAll(() => sim.close());

  it('returns a new refresh token and revokes the old one at once', async () => {
    const first = simRefreshToken('hank@example.com', 'start');
    const r1 = await refresh(sim, first);
    expect(r1.status).toBe(200);
    expect(r1.body).toMatchObject({ token_type: 'Bearer', expires_in: 3600, ext_expires_in: 3600 });
    expect(r1.body.scope).toBe('https://outlook.office.com/SMTP.Send offline_access');
    const second: string = r1.body.refresh_token;
    expect(second).toMatch(/^simrt\.hank@example\.com\.[A-Za-z0-9_-]+$/);
    expect(second).not.toBe(first);
    const again = await refresh(sim, first);
    expect(again.status).toBe(400);
    expect(again.body.error).toBe('invalid_grant');
    const r2 = await refresh(sim, second);
    expect(r2.status).toBe(200);
    expect(r2.body.refresh_token).not.toBe(second);
    // the access token from the first refresh still works: rotation does not revoke access tokens
    (await authedClient(sim, 'hank@example.com', r1.body.access_token)).close();
  });

  it('rotates nothing on a failed (500) or unanswered refresh: the same refresh token works afterwards', async () => {
    const rt = simRefreshToken('hope@example.com', 'start');
    sim.setFaults({ tokenErrorRate: 1 });
    try {
      expect((await refresh(sim, rt)).status).toBe(500);
      sim.setFaults({ tokenErrorRate: 0, tokenResetRate: 1 });
      await expect(refresh(sim, rt)).rejects.toThrow();
    } finally {
      sim.setFaults({ tokenErrorRate: 0, tokenResetRate: 0 });
    }
    expect((await refresh(sim, rt)).status).toBe(200);
  });

  it('revokes the grants a user has so far, rotated ones included, through {grantsOf}; a new consent works', async () => {
    const first = simRefreshToken('ike@example.com', 'start');
    const r1 = await refresh(sim, first);
    const rotated: string = r1.body.refresh_token;
    const base = `http://${sim.http.host}:${sim.http.port}`;
    expect((await postJson(`${base}/control/revoke`, { grantsOf: 'IKE@example.com' })).status).toBe(200);
    expect((await refresh(sim, rotated)).body.error).toBe('invalid_grant');
    expect(await smtpAccepts(sim, 'ike@example.com', r1.body.access_token)).toBe(false);
    expect((await refresh(sim, simRefreshToken('ike@example.com', 'renewed'))).status).toBe(200);
    expect((await postJson(`${base}/control/revoke`, { grantsOf: 'nobody' })).status).toBe(400);
  });

  it('words a missing client_id like Azure AD', async () => {
    const r = await postForm(sim.tokenUrl, {
      grant_type: 'refresh_token',
      refresh_token: simRefreshToken('a@example.com'),
    });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_request');
    expect(r.body.error_description).toMatch(/^AADSTS900144: .*'client_id'/);
  });

  it('supports client_credentials: an email client_id binds the token to that user', async () => {
    const r = await postForm(sim.tokenUrl, {
      grant_type: 'client_credentials',
      client_id: 'ivy@example.com',
      client_secret: 's',
    });
    expect(r.status).toBe(200);
    expect(r.body.refresh_token).toBeUndefined();
    expect(await smtpAccepts(sim, 'ivy@example.com', r.body.access_token)).toBe(true);
    expect(await smtpAccepts(sim, 'other@example.com', r.body.access_token)).toBe(false);
    const noSecret = await postForm(sim.tokenUrl, {
      grant_type: 'client_credentials',
      client_id: 'ivy@example.com',
    });
    expect(noSecret.status).toBe(401);
    expect(noSecret.body.error).toBe('invalid_client');
  });

  it('supports client_credentials: an application client_id gives a token for any user', async () => {
    const r = await postForm(sim.tokenUrl, {
      grant_type: 'client_credentials',
      client_id: '00000000-1111-2222-3333-444444444444',
      client_secret: 's',
    });
    expect(await smtpAccepts(sim, 'jay@example.com', r.body.access_token)).toBe(true);
    expect(await smtpAccepts(sim, 'kim@example.com', r.body.access_token)).toBe(true);
  });
});
