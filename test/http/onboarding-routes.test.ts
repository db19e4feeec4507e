// The onboarding routes over HTTP with a scripted OnboardingBackend: what a browser gets (status,
// headers, cookie, redirect), the admin token where it is needed, and the same-origin rule for the
// link's form. The flow itself (signatures, state, provider) is in test/integration/onboarding-web.
import { afterEach, describe, expect, it } from 'vitest';
import type {
  FlowFinished,
  FlowStart,
  OnboardingBackend,
  OnboardingFailure,
  OnboardingSettings,
} from '../../src/http/backend.js';
import { bindingCookieName } from '../../src/http/onboarding-routes.js';
import { startHttpServer, type RunningHttpServer } from '../../src/http/server.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { silentLogger } from '../../src/shared/log.js';
import { fakeBackend, type FakeBackend } from './fake-backend.js';

const TOKEN = 'onboarding-admin-token-0123456789';
const PUBLIC = 'https://relay.example.com/xo';
const GOOD_LINK = 'v1.good.link';
const STATE = 'state-0123456789abcdefghijklmnopqrstuvwxyz01';
const BINDING = 'binding-value-abcdef';

const refused = (status: number, problem: string): OnboardingFailure => ({
  ok: false,
  status,
  problem,
  title: `refused: ${problem}`,
  message: `<b>${problem}</b> explained`,
});

/** A backend that answers by rule and records what it was asked. */
function scriptedOnboarding(enabled = true) {
  const calls: { starts: FlowStart[]; finishes: { state: string | null; binding?: string }[] } = {
    starts: [],
    finishes: [],
  };
  const settings: OnboardingSettings = enabled
    ? { enabled: true, publicUrl: PUBLIC, redirectUri: PUBLIC + '/oauth/callback', providers: ['google'] }
    : { enabled: false, reason: 'set http.publicUrl' };
  const finished: FlowFinished = {
    ok: true,
    email: 'alice@example.com',
    provider: 'google',
    added: true,
    password: 'ONE-TIME-pass',
    smtp: [{ host: 'relay.example.com', port: 587, security: 'starttls' }],
  };
  const backend: OnboardingBackend = {
    settings: () => settings,
    createLink: (raw) =>
      (raw as { provider?: string }).provider === 'google'
        ? {
            ok: true,
            id: 'id1',
            url: `${PUBLIC}/onboard?link=x`,
            expiresAt: '2030-01-01T00:00:00.000Z',
            provider: 'google',
          }
        : { ...refused(400, 'invalid'), issues: [{ path: 'provider', message: 'unknown' }] },
    listLinks: () => [],
    revokeLink: (id) => id === 'id1',
    checkLink: (t) =>
      t === GOOD_LINK
        ? {
            ok: true,
            provider: 'google',
            expiresAt: '2030-01-01T00:00:00.000Z',
            authorizeOrigin: 'https://accounts.google.com',
          }
        : refused(410, 'link_used'),
    async start(req) {
      calls.starts.push(req);
      if (req.by === 'link' && req.link !== GOOD_LINK) return refused(410, 'link_used');
      return {
        ok: true,
        authorizeUrl: 'https://accounts.google.com/o/oauth2/v2/auth?state=' + STATE,
        state: STATE,
        binding: BINDING,
        expiresInSec: 600,
      };
    },
    async finish(q, binding) {
      calls.finishes.push({ state: q.get('state'), ...(binding !== undefined ? { binding } : {}) });
      return binding === BINDING ? finished : refused(403, 'browser_mismatch');
    },
  };
  return { backend, calls };
}

let server: RunningHttpServer | undefined;
let admin: FakeBackend | undefined;
afterEach(async () => {
  await server?.close();
  await admin?.cleanup();
  server = admin = undefined;
});

