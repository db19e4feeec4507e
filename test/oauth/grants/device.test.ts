// The device grant (RFC 8628) against the conforming server, on a fake clock shared by both sides:
// the client's sleeps advance it, so minutes of polling take milliseconds.
import { afterEach, describe, expect, it } from 'vitest';
import {
  pollDeviceToken,
  requestDeviceAuthorization,
  type DeviceAuthorization,
} from '../../../src/oauth/grants/device.js';
import { GrantError } from '../../../src/oauth/grants/errors.js';
import { GOOGLE_DEVICE_FLOW_REFUSES_GMAIL, deviceFlowRefusal } from '../../../src/oauth/grants/providers.js';
import { TokenClient } from '../../../src/oauth/token-client.js';
import { startOAuthServer, type OAuthServer, type OAuthServerOptions } from './oauth-server.js';
import { expectRejection } from '../../helpers/expect-rejection.js';

const CLIENT_ID = 'tv-app.fake';
const SCOPE = 'https://outlook.office.com/SMTP.Send offline_access';

let srv: OAuthServer | undefined;
let client: TokenClient | undefined;
afterEach(async () => {
  client?.close();
  await srv?.close();
  srv = client = undefined;
});

function fakeClock() {
  const clock = {
    t: 1_700_000_000_000,
    sleeps: [] as number[],
    /** runs after the nth sleep (1-based), before the poll that follows it */
    at: new Map<number, () => void>(),
    now: () => clock.t,
    sleep: async (ms: number) => {
      clock.sleeps.push(ms);
      clock.t += ms;
      clock.at.get(clock.sleeps.length)?.();
    },
  };
  return clock;
}

async function setup(clock: ReturnType<typeof fakeClock>, device: OAuthServerOptions['device'] = {}) {
  srv = await startOAuthServer({ clients: [{ clientId: CLIENT_ID }], now: clock.now, device });
  client = new TokenClient({ timeoutMs: 5000 });
  const auth = await requestDeviceAuthorization(client, {
    deviceAuthorizationUrl: srv.deviceAuthorizationUrl,
    clientId: CLIENT_ID,
    scope: SCOPE,
    now: clock.now,
  });
  return { s: srv, auth };
}

const poll = (s: OAuthServer, auth: DeviceAuthorization, clock: ReturnType<typeof fakeClock>, extra = {}) =>
  pollDeviceToken(client!, {
    tokenUrl: s.tokenUrl,
    clientId: CLIENT_ID,
    authorization: auth,
    now: clock.now,
    sleep: clock.sleep,
    mailbox: 'bob@contoso.com',
    ...extra,
  });

const rejection = (p: Promise<unknown>) => expectRejection(p, GrantError);

