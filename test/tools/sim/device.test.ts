import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../../src/tools/sim/index.js';
import { ephemeral, getStats, postForm } from './helpers.js';
import { accepted, base, DEVICE_CODE, get, postFormRaw, smtpAuth, tenantUrl } from './oauth-helpers.js';
import { sleep } from '../../helpers/wait.js';

const SCOPE = 'https://outlook.office.com/SMTP.Send offline_access';
const TENANT = 'contoso.onmicrosoft.com';

describe('device authorization grant (microsoft style)', () => {
  let sim: Simulator;
  const start = () =>
    postForm(tenantUrl(sim, TENANT, 'devicecode'), { client_id: 'device-app', scope: SCOPE });
  const poll = (deviceCode: string) =>
    postForm(tenantUrl(sim, TENANT, 'token'), {
      grant_type: DEVICE_CODE,
      client_id: 'device-app',
      device_code: deviceCode,
    });
  const answer = (userCode: string, login: string, action: 'allow' | 'deny') =>
    postFormRaw(`${base(sim)}/devicelogin`, { user_code: userCode, login, action });

  beforeAll(async () => {
    sim = await startSimulator({
      ...ephemeral,
      style: 'microsoft',
      clients: [{ clientId: 'device-app', tenant: TENANT }],
    });
  });
  afterAll(() => sim.close());
  beforeEach(() => sim.setFlows({ deviceIntervalMs: 100, deviceCodeLifetimeSec: 900 }));

  it('answers the device authorization request as RFC 8628 section 3.2 says', async () => {
    sim.setFlows({ deviceIntervalMs: 5000 });
    const r = await start();
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      user_code: expect.stringMatching(/^[A-Z0-9]{9}$/),
      device_code: expect.any(String),
      verification_uri: `${base(sim)}/devicelogin`,
      expires_in: 900,
      interval: 5,
      message: expect.stringContaining(r.body.user_code),
    });
  });

  it('pending, then slow_down when polled faster than the interval, then tokens once approved', async () => {
    const { body } = await start();
    expect(body.interval).toBe(0.1);
    const pending = await poll(body.device_code);
    expect(pending.status).toBe(400);
    expect(pending.body).toMatchObject({ error: 'authorization_pending', error_codes: [70016] });
    expect(pending.body.error_description).toMatch(/^AADSTS70016: /);
    expect((await poll(body.device_code)).body.error).toBe('slow_down');
    // Each slow_down adds a step (--device-interval) to this code's interval: 200 ms, then 300 ms.
    await sleep(150);
    expect((await poll(body.device_code)).body.error).toBe('slow_down');
    await sleep(350);
    expect((await poll(body.device_code)).body.error).toBe('authorization_pending');

    const page = await answer(body.user_code.toLowerCase(), 'Pat@Contoso.example', 'allow');
    expect(page.status).toBe(200);
    expect(page.text).toContain('data-result="approved"');
    await sleep(450);
    const done = await poll(body.device_code);
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({
      token_type: 'Bearer',
      scope: SCOPE,
      refresh_token: expect.any(String),
    });
    expect(accepted(await smtpAuth(sim, 'pat@contoso.example', done.body.access_token))).toBe(true);
    await sleep(450);
    expect((await poll(body.device_code)).body.error).toBe('invalid_grant'); // redeemed once only
    const refreshed = await postForm(tenantUrl(sim, TENANT, 'token'), {
      grant_type: 'refresh_token',
      client_id: 'device-app',
      refresh_token: done.body.refresh_token,
    });
    expect(refreshed.status).toBe(200);
  });

  it('answers access_denied once the user denies, and expired_token after expires_in', async () => {
    const denied = (await start()).body;
    expect((await answer(denied.user_code, '', 'deny')).text).toContain('data-result="denied"');
    const r = await poll(denied.device_code);
    expect(r.body.error).toBe('access_denied');
    sim.setFlows({ deviceCodeLifetimeSec: 0.05 });
    const late = (await start()).body;
    await sleep(100);
    expect((await poll(late.device_code)).body).toMatchObject({
      error: 'expired_token',
      error_codes: [70019],
    });
    expect((await answer(late.user_code, 'x@contoso.example', 'allow')).text).toContain(
      'data-result="expired"',
    );
  });

  it('answers slow_down on demand (fault slowDownNext), however patient the client', async () => {
    const { body } = await start();
    sim.setFaults({ slowDownNext: 1 });
    expect((await poll(body.device_code)).body.error).toBe('slow_down');
    expect(sim.faults().slowDownNext).toBe(0);
    await sleep(250);
    expect((await poll(body.device_code)).body.error).toBe('authorization_pending');
  });

  it('the verification page: a form, and clear answers for an unknown or used code', async () => {
    const page = await get(`${base(sim)}/devicelogin?user_code=ABC`);
    expect(page.status).toBe(200);
    expect(page.text).toMatch(/name="user_code" id="user_code" value="ABC"/);
    expect(page.text).toMatch(/id="allow"/);
    expect(page.text).toMatch(/id="deny"/);
    expect((await answer('NOPE12345', 'a@contoso.example', 'allow')).text).toContain(
      'data-result="unknown_code"',
    );
    const { body } = await start();
    expect((await answer(body.user_code, 'not an email', 'allow')).status).toBe(400);
    expect((await answer(body.user_code, 'q@contoso.example', 'allow')).status).toBe(200);
    expect((await answer(body.user_code, 'q@contoso.example', 'deny')).text).toContain(
      'data-result="already_answered"',
    );
  });

  it('knows the app only in its tenant, and needs client_id and scope', async () => {
    const other = await postForm(tenantUrl(sim, 'fabrikam.onmicrosoft.com', 'devicecode'), {
      client_id: 'device-app',
      scope: SCOPE,
    });
    expect(other.body).toMatchObject({ error: 'unauthorized_client', error_codes: [700016] });
    const noScope = await postForm(tenantUrl(sim, TENANT, 'devicecode'), { client_id: 'device-app' });
    expect(noScope.body).toMatchObject({ error: 'invalid_request', error_codes: [900144] });
    expect(noScope.body.error_description).toMatch(/'scope'/);
  });

  it('counts the polls it refused by reason', async () => {
    sim.reset();
    const { body } = await start();
    await poll(body.device_code);
    await poll(body.device_code);
    expect((await getStats(sim)).oauth.refused).toEqual({ authorization_pending: 1, slow_down: 1 });
  });
});

describe('device authorization (google style)', () => {
  it('refuses mail scopes as Google does: invalid_scope', async () => {
    const sim = await startSimulator(ephemeral);
    try {
      expect(sim.endpoints.deviceAuthorization).toBe(`${base(sim)}/device/code`);
      const r = await postForm(sim.endpoints.deviceAuthorization, {
        client_id: 'x.apps.example',
        scope: 'https://mail.google.com/',
      });
      expect(r).toEqual({
        status: 400,
        body: {
          error: 'invalid_scope',
          error_description: 'Invalid device flow scope: https://mail.google.com/',
        },
      });
    } finally {
      await sim.close();
    }
  });
});
