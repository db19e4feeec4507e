// Web onboarding end to end: a real proxy and simulator (Microsoft style: refresh tokens come with
// offline_access), and Debian's chromium driven by playwright-core.
// - An administrator adds a mailbox from the status page through the consent page; mail then flows
//   through the new account without a restart, and the result page shows its password only once.
// - A signed link used by a mailbox owner in a browser without the admin token: settings and the
//   password once, then SMTP AUTH with it works; the same link again, an expired one, a tampered
//   one: error pages. Cancelling at the consent page keeps the link usable.
// - Nobody without a link or the admin token starts a flow; a callback with a wrong state, or from
//   another browser, is refused and exchanges nothing.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, requireChromium, useBrowser } from '../helpers/browser.js';
import { freePort } from '../../src/tools/harness/ports.js';
import { simProvider, type ProxyProc, type SimProc } from '../helpers/procs.js';
import { loginAndSend } from '../helpers/smtp-client.js';
import { useProcs } from '../helpers/use-procs.js';
import { until } from '../helpers/wait.js';

const haveChromium = requireChromium('web onboarding browser tests');

const ADMIN = 'onboarding-admin-token-not-secret';
const CLIENT_ID = 'onboarding-web-app';
const CLIENT_SECRET = 'SIM-client-secret-not-real';
const SCOPE = 'https://outlook.office.com/SMTP.Send offline_access';

interface Env {
  sim: SimProc;
  proxy: ProxyProc;
  publicUrl: string;
  accountsFile: string;
}