describe('device authorization grant', () => {
  it('gets the user code and where to enter it', async () => {
    const clock = fakeClock();
    const { auth } = await setup(clock, { expiresIn: 600, interval: 7 });
    expect(auth.userCode).toMatch(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    expect(auth.verificationUri).toBe(`${srv!.origin}/device`);
    expect(auth.verificationUriComplete).toBe(`${srv!.origin}/device?user_code=${auth.userCode}`);
    expect(auth.expiresInSec).toBe(600);
    expect(auth.expiresAt).toBe(clock.t + 600_000);
    expect(auth.intervalSec).toBe(7);
  });

  it('defaults the interval to 5 s and reads Google\'s "verification_url"', async () => {
    const clock = fakeClock();
    const { auth } = await setup(clock, { interval: null, verificationField: 'verification_url' });
    expect(auth.intervalSec).toBe(5);
    expect(auth.verificationUri).toBe(`${srv!.origin}/device`);
  });

  it('authorization_pending, then slow_down (+5 s for good), then the tokens', async () => {
    const clock = fakeClock();
    const { s, auth } = await setup(clock, { slowDownPolls: [2] });
    clock.at.set(4, () => s.approve(auth.userCode));
    const pending: { intervalSec: number; slowDown: boolean }[] = [];
    const tokens = await poll(s, auth, clock, { onPending: (i: (typeof pending)[0]) => pending.push(i) });
    expect(tokens.refreshToken).toMatch(/^rt-/);
    expect(tokens.accessToken).toMatch(/^at-/);
    // poll 1 pending, poll 2 slow_down, poll 3 pending (now 10 s apart), poll 4 approved
    expect(clock.sleeps).toEqual([5000, 5000, 10000, 10000]);
    expect(pending).toEqual([
      { intervalSec: 5, slowDown: false },
      { intervalSec: 10, slowDown: true },
      { intervalSec: 10, slowDown: false },
    ]);
    expect(s.tooEarlyPolls).toBe(0);
    expect(s.tokenCalls.map((c) => c.error ?? c.status)).toEqual([
      'authorization_pending',
      'slow_down',
      'authorization_pending',
      200,
    ]);
    const p = s.tokenCalls[0]!.params;
    expect(p.get('grant_type')).toBe('urn:ietf:params:oauth:grant-type:device_code');
    expect(p.get('device_code')).toBe(auth.deviceCode);
    expect(p.get('client_id')).toBe(CLIENT_ID);
  });

  it('expired_token from the server ends the polling', async () => {
    const clock = fakeClock();
    const { s, auth } = await setup(clock);
    clock.at.set(2, () => s.expire(auth.userCode));
    const e = await rejection(poll(s, auth, clock));
    expect(e.oauthError).toBe('expired_token');
    expect(e.kind).toBe('permanent');
    expect(e.hint).toMatch(/device code expired.*accounts authorize bob@contoso.com/);
    expect(s.tokenCalls).toHaveLength(2);
  });

  it("stops at the device code's expires_in without polling a dead code", async () => {
    const clock = fakeClock();
    const { s, auth } = await setup(clock, { expiresIn: 30 });
    const e = await rejection(poll(s, auth, clock));
    expect(e.failure).toBe('device_expired');
    expect(e.kind).toBe('permanent');
    expect(e.reason).toBe('the device code expired after 30s');
    expect(s.tokenCalls.length).toBe(5); // at 5, 10, 15, 20, 25 s; none at 30 s
    expect(clock.t).toBe(auth.expiresAt);
  });

  it('access_denied ends the polling with what to do', async () => {
    const clock = fakeClock();
    const { s, auth } = await setup(clock);
    clock.at.set(1, () => s.deny(auth.userCode));
    const e = await rejection(poll(s, auth, clock));
    expect(e.oauthError).toBe('access_denied');
    expect(e.kind).toBe('permanent');
    expect(e.hint).toMatch(/approve/);
    expect(s.tokenCalls).toHaveLength(1);
  });

  it('an abort stops the polling', async () => {
    const clock = fakeClock();
    const { s, auth } = await setup(clock);
    const ac = new AbortController();
    clock.at.set(3, () => ac.abort());
    const e = await rejection(poll(s, auth, clock, { signal: ac.signal }));
    expect(e.failure).toBe('aborted');
    expect(s.tokenCalls).toHaveLength(2);
  });

  it('a failing token endpoint doubles the interval and polling goes on', async () => {
    const clock = fakeClock();
    const { s, auth } = await setup(clock);
    let failures = 2;
    s.override = () =>
      failures-- > 0 ? { status: 503, body: { error: 'temporarily_unavailable' } } : undefined;
    clock.at.set(3, () => s.approve(auth.userCode));
    const tokens = await poll(s, auth, clock);
    expect(tokens.refreshToken).toMatch(/^rt-/);
    expect(clock.sleeps).toEqual([5000, 10000, 20000]);
    expect(s.tooEarlyPolls).toBe(0);
  });

  it('Microsoft: offline_access is added to the scope (no refresh token without it)', async () => {
    srv = await startOAuthServer({ clients: [{ clientId: CLIENT_ID }] });
    client = new TokenClient({ timeoutMs: 5000 });
    const seen: (string | null)[] = [];
    srv.override = (path, params) =>
      void (path === '/device_authorization' && seen.push(params.get('scope')));
    const ask = (scope: string) =>
      requestDeviceAuthorization(client!, {
        deviceAuthorizationUrl: srv!.deviceAuthorizationUrl,
        clientId: CLIENT_ID,
        scope,
        flavor: 'microsoft',
      });
    await ask('https://outlook.office.com/SMTP.Send');
    await ask(SCOPE);
    expect(seen).toEqual([SCOPE, SCOPE]);
  });

  it("Google's device endpoint refuses Gmail scopes: a check before, and the error after", async () => {
    expect(deviceFlowRefusal('google', 'https://mail.google.com/')).toBe(GOOGLE_DEVICE_FLOW_REFUSES_GMAIL);
    expect(deviceFlowRefusal('google', 'openid https://www.googleapis.com/auth/gmail.send')).toBe(
      GOOGLE_DEVICE_FLOW_REFUSES_GMAIL,
    );
    expect(deviceFlowRefusal('google', 'openid email')).toBeUndefined();
    expect(deviceFlowRefusal('microsoft', SCOPE)).toBeUndefined();

    srv = await startOAuthServer({ clients: [{ clientId: CLIENT_ID, scopes: ['openid', 'email'] }] });
    client = new TokenClient({ timeoutMs: 5000 });
    const e = await rejection(
      requestDeviceAuthorization(client, {
        deviceAuthorizationUrl: srv.deviceAuthorizationUrl,
        clientId: CLIENT_ID,
        scope: 'https://mail.google.com/',
        flavor: 'google',
      }),
    );
    expect(e.oauthError).toBe('invalid_scope');
    expect(e.kind).toBe('permanent');
    expect(e.hint).toBe(GOOGLE_DEVICE_FLOW_REFUSES_GMAIL);
  });

  it('a device authorization answer with unprintable or missing fields is refused', async () => {
    srv = await startOAuthServer({ clients: [{ clientId: CLIENT_ID }] });
    client = new TokenClient({ timeoutMs: 5000 });
    const good = {
      device_code: 'dc',
      user_code: 'ABCD-EFGH',
      verification_uri: 'https://example.com/device',
      expires_in: 900,
    };
    for (const [bad, field] of [
      [{ user_code: 'AB\u001b[2J' }, 'user_code'],
      [{ verification_uri: 'javascript:alert(1)' }, 'verification_uri'],
      [{ device_code: undefined }, 'device_code'],
      [{ expires_in: 0 }, 'expires_in'],
      [{ interval: 'soon' }, 'interval'],
    ] as const) {
      srv.override = () => ({ status: 200, body: { ...good, ...bad } });
      const e = await rejection(
        requestDeviceAuthorization(client, {
          deviceAuthorizationUrl: srv.deviceAuthorizationUrl,
          clientId: CLIENT_ID,
          scope: SCOPE,
        }),
      );
      expect(e.reason).toContain(field);
    }
  });
});
