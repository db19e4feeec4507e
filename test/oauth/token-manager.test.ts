import { afterEach, describe, expect, it } from 'vitest';
import { expectSmtpError } from '../helpers/expect-rejection.js';
import { okHandler, useTokenServer, type TokenServer } from '../helpers/token-server.js';
import { sleep, until } from '../helpers/wait.js';
import { Harness, account, captureLogger, counter, gauge, provider } from './helpers.js';

const startTokenServer = useTokenServer();
const h = new Harness();
afterEach(() => h.cleanup()); // before the token servers close (hooks run last-registered first)
let srv: TokenServer | undefined;

describe('TokenManager: caching and single flight', () => {
  it('100 concurrent getToken calls make one request and share its token', async () => {
    srv = await startTokenServer(() => ({
      delayMs: 50,
      body: { access_token: 'at-shared', expires_in: 3600 },
    }));
    const { tm, metrics } = h.manager({ store: h.store() });
    tm.setAccounts([account('a@x.com', provider(srv.url))]);
    const tokens = await Promise.all(Array.from({ length: 100 }, () => tm.getToken('a@x.com')));
    expect(new Set(tokens)).toEqual(new Set(['at-shared']));
    expect(srv.requests).toHaveLength(1);
    // then served from the cache
    expect(await tm.getToken('a@x.com')).toBe('at-shared');
    expect(srv.requests).toHaveLength(1);
    expect(tm.status('a@x.com')).toMatchObject({ state: 'ok', refreshes: 1 });
    expect(await counter(metrics, 'success')).toBe(1);
    expect(await gauge(metrics, 'ok')).toBe(1);
    const durations = (await metrics.tokenRefreshDurationSeconds.get()).values;
    expect(durations.find((v) => v.metricName?.endsWith('_count'))?.value).toBe(1);
  });

  it('sends client_secret only when configured and substitutes {tenant}', async () => {
    srv = await startTokenServer(okHandler());
    const p = provider(`${srv.origin}/{tenant}/oauth2/v2.0/token`, { tenant: 'common' });
    const { tm } = h.manager({ store: h.store() });
    tm.setAccounts([
      account('pub@x.com', p),
      account('conf@x.com', p, { clientSecret: 'the-secret', tenant: 'contoso.onmicrosoft.com' }),
    ]);
    await tm.getToken('pub@x.com');
    await tm.getToken('conf@x.com');
    const [pub, conf] = srv.requests;
    expect(pub!.path).toBe('/common/oauth2/v2.0/token');
    expect(pub!.params.has('client_secret')).toBe(false);
    expect(conf!.path).toBe('/contoso.onmicrosoft.com/oauth2/v2.0/token');
    expect(conf!.params.get('client_secret')).toBe('the-secret');
    expect(conf!.params.get('refresh_token')).toBe('rt.conf@x.com');
    expect(conf!.params.get('scope')).toBe('https://mail.google.com/');
  });

  it('invalidate called 10 times with the same old token causes exactly one refresh', async () => {
    srv = await startTokenServer(okHandler());
    const { tm } = h.manager({ store: h.store() });
    tm.setAccounts([account('a@x.com', provider(srv.url))]);
    const old = await tm.getToken('a@x.com');
    for (let i = 0; i < 10; i++) tm.invalidate('a@x.com', old);
    const fresh = await Promise.all(Array.from({ length: 10 }, () => tm.getToken('a@x.com')));
    // late invalidations of the old token (other connections noticing it) change nothing
    for (let i = 0; i < 10; i++) tm.invalidate('a@x.com', old);
    const again = await tm.getToken('a@x.com');
    expect(srv.requests).toHaveLength(2);
    expect(new Set(fresh).size).toBe(1);
    expect(fresh[0]).not.toBe(old);
    expect(again).toBe(fresh[0]);
  });

  it('uses a stored, still valid access token after a restart without refreshing', async () => {
    srv = await startTokenServer(okHandler());
    const dir = h.tmpDir();
    const s1 = h.store(dir);
    const m1 = h.manager({ store: s1 });
    m1.tm.setAccounts([account('a@x.com', provider(srv.url))]);
    const t = await m1.tm.getToken('a@x.com');
    m1.tm.close();
    s1.close();
    const { tm, metrics } = h.manager({ store: h.store(dir) });
    tm.setAccounts([account('a@x.com', provider(srv.url))]);
    expect(tm.status('a@x.com').state).toBe('ok');
    expect(await tm.getToken('a@x.com')).toBe(t);
    expect(await tm.warmup()).toEqual({ ok: 1, failed: 0 });
    expect(srv.requests).toHaveLength(1);
    expect(await gauge(metrics, 'ok')).toBe(1);
  });

  it('setAccounts keeps unchanged accounts, resets changed ones alone, drops removed ones', async () => {
    srv = await startTokenServer(okHandler());
    const p = provider(srv.url);
    const { tm, metrics } = h.manager({ store: h.store() });
    tm.setAccounts([account('a@x.com', p), account('b@x.com', p), account('c@x.com', p)]);
    expect(await gauge(metrics, 'unknown')).toBe(3);
    const a = await tm.getToken('a@x.com');
    const b = await tm.getToken('b@x.com');
    await tm.getToken('c@x.com');
    expect(srv.requests).toHaveLength(3);

    // a: same credentials in a new snapshot object (provider object rebuilt too); b: new secret; c: gone
    tm.setAccounts([account('a@x.com', provider(srv.url)), account('b@x.com', p, { clientSecret: 'new' })]);
    expect(await tm.getToken('a@x.com')).toBe(a);
    expect(srv.requests).toHaveLength(3);
    const b2 = await tm.getToken('b@x.com');
    expect(b2).not.toBe(b);
    expect(srv.requests).toHaveLength(4);
    expect(srv.requests[3]!.params.get('client_secret')).toBe('new');
    expect((await expectSmtpError(tm.getToken('c@x.com'))).code).toBe('UNKNOWN_ACCOUNT');
    expect(await gauge(metrics, 'ok')).toBe(2);
    expect(await gauge(metrics, 'unknown')).toBe(0);

    // a changed scope also resets
    tm.setAccounts([
      account('a@x.com', provider(srv.url, { scope: 'other' })),
      account('b@x.com', p, { clientSecret: 'new' }),
    ]);
    expect(await tm.getToken('a@x.com')).not.toBe(a);
    expect(srv.requests).toHaveLength(5);
    expect(srv.requests[4]!.params.get('scope')).toBe('other');
  });

  it('the store keeps nothing of an account no longer configured: on reload and at start-up', async () => {
    srv = await startTokenServer(okHandler());
    const p = provider(srv.url);
    const dir = h.tmpDir();
    const s1 = h.store(dir);
    const m1 = h.manager({ store: s1 });
    m1.tm.setAccounts(['a@x.com', 'b@x.com', 'c@x.com'].map((e) => account(e, p)));
    await m1.tm.warmup();
    expect(s1.getAccessToken('c@x.com')).toBeDefined();
    m1.tm.setAccounts([account('a@x.com', p), account('b@x.com', p)]); // a reload without c
    expect(s1.getAccessToken('c@x.com')).toBeUndefined();
    expect(s1.getAccessToken('b@x.com')).toBeDefined();
    m1.tm.close();
    s1.close();

    // b removed while the proxy was stopped: gone when the next start sets the accounts
    const s2 = h.store(dir);
    const { tm } = h.manager({ store: s2 });
    tm.setAccounts([account('a@x.com', p)]);
    expect(s2.getAccessToken('b@x.com')).toBeUndefined();
    expect(await tm.getToken('a@x.com')).toBe(s2.getAccessToken('a@x.com')?.token);
    expect(srv.requests).toHaveLength(3); // a's stored token was kept and used
  });

  it('warmup runs at most warmupConcurrency requests at once and reports ok/failed', async () => {
    srv = await startTokenServer((req) =>
      req.params.get('refresh_token') === 'rt.bad@x.com'
        ? { delayMs: 30, status: 400, body: { error: 'invalid_grant' } }
        : { delayMs: 30, body: { access_token: `at-${req.params.get('refresh_token')}`, expires_in: 3600 } },
    );
    const p = provider(srv.url);
    const { tm } = h.manager({ store: h.store(), warmupConcurrency: 3 });
    const accounts = Array.from({ length: 20 }, (_, i) => account(`u${i}@x.com`, p));
    tm.setAccounts([...accounts, account('bad@x.com', p)]);
    expect(await tm.warmup()).toEqual({ ok: 20, failed: 1 });
    expect(srv.requests).toHaveLength(21);
    expect(srv.maxConcurrent).toBeLessThanOrEqual(3);
    expect(srv.maxConcurrent).toBeGreaterThanOrEqual(2); // it did run in parallel
    // a second warm-up has nothing to fetch and does not retry the dead account
    expect(await tm.warmup()).toEqual({ ok: 20, failed: 1 });
    expect(srv.requests).toHaveLength(21);
  });
});