async function startEnv(procs: ReturnType<typeof useProcs>): Promise<Env> {
  const sim = await procs.sim(['--style', 'microsoft', '--client', `${CLIENT_ID}:${CLIENT_SECRET}`]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-onboard-'));
  const accountsFile = path.join(dir, 'accounts.yaml');
  fs.writeFileSync(accountsFile, '[]\n');
  const httpPort = await freePort();
  const publicUrl = `http://127.0.0.1:${httpPort}`;
  const proxy = await procs.proxy(
    {
      http: { listen: `127.0.0.1:${httpPort}`, adminToken: ADMIN, publicUrl },
      providers: {
        sim: simProvider(sim, {
          authorizeUrl: `http://127.0.0.1:${sim.httpPort}/authorize`,
          scope: SCOPE,
          oauthClient: { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET },
        }),
      },
      accountsFile,
    },
    { dir },
  );
  return { sim, proxy, publicUrl, accountsFile };
}

const json = { 'content-type': 'application/json' };
const bearer = { authorization: `Bearer ${ADMIN}` };

async function createLink(env: Env, body: Record<string, unknown>) {
  const r = await env.proxy.http('/admin/onboarding-links', {
    method: 'POST',
    headers: { ...json, ...bearer },
    body: JSON.stringify(body),
  });
  expect(r.status).toBe(201);
  return (await r.json()) as { id: string; url: string; expiresAt: string };
}

/** SMTP AUTH with the generated password, then one message to the upstream. */
const sendAs = (env: Env, email: string, password: string) =>
  loginAndSend(env.proxy.smtpPort, email, password);

async function problemOf(page: Page): Promise<string | null> {
  return page.getAttribute('#problem', 'data-problem');
}

describe.skipIf(!haveChromium)(`web onboarding in chromium (skipped when ${CHROMIUM} is missing)`, () => {
  const procs = useProcs('all');
  let env: Env;
  const browser = useBrowser();
  const contexts: BrowserContext[] = [];
  /** passwords, link tokens and redirect URLs seen: none may appear in the proxy's log */
  const secrets: string[] = [];
  /** a fresh browser profile: no cookies, no admin token */
  const freshContext = async () => {
    const c = await browser().newContext();
    contexts.push(c);
    return c;
  };

  beforeAll(async () => {
    env = await startEnv(procs);
  }, 60_000);
  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
  });

  it('"Add mailbox" on the status page: consent, the password once, then mail flows without a restart', async () => {
    const page = await (await freshContext()).newPage();
    await page.goto(`${env.publicUrl}/?token=${ADMIN}`);
    expect(page.url()).toBe(`${env.publicUrl}/`); // the token left the address bar at once
    expect(await page.textContent('#redirect-uri')).toBe(`${env.publicUrl}/oauth/callback`);
    await page.fill('#add-email', 'New.User@Example.com');
    await page.selectOption('#add-provider', 'sim');
    await Promise.all([page.waitForURL(/\/authorize\?/), page.click('#add')]);
    // the simulator's consent page, with the mailbox as login hint
    expect(await page.inputValue('#login')).toBe('new.user@example.com');
    await Promise.all([page.waitForURL(/\/oauth\/callback\?/), page.click('#allow')]);
    expect(await page.textContent('#title')).toBe('Mailbox connected');
    expect(await page.textContent('#username')).toBe('new.user@example.com');
    expect(await page.textContent('td.port')).toBe(String(env.proxy.smtpPort));
    const password = (await page.textContent('#password'))!;
    expect(password).toMatch(/^[A-Za-z0-9_-]{24}$/);
    secrets.push(password, new URL(page.url()).searchParams.get('code')!);

    const r = await sendAs(env, 'new.user@example.com', password);
    expect(r.login.ok).toBe(true);
    expect(r.sent?.ok, r.sent?.response).toBe(true);
    const stats = await env.sim.stats();
    expect(JSON.stringify(stats)).toContain(r.id);
    // only a hash of the password on disk, and no refresh token in the accounts file
    const file = fs.readFileSync(env.accountsFile, 'utf8');
    expect(file).toContain('new.user@example.com');
    expect(file).not.toContain(password);
    expect(file).not.toMatch(/refreshToken/);

    // a reload asks for the callback again: the flow is finished, the password is not shown
    const again = await page.reload();
    expect(again!.status()).toBe(410);
    expect(await problemOf(page)).toBe('flow_finished');
    expect(await page.$('#password')).toBeNull();
  }, 60_000);

  it('"Re-authorize" on a mailbox row: the same flow, the password unchanged', async () => {
    const page = await (await freshContext()).newPage();
    await page.goto(`${env.publicUrl}/?token=${ADMIN}`);
    const button = page.locator('tr[data-email="new.user@example.com"] button.reauth');
    await Promise.all([page.waitForURL(/\/authorize\?/), button.click()]);
    await Promise.all([page.waitForURL(/\/oauth\/callback\?/), page.click('#allow')]);
    expect(await page.textContent('#title')).toBe('Mailbox re-authorized');
    expect(await page.$('#password')).toBeNull();
    expect(await page.$('#password-unchanged')).not.toBeNull();
  }, 60_000);

  it("a link for one mailbox, used by its owner: settings and password once; the link's second use is refused", async () => {
    const link = await createLink(env, { email: 'owner@example.com', provider: 'sim' });
    expect(link.url).toMatch(new RegExp(`^${env.publicUrl}/onboard\\?link=v1\\.`));
    secrets.push(new URL(link.url).searchParams.get('link')!);

    const owner = await (await freshContext()).newPage();
    await owner.goto(link.url);
    expect(await owner.textContent('#mailbox')).toBe('owner@example.com');
    await Promise.all([owner.waitForURL(/\/authorize\?/), owner.click('#continue')]);
    await Promise.all([owner.waitForURL(/\/oauth\/callback\?/), owner.click('#allow')]);
    expect(await owner.textContent('#title')).toBe('Mailbox connected');
    const password = (await owner.textContent('#password'))!;
    secrets.push(password, new URL(owner.url()).searchParams.get('state')!);
    const r = await sendAs(env, 'owner@example.com', password);
    expect(r.login.ok).toBe(true);
    expect(r.sent?.ok, r.sent?.response).toBe(true);

    // the same link again, in another browser: refused, with the reason
    const second = await (await freshContext()).newPage();
    const res = await second.goto(link.url);
    expect(res!.status()).toBe(410);
    expect(await problemOf(second)).toBe('link_used');
    expect(await second.textContent('#problem')).toContain('already used');
    // and the button's POST, sent anyway, is refused too
    const post = await env.proxy.http('/onboard/start', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ link: new URL(link.url).searchParams.get('link')! }).toString(),
      redirect: 'manual',
    });
    expect(post.status).toBe(410);
    const links = (await (
      await env.proxy.http('/admin/onboarding-links', { headers: bearer })
    ).json()) as any;
    expect(links.links.find((l: any) => l.id === link.id)).toMatchObject({
      status: 'used',
      usedBy: 'owner@example.com',
    });
  }, 60_000);

  it('a link for any mailbox: the owner types it; Deny at the consent page leaves the link usable', async () => {
    const link = await createLink(env, { provider: 'sim', expiresIn: '1h' });
    const owner = await (await freshContext()).newPage();
    await owner.goto(link.url);
    await owner.fill('#email', 'typed@example.com');
    await Promise.all([owner.waitForURL(/\/authorize\?/), owner.click('#continue')]);
    await Promise.all([owner.waitForURL(/\/oauth\/callback\?/), owner.click('#deny')]);
    expect(await problemOf(owner)).toBe('consent_denied');
    expect(await owner.textContent('#problem')).toContain('open your link again');

    await owner.goto(link.url);
    await owner.fill('#email', 'typed@example.com');
    await Promise.all([owner.waitForURL(/\/authorize\?/), owner.click('#continue')]);
    await Promise.all([owner.waitForURL(/\/oauth\/callback\?/), owner.click('#allow')]);
    expect(await owner.textContent('#username')).toBe('typed@example.com');
    const r = await sendAs(env, 'typed@example.com', (await owner.textContent('#password'))!);
    expect(r.sent?.ok, r.sent?.response).toBe(true);

    // a link for any mailbox adds one; it does not take over a mailbox that is set up
    const other = await createLink(env, { provider: 'sim' });
    const taken = await env.proxy.http('/onboard/start', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        link: new URL(other.url).searchParams.get('link')!,
        email: 'Typed@Example.com',
      }).toString(),
      redirect: 'manual',
    });
    expect(taken.status).toBe(409);
    expect(await taken.text()).toContain('data-problem="mailbox_exists"');
  }, 60_000);

  it('an owner who signs in at the provider as another mailbox: refused, nothing kept, the link still works', async () => {
    const link = await createLink(env, { email: 'claimed@example.com', provider: 'sim' });
    const owner = await (await freshContext()).newPage();
    await owner.goto(link.url);
    await Promise.all([owner.waitForURL(/\/authorize\?/), owner.click('#continue')]);
    await owner.fill('#login', 'someone.else@example.com');
    await Promise.all([owner.waitForURL(/\/oauth\/callback\?/), owner.click('#allow')]);
    expect(await problemOf(owner)).toBe('smtp_probe_failed');
    expect(await owner.$('#password')).toBeNull();
    expect(fs.readFileSync(env.accountsFile, 'utf8')).not.toContain('claimed@example.com');
    const accounts = (await (await env.proxy.http('/admin/accounts', { headers: bearer })).json()) as any;
    expect(accounts.accounts.map((a: any) => a.email)).not.toContain('claimed@example.com');

    await owner.goto(link.url);
    await Promise.all([owner.waitForURL(/\/authorize\?/), owner.click('#continue')]);
    await Promise.all([owner.waitForURL(/\/oauth\/callback\?/), owner.click('#allow')]);
    expect(await owner.textContent('#title')).toBe('Mailbox connected');
    const r = await sendAs(env, 'claimed@example.com', (await owner.textContent('#password'))!);
    expect(r.sent?.ok, r.sent?.response).toBe(true);
  }, 60_000);

  it('an expired link and a tampered link get their error pages', async () => {
    const short = await createLink(env, { email: 'late@example.com', provider: 'sim', expiresIn: '1s' });
    const good = await createLink(env, { email: 'tamper@example.com', provider: 'sim' });
    const page = await (await freshContext()).newPage();

    await until(() => Date.now() > Date.parse(short.expiresAt), 5000, 'the short link to expire');
    const expired = await page.goto(short.url);
    expect(expired!.status()).toBe(410);
    expect(await problemOf(page)).toBe('link_expired');
    expect(await page.textContent('#problem')).toContain('expired on');

    // another mailbox written into the payload, the MAC kept
    const token = new URL(good.url).searchParams.get('link')!;
    const [v, payload, mac] = token.split('.');
    const fields = JSON.parse(Buffer.from(payload!, 'base64url').toString());
    fields[1] = 'mallory@example.com';
    const forged = `${v}.${Buffer.from(JSON.stringify(fields)).toString('base64url')}.${mac}`;
    for (const bad of [forged, token.slice(0, -2), token.replace(/\.[^.]+$/, '.' + 'A'.repeat(43))]) {
      const res = await page.goto(`${env.publicUrl}/onboard?link=${bad}`);
      expect(res!.status()).toBe(400);
      expect(await problemOf(page)).toBe('link_invalid');
    }
    // the good link still works afterwards: nothing was changed by the attempts
    const ok = await page.goto(good.url);
    expect(ok!.status()).toBe(200);
  }, 60_000);

  it("the proxy's log names the flows but holds no password, link, code or state", async () => {
    const log = env.proxy.output();
    expect(log).toContain('web onboarding finished');
    expect(log).toContain('onboarding link created');
    expect(secrets.length).toBeGreaterThanOrEqual(5);
    for (const s of secrets) expect(log).not.toContain(s);
  });
});

