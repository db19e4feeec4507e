// `xoauth2-proxy accounts authorize` end to end: the command runs as a child process beside a running
// proxy, both on the simulator over real sockets. The authorization code with PKCE through the
// consent page in headless Chromium (the test opens the URL the command prints), `--no-browser`
// with the redirect URL pasted back, a wrong state and a replayed code refused, the device flow
// with slow_down, Google's refusal of the device flow; after each authorization mail flows through
// the mailbox without a restart of the proxy, the refresh token is nowhere in plain text on disk,
// and re-authorizing a mailbox in needs_reauth clears that state at once.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/tools/harness/ports.js';
import { openStateStore } from '../../src/state/store.js';
import { silentLogger } from '../../src/shared/log.js';
import { requireChromium, useBrowser } from '../helpers/browser.js';
import { approveDeviceCode, consentByForm, startAuthorize, URL_LINE } from '../helpers/authorize-cli.js';
import type { ProxyProc, SimProc } from '../helpers/procs.js';
import { loginAndSend } from '../helpers/smtp-client.js';
import { useProcs } from '../helpers/use-procs.js';
import { sleep, until, waitFor } from '../helpers/wait.js';

const haveChromium = requireChromium('the Chromium part of onboarding-cli.test.ts');

const ADMIN = 'test-admin-token-not-secret';
const SECRET = 'test-secret-key-0123456789-abcdefghijklmnop';
const PW = 'client-password-for-tests-only';
const CLIENT = 'onboard-app';
const CLIENT_SECRET = 'onboard-secret-not-real';

/** One message as `email`: the login's refusal or the reply to the message. */
const send = async (proxy: ProxyProc, email: string) => (await loginAndSend(proxy.smtpPort, email, PW)).reply;

async function adminAccount(proxy: ProxyProc, email: string): Promise<any> {
  const r = await proxy.http('/admin/accounts', { headers: { authorization: `Bearer ${ADMIN}` } });
  return ((await r.json()) as { accounts: any[] }).accounts.find((a) => a.email === email);
}

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? filesUnder(p) : [p];
  });
}

/** The refresh token the state store holds for `email`, read with the proxy's key (a second handle). */
function storedRefreshToken(dir: string, email: string): string | undefined {
  const store = openStateStore({ dir, secretKey: SECRET, log: silentLogger });
  try {
    return store.getAuthorizedRefreshToken(email);
  } finally {
    store.close();
  }
}

function accountsInFile(file: string): Record<string, unknown>[] {
  return (YAML.parse(fs.readFileSync(file, 'utf8')) as { accounts: Record<string, unknown>[] }).accounts;
}

/**
 * The owner revokes the app: every refresh token of the user is dead (rotated ones included), and
 * the access tokens in use stop validating, so the proxy's next refresh meets invalid_grant.
 */
async function revokeGrant(sim: SimProc, email: string): Promise<void> {
  await sim.control('/control/revoke', { grantsOf: email });
  await sim.control('/control/faults', { expireEarlySec: 1 });
  await sleep(1100);
}

