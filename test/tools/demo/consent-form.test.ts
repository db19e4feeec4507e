// The demo's browser stand-in against the simulator's real consent page: the form is read from the
// page (hidden fields, login, the Allow button), and Allow ends in a redirect with a code and the state.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator } from '../../../src/tools/sim/index.js';
import { allowConsent, parseConsentForm } from '../../../src/tools/demo/consent-form.js';

type Sim = Awaited<ReturnType<typeof startSimulator>>;

describe('consent form', () => {
  let sim: Sim;
  beforeAll(async () => {
    sim = await startSimulator({
      smtp: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
    });
  });
  afterAll(() => sim.close());

  const authUrl = (loginHint?: string) => {
    const u = new URL(sim.endpoints.authorize);
    u.search = new URLSearchParams({
      response_type: 'code',
      client_id: 'demo-test-client',
      redirect_uri: 'http://127.0.0.1:9/callback',
      scope: 'https://mail.google.com/',
      state: 'state-for-tests',
      code_challenge: 'a'.repeat(43),
      code_challenge_method: 'S256',
      ...(loginHint ? { login_hint: loginHint } : {}),
    }).toString();
    return u.toString();
  };

  it('reads the form from the page: its action, hidden fields and the Allow button', async () => {
    const url = authUrl('owner@example.com');
    const form = parseConsentForm(await (await fetch(url)).text(), url);
    expect(form.method).toBe('POST');
    expect(new URL(form.action).origin).toBe(new URL(url).origin);
    expect(form.fields.get('tx')).toBeTruthy();
    expect(form.fields.get('login')).toBe('owner@example.com');
    expect(form.allow).toEqual({ name: 'action', value: 'allow' });
  });

  it('Allow redirects to the redirect URI with a code and the state, filling an empty login', async () => {
    const location = new URL(await allowConsent(authUrl(), 'owner@example.com'));
    expect(`${location.origin}${location.pathname}`).toBe('http://127.0.0.1:9/callback');
    expect(location.searchParams.get('code')).toBeTruthy();
    expect(location.searchParams.get('state')).toBe('state-for-tests');
    expect(sim.stats().oauth.consents.allowed).toBeGreaterThan(0);
  });

  it('an error page instead of a consent form is an error naming the status', async () => {
    const bad = authUrl().replace('redirect_uri=', 'redirect_uri=https%3A%2F%2Fexample.invalid%2F');
    await expect(allowConsent(bad, 'owner@example.com')).rejects.toThrow(/answered 400/);
  });

  it('a page without an Allow button is refused', () => {
    expect(() =>
      parseConsentForm('<form action="/x"><button id="deny">No</button></form>', 'http://127.0.0.1/'),
    ).toThrow(/no consent form with an Allow button/);
  });
});