describe('web onboarding refuses what it must (no browser needed)', () => {
  const procs = useProcs('all');
  let env: Env;
  beforeAll(async () => {
    env = await startEnv(procs);
  }, 60_000);

  const form = (fields: Record<string, string>) => ({
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
    redirect: 'manual' as const,
  });

  /** An admin start, then Allow on the consent page by hand: the callback URL and the flow's cookie. */
  async function consentedCallback(email: string): Promise<{ callback: URL; cookie: string }> {
    const r = await env.proxy.http('/admin/onboarding/start', {
      method: 'POST',
      headers: { ...json, ...bearer },
      body: JSON.stringify({ email, provider: 'sim' }),
    });
    expect(r.status).toBe(200);
    const cookie = r.headers.get('set-cookie')!.split(';')[0]!;
    const { authorizeUrl } = (await r.json()) as { authorizeUrl: string };
    const consent = await (await fetch(authorizeUrl)).text();
    const tx = /name="tx" value="([^"]+)"/.exec(consent)![1]!;
    const answer = await fetch(new URL(authorizeUrl).origin + new URL(authorizeUrl).pathname, {
      ...form({ tx, login: email, action: 'allow' }),
    });
    expect(answer.status).toBe(302);
    return { callback: new URL(answer.headers.get('location')!), cookie };
  }

  it('no flow starts without the admin token or a link', async () => {
    const body = JSON.stringify({ email: 'x@example.com', provider: 'sim' });
    expect(
      (await env.proxy.http('/admin/onboarding/start', { method: 'POST', headers: json, body })).status,
    ).toBe(401);
    const wrong = { authorization: 'Bearer not-the-token' };
    expect(
      (
        await env.proxy.http('/admin/onboarding/start', {
          method: 'POST',
          headers: { ...json, ...wrong },
          body,
        })
      ).status,
    ).toBe(401);
    expect(
      (
        await env.proxy.http('/admin/onboarding-links', {
          method: 'POST',
          headers: json,
          body: '{"provider":"sim"}',
        })
      ).status,
    ).toBe(401);
    const noLink = await env.proxy.http('/onboard/start', form({ email: 'x@example.com' }));
    expect(noLink.status).toBe(400);
    expect(await noLink.text()).toContain('data-problem="link_invalid"');
    expect((await env.proxy.http('/onboard')).status).toBe(400);
  });

  it('a callback with a wrong state is refused and exchanges nothing; the right one then completes', async () => {
    const { callback, cookie } = await consentedCallback('state@example.com');
    const state = callback.searchParams.get('state')!;
    const wrong = new URL(callback);
    wrong.searchParams.set('state', state.slice(0, -1) + (state.endsWith('A') ? 'B' : 'A'));
    const r = await env.proxy.http(wrong.pathname + wrong.search, { headers: { cookie } });
    expect(r.status).toBe(400);
    expect(await r.text()).toContain('data-problem="state_unknown"');
    const none = await env.proxy.http(`/oauth/callback?code=${callback.searchParams.get('code')}`);
    expect(none.status).toBe(400);
    // the code was not used up by the refused attempts: the real callback redeems it
    const ok = await env.proxy.http(callback.pathname + callback.search, { headers: { cookie } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('id="password"');
  });

  it('a callback from a browser without the flow cookie is refused and nothing is stored', async () => {
    const { callback } = await consentedCallback('elsewhere@example.com');
    const r = await env.proxy.http(callback.pathname + callback.search);
    expect(r.status).toBe(403);
    expect(await r.text()).toContain('data-problem="browser_mismatch"');
    expect(fs.readFileSync(env.accountsFile, 'utf8')).not.toContain('elsewhere@example.com');
  });

  it('bad link requests are 400 naming the field', async () => {
    const post = (b: unknown) =>
      env.proxy.http('/admin/onboarding-links', {
        method: 'POST',
        headers: { ...json, ...bearer },
        body: JSON.stringify(b),
      });
    for (const [b, field] of [
      [{ provider: 'nope' }, 'provider'],
      [{ provider: 'sim', expiresIn: '31d' }, 'expiresIn'],
      [{ provider: 'sim', email: 'not-an-email' }, 'email'],
      [{ provider: 'sim', extra: 1 }, 'extra'],
    ] as const) {
      const r = await post(b);
      expect(r.status, JSON.stringify(b)).toBe(400);
      expect(((await r.json()) as any).issues[0].path).toBe(field);
    }
  });

  it('without http.publicUrl the web flow is off, and the status page says how to turn it on', async () => {
    const off = await procs.proxy({
      http: { adminToken: ADMIN },
      providers: {
        sim: simProvider(env.sim, {
          authorizeUrl: `http://127.0.0.1:${env.sim.httpPort}/authorize`,
          scope: SCOPE,
        }),
      },
      accounts: [],
    });
    const page = await off.http('/', { headers: bearer });
    expect(await page.text()).toMatch(/id="onboarding-off"[^>]*>[^<]*set http\.publicUrl/);
    const link = await off.http('/admin/onboarding-links', {
      method: 'POST',
      headers: { ...json, ...bearer },
      body: JSON.stringify({ provider: 'sim' }),
    });
    expect(link.status).toBe(404);
    expect((await off.http('/oauth/callback?state=x&code=y')).status).toBe(404);
  });
});