describe('accounts authorize: authorization code + PKCE (google style)', () => {
  const procs = useProcs('all');
  let sim: SimProc;
  let proxy: ProxyProc;
  let dir: string;
  let cfg: string;
  let accountsFile: string;
  let stateDir: string;
  const browser = useBrowser();

  beforeAll(async () => {
    // a registered confidential client, and refresh tokens that rotate on every refresh
    sim = await procs.sim(['--client', `${CLIENT}:${CLIENT_SECRET}`, '--rotate-refresh-tokens']);
    const base = `http://127.0.0.1:${sim.httpPort}`;
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-onboard-'));
    accountsFile = path.join(dir, 'accounts.yaml');
    stateDir = path.join(dir, 'data');
    // one mailbox from before onboarding existed: its refresh token in the file, as the Python proxy had it
    fs.writeFileSync(
      accountsFile,
      YAML.stringify({
        accounts: [
          {
            email: 'legacy@example.com',
            provider: 'google',
            refreshToken: 'simrt.legacy@example.com.t',
            password: PW,
          },
        ],
      }),
      { mode: 0o600 },
    );
    proxy = await procs.proxy(
      {
        http: { adminToken: ADMIN },
        state: { dir: stateDir, secretKey: SECRET },
        // the built-in google entry keeps Google's manners (access_type=offline, prompt=consent)
        providers: {
          google: {
            tokenUrl: sim.tokenUrl,
            authorizeUrl: `${base}/o/oauth2/v2/auth`,
            oauthClient: { clientId: CLIENT, clientSecret: CLIENT_SECRET },
            smtp: { host: '127.0.0.1', port: sim.smtpPort, security: 'none' },
            // every message authenticates anew (no pooled or spare connection outlives a second),
            // so a revoked grant shows at the next message
            maxMessagesPerConnection: 1,
            connectionIdleTimeout: '300ms',
          },
        },
        accountsFile: './accounts.yaml',
      },
      { dir },
    );
    cfg = proxy.configFile;
  });

  it.skipIf(!haveChromium)(
    'a new mailbox through the consent page in Chromium: authorized, mail flows with no restart, and its refresh token is nowhere in plain text on disk',
    async () => {
      const email = 'new@example.com';
      const run = startAuthorize(email, cfg, ['--provider', 'google', '--password-stdin']);
      run.type(PW);
      const url = await run.line(URL_LINE);
      // PKCE S256 and a state, as RFC 7636 / RFC 6749 want
      const q = new URL(url).searchParams;
      expect(q.get('code_challenge_method')).toBe('S256');
      expect(q.get('state')).toMatch(/^[\w-]{43}$/);
      expect(new URL(q.get('redirect_uri')!).hostname).toBe('127.0.0.1');
      const page = await browser().newPage();
      await page.goto(url);
      expect(await page.inputValue('#login')).toBe(email);
      await Promise.all([page.waitForURL(/127\.0\.0\.1:\d+\/callback\?/), page.click('#allow')]);
      expect(await page.textContent('body')).toMatch(/Authorization received/);
      await page.close();
      expect(await run.exited).toBe(0);
      expect(run.stdout()).toContain(`authorized ${email}`);

      // the running proxy took the account (file watcher) and its token (state store) by itself
      await waitFor(
        'the new account in the admin API',
        () => adminAccount(proxy, email),
        (a) => a?.state === 'ok',
        10_000,
      );
      expect((await adminAccount(proxy, email)).auth).toBe('refresh token in store');
      const r = await send(proxy, email);
      expect(r.ok, r.response).toBe(true);
      expect((await sim.stats()).perUser[email]).toBe(1);

      const entry = accountsInFile(accountsFile).find((a) => a.email === email)!;
      expect(entry).toEqual({
        email,
        provider: 'google',
        passwordHash: expect.stringMatching(/^\$scrypt\$/),
      });
      const token = storedRefreshToken(stateDir, email)!;
      expect(token).toMatch(/^simrt\./);
      for (const f of [cfg, accountsFile, ...filesUnder(stateDir)]) {
        expect(fs.readFileSync(f).includes(token), `${f} holds the refresh token in plain text`).toBe(false);
        expect(fs.readFileSync(f).includes(`simrt.${email}`), `${f} holds a refresh token of ${email}`).toBe(
          false,
        );
      }
    },
  );

  it('a wrong state at the loopback redirect is refused before any code exchange, and nothing is stored', async () => {
    const email = 'wrong-state@example.com';
    const issuedBefore = (await sim.stats()).oauth?.issued?.authorization_code ?? 0;
    const run = startAuthorize(email, cfg, ['--provider', 'google', '--password-stdin']);
    run.type(PW);
    const url = await run.line(URL_LINE);
    const redirectUri = new URL(url).searchParams.get('redirect_uri')!;
    // a forged redirect (another tab, an attacker's link) with a code and someone else's state
    const forged = await fetch(`${redirectUri}?code=forged-code&state=not-the-state`);
    expect(forged.status).toBe(400);
    expect(await run.exited).toBe(1);
    expect(run.stderr()).toMatch(/not authorized: the redirect has a different state/);
    expect((await sim.stats()).oauth?.issued?.authorization_code ?? 0).toBe(issuedBefore);
    expect(accountsInFile(accountsFile).map((a) => a.email)).not.toContain(email);
    expect(storedRefreshToken(stateDir, email)).toBeUndefined();
  });

  it('--no-browser: the pasted redirect URL completes it; a pasted URL with a wrong state or a replayed code is refused', async () => {
    const email = 'paste@example.com';
    const port = await freePort();
    const run = startAuthorize(email, cfg, [
      '--provider',
      'google',
      '--no-browser',
      '--password-stdin',
      '--redirect-port',
      String(port),
    ]);
    run.type(PW);
    const url = await run.line(URL_LINE);
    expect(new URL(url).searchParams.get('redirect_uri')).toBe(`http://127.0.0.1:${port}/callback`);
    // the browser is elsewhere: its final redirect goes nowhere, the user pastes its address
    const landed = await consentByForm(url, email);
    run.type('this is not a URL'); // a slip: said, and asked again
    run.type(landed);
    expect(await run.exited).toBe(0);
    expect(run.stderr()).toMatch(/the pasted text is not a URL/);
    expect(run.stdout()).toContain(`authorized ${email}`);
    await waitFor(
      'the pasted account',
      () => adminAccount(proxy, email),
      (a) => a?.state === 'ok',
      10_000,
    );
    expect((await send(proxy, email)).ok).toBe(true);

    // again (the account exists now: no password asked), with the first code and the new state
    const again = startAuthorize(email, cfg, ['--no-browser', '--redirect-port', String(port)]);
    const url2 = await again.line(URL_LINE);
    const state2 = new URL(url2).searchParams.get('state')!;
    const code1 = new URL(landed).searchParams.get('code')!;
    again.type(`http://127.0.0.1:${port}/callback?code=${encodeURIComponent(code1)}&state=${state2}`);
    expect(await again.exited).toBe(1);
    expect(again.stderr()).toMatch(/not authorized: invalid_grant/);
    expect((await sim.stats()).oauth.refused.code_replayed).toBeGreaterThanOrEqual(1);

    // and a pasted URL whose state is not this run's
    const third = startAuthorize(email, cfg, ['--no-browser', '--redirect-port', String(port)]);
    await third.line(URL_LINE);
    third.type(`http://127.0.0.1:${port}/callback?code=whatever&state=stale-tab`);
    expect(await third.exited).toBe(1);
    expect(third.stderr()).toMatch(/different state/);
  });

  it('re-authorizing a mailbox in needs_reauth clears it at once, with no restart (refresh token in the file, then in the store)', async () => {
    const email = 'legacy@example.com';
    expect((await send(proxy, email)).ok).toBe(true);
    expect((await adminAccount(proxy, email)).auth).toBe('refresh token in file');

    await revokeGrant(sim, email);
    const refused = await send(proxy, email);
    await sim.control('/control/faults', { expireEarlySec: 0 });
    expect(refused.ok).toBe(false);
    expect(refused.response).toMatch(
      /^451 4\.7\.0 Mailbox legacy@example\.com needs re-authorization.*accounts authorize legacy@example\.com/,
    );
    expect((await adminAccount(proxy, email)).state).toBe('needs_reauth');

    const run = startAuthorize(email, cfg, ['--no-browser']);
    run.type(await consentByForm(await run.line(URL_LINE), email));
    expect(await run.exited).toBe(0);
    expect(run.stdout()).toMatch(/the plain refreshToken was removed from/);
    expect(accountsInFile(accountsFile).find((a) => a.email === email)).not.toHaveProperty('refreshToken');
    await waitFor(
      'legacy re-authorized',
      () => adminAccount(proxy, email),
      (a) => a?.state === 'ok',
      10_000,
    );
    expect((await adminAccount(proxy, email)).auth).toBe('refresh token in store');
    expect((await send(proxy, email)).ok).toBe(true);

    // now its token is in the store: revoke again; re-authorizing changes no file, the proxy is told
    await revokeGrant(sim, email);
    expect((await send(proxy, email)).response).toMatch(/^451 4\.7\.0 .*needs re-authorization/);
    await sim.control('/control/faults', { expireEarlySec: 0 });
    const fileBefore = fs.readFileSync(accountsFile, 'utf8');
    const second = startAuthorize(email, cfg, ['--no-browser']);
    second.type(await consentByForm(await second.line(URL_LINE), email));
    expect(await second.exited).toBe(0);
    expect(fs.readFileSync(accountsFile, 'utf8')).toBe(fileBefore);
    await waitFor(
      'the new grant adopted',
      () => adminAccount(proxy, email),
      (a) => a?.state !== 'needs_reauth',
      5_000,
    );
    expect((await send(proxy, email)).ok).toBe(true);
    // adopted through the state dir's signal: no file changed and nothing reloaded (the proxy's log
    // leaves in batches, at most 100 ms late)
    const adopted = /"email":"legacy@example\.com"[^\n]*new authorization in the state store/;
    await until(() => adopted.test(proxy.output()), 2000, 'the adoption logged');
  });

  it('--device with Google says that its device endpoint refuses Gmail scopes, before asking anything', async () => {
    const run = startAuthorize('tv@example.com', cfg, ['--provider', 'google', '--device']);
    expect(await run.exited).toBe(1);
    expect(run.stderr()).toMatch(/Google's device flow does not allow Gmail scopes/);
    expect(run.stdout()).toBe('');
  });
});

describe('accounts authorize --device (microsoft style, RFC 8628)', () => {
  const procs = useProcs('all');
  let sim: SimProc;
  let proxy: ProxyProc;

  beforeAll(async () => {
    sim = await procs.sim(['--style', 'microsoft', '--client', 'device-app', '--device-interval', '50']);
    const base = `http://127.0.0.1:${sim.httpPort}`;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-onboard-dev-'));
    fs.writeFileSync(path.join(dir, 'accounts.yaml'), 'accounts: []\n', { mode: 0o600 });
    proxy = await procs.proxy(
      {
        http: { adminToken: ADMIN },
        providers: {
          microsoft: {
            tokenUrl: `${base}/{tenant}/oauth2/v2.0/token`,
            authorizeUrl: `${base}/{tenant}/oauth2/v2.0/authorize`,
            deviceAuthorizationUrl: `${base}/{tenant}/oauth2/v2.0/devicecode`,
            tenant: 'contoso.example',
            oauthClient: { clientId: 'device-app' },
            smtp: { host: '127.0.0.1', port: sim.smtpPort, security: 'none' },
            messagesPerMinute: 0,
          },
        },
        accountsFile: './accounts.yaml',
      },
      { dir },
    );
  });

  it('shows the code, honours slow_down, and mail flows through the mailbox afterwards', async () => {
    const email = 'device@contoso.example';
    const run = startAuthorize(email, proxy.configFile, [
      '--provider',
      'microsoft',
      '--device',
      '--password-stdin',
    ]);
    run.type(PW);
    const verification = await run.line(/^http\S*\/devicelogin$/);
    await run.line(/^and enter this code/);
    const lines = run.stdout().split('\n');
    const userCode = lines[lines.findIndex((l) => l.startsWith('and enter this code')) + 1]!;
    expect(userCode).toMatch(/^\S{6,}$/);
    await sim.control('/control/faults', { slowDownNext: 1 });
    await waitFor(
      'a slow_down answered',
      async () => (await sim.stats()).oauth.refused.slow_down ?? 0,
      (n) => n >= 1,
    );
    expect(await approveDeviceCode(verification, userCode, email)).toBe('approved');
    expect(await run.exited).toBe(0);
    // RFC 8628 section 3.5: slow_down adds 5 seconds to the interval
    expect(run.stderr()).toMatch(/poll less often: every 5\.05 s now/);
    expect(run.stdout()).toContain(`authorized ${email}`);
    await waitFor(
      'the device account',
      () => adminAccount(proxy, email),
      (a) => a?.state === 'ok',
      10_000,
    );
    const r = await send(proxy, email);
    expect(r.ok, r.response).toBe(true);
  }, 30_000);
});