async function start(onboarding: OnboardingBackend | undefined) {
  admin = await fakeBackend();
  if (onboarding) admin.onboarding = onboarding;
  server = await startHttpServer({
    listen: { host: '127.0.0.1', port: 0 },
    adminToken: TOKEN,
    metrics: new Metrics({ defaultMetrics: false }),
    backend: admin,
    log: silentLogger,
  });
  const base = `http://127.0.0.1:${server.address.port}`;
  return (p: string, init: RequestInit = {}) => fetch(base + p, { redirect: 'manual', ...init });
}

const form = (fields: Record<string, string>, headers: Record<string, string> = {}): RequestInit => ({
  method: 'POST',
  body: new URLSearchParams(fields).toString(),
  headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
});
const bearer = { authorization: `Bearer ${TOKEN}` };

describe('onboarding routes', () => {
  it("the link's page: 200 with a form to the provider allowed by the CSP, no caching, no framing", async () => {
    const get = await start(scriptedOnboarding().backend);
    const r = await get(`/onboard?link=${GOOD_LINK}`);
    expect(r.status).toBe(200);
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(r.headers.get('x-frame-options')).toBe('DENY');
    expect(r.headers.get('referrer-policy')).toBe('no-referrer');
    const csp = r.headers.get('content-security-policy')!;
    expect(csp).toContain("form-action 'self' https://accounts.google.com;");
    expect(csp).toContain("frame-ancestors 'none'");
    const html = await r.text();
    expect(html).toContain('action="onboard/start"');
    expect(html).toContain(`name="link" value="${GOOD_LINK}"`);
    expect(html).toContain('id="email"'); // a link for any mailbox asks for it
  });

  it('a refused link gets its status and an escaped human text', async () => {
    const get = await start(scriptedOnboarding().backend);
    const r = await get('/onboard?link=v1.used');
    expect(r.status).toBe(410);
    const html = await r.text();
    expect(html).toContain('data-problem="link_used"');
    expect(html).toContain('&lt;b&gt;link_used&lt;/b&gt; explained');
    expect(r.headers.get('content-security-policy')).toContain("form-action 'self';");
  });

  it('the form POST: 303 to the provider with an HttpOnly, SameSite=Lax, Secure cookie on the public callback path', async () => {
    const { backend, calls } = scriptedOnboarding();
    const get = await start(backend);
    const r = await get('/onboard/start', form({ link: GOOD_LINK, email: ' Bob@Example.com ' }));
    expect(r.status).toBe(303);
    expect(r.headers.get('location')).toBe('https://accounts.google.com/o/oauth2/v2/auth?state=' + STATE);
    expect(r.headers.get('set-cookie')).toBe(
      `${bindingCookieName(STATE)}=${BINDING}; Path=/xo/oauth/callback; Max-Age=600; HttpOnly; SameSite=Lax; Secure`,
    );
    expect(calls.starts).toEqual([{ by: 'link', link: GOOD_LINK, email: 'Bob@Example.com' }]);
  });

  it('the form POST from another origin is refused before the backend hears of it', async () => {
    const { backend, calls } = scriptedOnboarding();
    const get = await start(backend);
    const crossSite: Record<string, string>[] = [
      { origin: 'https://evil.example' },
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site', origin: 'https://relay.example.com' },
      { origin: 'null' },
    ];
    for (const headers of crossSite) {
      const r = await get('/onboard/start', form({ link: GOOD_LINK }, headers));
      expect(r.status, JSON.stringify(headers)).toBe(403);
      expect(await r.text()).toContain('data-problem="cross_origin"');
    }
    expect(calls.starts).toEqual([]);
    // the public origin itself is fine
    const ok = await get(
      '/onboard/start',
      form({ link: GOOD_LINK }, { origin: 'https://relay.example.com' }),
    );
    expect(ok.status).toBe(303);
    // what chromium sends from a page with Referrer-Policy: no-referrer
    const chromium = { origin: 'null', 'sec-fetch-site': 'same-origin' };
    expect((await get('/onboard/start', form({ link: GOOD_LINK }, chromium))).status).toBe(303);
  });

  it('the callback passes the cookie of its state; the result page is not cached and clears the cookie', async () => {
    const { backend, calls } = scriptedOnboarding();
    const get = await start(backend);
    const cookieName = bindingCookieName(STATE);
    const r = await get(`/oauth/callback?code=c&state=${STATE}`, {
      headers: { cookie: `other=1; ${cookieName}=${BINDING}; ${bindingCookieName('x')}=nope` },
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(r.headers.get('set-cookie')).toContain(`${cookieName}=; Path=/xo/oauth/callback; Max-Age=0`);
    const html = await r.text();
    expect(html).toContain('id="password">ONE-TIME-pass<');
    expect(html).toContain('<td class="port">587</td>');
    expect(calls.finishes).toEqual([{ state: STATE, binding: BINDING }]);
    // without the cookie: the backend refuses (it is asked with no binding)
    const bare = await get(`/oauth/callback?code=c&state=${STATE}`);
    expect(bare.status).toBe(403);
    expect(calls.finishes[1]).toEqual({ state: STATE });
  });

  it('the admin routes need the token; start answers the URL and sets the cookie', async () => {
    const get = await start(scriptedOnboarding().backend);
    const body = JSON.stringify({ email: 'carol@example.com', provider: 'google' });
    const json = { 'content-type': 'application/json' };
    expect((await get('/admin/onboarding/start', { method: 'POST', body, headers: json })).status).toBe(401);
    expect((await get('/admin/onboarding-links', { method: 'POST', body, headers: json })).status).toBe(401);
    const r = await get('/admin/onboarding/start', { method: 'POST', body, headers: { ...json, ...bearer } });
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({
      authorizeUrl: 'https://accounts.google.com/o/oauth2/v2/auth?state=' + STATE,
    });
    expect(r.headers.get('set-cookie')).toContain(`${bindingCookieName(STATE)}=${BINDING};`);
    const noEmail = await get('/admin/onboarding/start', {
      method: 'POST',
      body: '{}',
      headers: { ...json, ...bearer },
    });
    expect(noEmail.status).toBe(400);
    expect(((await noEmail.json()) as any).issues[0].path).toBe('email');
  });

  it('links: 201 created, 400 naming the field, 204 revoked, 404 unknown', async () => {
    const get = await start(scriptedOnboarding().backend);
    const post = (b: unknown) =>
      get('/admin/onboarding-links', {
        method: 'POST',
        body: JSON.stringify(b),
        headers: { 'content-type': 'application/json', ...bearer },
      });
    const created = await post({ provider: 'google' });
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({ id: 'id1', url: `${PUBLIC}/onboard?link=x` });
    const bad = await post({ provider: 'nope' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ problem: 'invalid', issues: [{ path: 'provider' }] });
    expect((await get('/admin/onboarding-links/id1', { method: 'DELETE', headers: bearer })).status).toBe(
      204,
    );
    expect((await get('/admin/onboarding-links/id2', { method: 'DELETE', headers: bearer })).status).toBe(
      404,
    );
    expect((await get('/admin/onboarding-links', { headers: bearer })).status).toBe(200);
  });

  it('web flow off: the pages say how to turn it on; no onboarding backend: 404', async () => {
    let get = await start(scriptedOnboarding(false).backend);
    const r = await get(`/onboard?link=${GOOD_LINK}`);
    expect(r.status).toBe(404);
    expect(await r.text()).toContain('set http.publicUrl');
    const status = await get('/', { headers: bearer });
    expect(await status.text()).toContain('id="onboarding-off"');
    await server!.close();
    await admin!.cleanup();
    get = await start(undefined);
    expect((await get('/oauth/callback?state=x')).status).toBe(404);
    expect((await get('/admin/onboarding-links', { headers: bearer })).status).toBe(404);
  });
});