describe('TokenManager: failures', () => {
  it('invalid_grant: needs_reauth for that account only, no retry loop, until its credentials change', async () => {
    srv = await startTokenServer((req) =>
      req.params.get('refresh_token') === 'rt-revoked'
        ? {
            status: 400,
            body: { error: 'invalid_grant', error_description: 'Token has been expired or revoked.' },
          }
        : okHandler()(req, 0),
    );
    const p = provider(srv.url);
    const cap = captureLogger();
    const { tm, metrics } = h.manager({ store: h.store(), log: cap.log });
    const good = account('good@x.com', p);
    tm.setAccounts([good, account('dead@x.com', p, { refreshToken: 'rt-revoked', clientSecret: 'cs-123' })]);

    const e = await expectSmtpError(tm.getToken('dead@x.com'));
    expect(e.code).toBe('NEEDS_REAUTH');
    expect(e.reply).toEqual({
      code: 451,
      enhanced: '4.7.0',
      text:
        'Mailbox dead@x.com needs re-authorization: the refresh token was revoked or is invalid; ' +
        'run `xoauth2-proxy accounts authorize dead@x.com`',
    });
    for (let i = 0; i < 5; i++)
      expect((await expectSmtpError(tm.getToken('dead@x.com'))).code).toBe('NEEDS_REAUTH');
    expect(await tm.warmup()).toEqual({ ok: 1, failed: 1 });
    await sleep(300); // nothing retries in the background either
    expect(srv.countFor('rt-revoked')).toBe(1);
    expect(await tm.getToken('good@x.com')).toMatch(/^at-/);
    expect(tm.status('dead@x.com')).toMatchObject({ state: 'needs_reauth', lastError: 'invalid_grant' });
    expect(tm.status('good@x.com').state).toBe('ok');
    expect(await counter(metrics, 'invalid_grant')).toBe(1);
    expect(await gauge(metrics, 'needs_reauth')).toBe(1);
    expect(cap.text()).not.toMatch(/rt-revoked|cs-123|at-\d/);
    expect(e.message).not.toContain('rt-revoked');

    // reload with an unchanged account keeps the verdict; a new refresh token clears it
    tm.setAccounts([good, account('dead@x.com', p, { refreshToken: 'rt-revoked', clientSecret: 'cs-123' })]);
    expect((await expectSmtpError(tm.getToken('dead@x.com'))).code).toBe('NEEDS_REAUTH');
    tm.setAccounts([good, account('dead@x.com', p, { refreshToken: 'rt-fresh' })]);
    expect(await tm.getToken('dead@x.com')).toMatch(/^at-/);
    expect(await gauge(metrics, 'needs_reauth')).toBe(0);
    expect(await gauge(metrics, 'ok')).toBe(2);
  });

  it('treats unauthorized_client and invalid_client as needs_reauth too', async () => {
    srv = await startTokenServer((req) => ({
      status: 401,
      body: { error: req.params.get('client_id') === 'c1' ? 'unauthorized_client' : 'invalid_client' },
    }));
    const p = provider(srv.url);
    const { tm } = h.manager({ store: h.store() });
    tm.setAccounts([account('a@x.com', p, { clientId: 'c1' }), account('b@x.com', p, { clientId: 'c2' })]);
    expect((await expectSmtpError(tm.getToken('a@x.com'))).code).toBe('NEEDS_REAUTH');
    expect((await expectSmtpError(tm.getToken('b@x.com'))).code).toBe('NEEDS_REAUTH');
    expect(tm.status('a@x.com').lastError).toBe('unauthorized_client');
  });

  it('5xx: fails fast during an exponential backoff, then tries again', async () => {
    let fail = true;
    srv = await startTokenServer(() =>
      fail ? { status: 503, raw: 'unavailable' } : okHandler()({} as any, 0),
    );
    let clock = 1_000_000;
    const { tm, metrics } = h.manager({
      store: h.store(),
      now: () => clock,
      random: () => 1, // delays at the top of their range: 1 s, 2 s, 4 s
    });
    tm.setAccounts([account('a@x.com', provider(srv.url))]);

    const e = await expectSmtpError(tm.getToken('a@x.com'));
    expect(e.code).toBe('TOKEN_REFRESH_FAILED');
    expect(e.reply).toEqual({
      code: 451,
      enhanced: '4.4.3',
      text: 'Could not refresh the access token for a@x.com: HTTP 503',
    });
    expect(tm.status('a@x.com')).toMatchObject({ state: 'error', lastError: 'HTTP 503' });
    clock += 900;
    expect((await expectSmtpError(tm.getToken('a@x.com'))).reply.enhanced).toBe('4.4.3');
    expect(srv.requests).toHaveLength(1); // no request during the backoff
    clock += 200;
    await expectSmtpError(tm.getToken('a@x.com'));
    expect(srv.requests).toHaveLength(2);
    clock += 1900; // the second backoff is 2 s
    await expectSmtpError(tm.getToken('a@x.com'));
    expect(srv.requests).toHaveLength(2);
    fail = false;
    clock += 200;
    expect(await tm.getToken('a@x.com')).toMatch(/^at-/);
    expect(srv.requests).toHaveLength(3);
    expect(tm.status('a@x.com').state).toBe('ok');
    expect(await counter(metrics, 'error')).toBe(2);
    expect(await gauge(metrics, 'error')).toBe(0);
    expect(await gauge(metrics, 'ok')).toBe(1);

    // success reset the backoff: the next failure waits 1 s again
    fail = true;
    tm.invalidate('a@x.com', await tm.getToken('a@x.com'));
    await expectSmtpError(tm.getToken('a@x.com'));
    clock += 1001;
    await expectSmtpError(tm.getToken('a@x.com'));
    expect(srv.requests).toHaveLength(5);
  });

  it('when one account of a provider refreshes again, the others in backoff retry at once', async () => {
    let fail = true;
    srv = await startTokenServer(() => (fail ? { status: 500, raw: 'down' } : okHandler()({} as any, 0)));
    let clock = 1_000_000;
    const { tm } = h.manager({
      store: h.store(),
      now: () => clock,
      random: () => 1,
      backoffBaseMs: 60_000, // first backoff 60 s
    });
    const p = provider(srv.url);
    tm.setAccounts([
      account('a@x.com', p),
      account('b@x.com', p),
      account('other@x.com', provider(srv.url, { name: 'other' })),
    ]);
    await expectSmtpError(tm.getToken('a@x.com'));
    clock += 30_000;
    await expectSmtpError(tm.getToken('b@x.com')); // b and other wait until +90 s
    await expectSmtpError(tm.getToken('other@x.com'));
    fail = false; // the endpoint is back
    clock += 31_000; // a's backoff is over, b's is not
    expect(await tm.getToken('a@x.com')).toMatch(/^at-/);
    const before = srv.requests.length;
    expect(await tm.getToken('b@x.com')).toMatch(/^at-/); // released by a's success
    expect(srv.requests.length).toBe(before + 1);
    // another provider's accounts are not released by it
    expect((await expectSmtpError(tm.getToken('other@x.com'))).reply.enhanced).toBe('4.4.3');
    expect(srv.requests.length).toBe(before + 1);
  });

  it('a timeout is a TOKEN_REFRESH_FAILED with the reason', async () => {
    srv = await startTokenServer(() => ({ hang: true }));
    const { tm } = h.manager({ store: h.store(), requestTimeoutMs: 200 });
    tm.setAccounts([account('a@x.com', provider(srv.url))]);
    const t0 = Date.now();
    const e = await expectSmtpError(tm.getToken('a@x.com'));
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(e.code).toBe('TOKEN_REFRESH_FAILED');
    expect(e.reply.text).toBe('Could not refresh the access token for a@x.com: timeout after 200ms');
  });

  it('keeps serving a still valid token when a proactive refresh fails, and retries before expiry', async () => {
    let n = 0;
    srv = await startTokenServer(() => (++n === 2 ? { status: 500 } : okHandler(4)({} as any, 0)));
    // random 0: no jitter, backoff delays at the bottom of their range (600 ms base -> 300 ms)
    const { tm } = h.manager({ store: h.store(), backoffBaseMs: 600, random: () => 0 });
    tm.setAccounts([account('a@x.com', provider(srv.url))]);
    const first = await tm.getToken('a@x.com');
    const t0 = Date.now();
    // polled, not slept: under a loaded CI machine the fixed sleeps missed the 300 ms window
    // 4 s token: ahead = min(300 s, 4 s / 4) = 1 s, so the proactive refresh fires at ~3 s and fails
    await until(() => tm.status('a@x.com').state === 'error', 5000);
    expect(srv.requests).toHaveLength(2);
    expect(tm.status('a@x.com').state).toBe('error');
    expect(await tm.getToken('a@x.com')).toBe(first); // still valid: served, no error
    // the retry comes ~300 ms later (at ~3.3 s), before the token's safety margin (3.6 s)
    await until(() => tm.status('a@x.com').state === 'ok', 2000);
    expect(Date.now() - t0).toBeLessThan(4000); // renewed before the 4 s token expired
    expect(srv.requests).toHaveLength(3);
    expect(tm.status('a@x.com').state).toBe('ok');
    expect(await tm.getToken('a@x.com')).not.toBe(first);
  });
});
