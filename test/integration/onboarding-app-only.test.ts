// App-only onboarding end to end against the simulator over real sockets: accounts of a provider
// with `auth:` need only an email and a password. Microsoft client credentials (a client secret, or
// a certificate as private_key_jwt) and a Google service account with domain-wide delegation; a
// mailbox the administrator did not grant gets 451 4.7.0 naming what to grant, and works once it is
// granted (after a reload, no restart); 1,000-mailbox onboarding is a CSV of emails and passwords.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { CLI, type ProxyProc, type SimProc } from '../helpers/procs.js';
import { loginAndSend } from '../helpers/smtp-client.js';
import { useProcs } from '../helpers/use-procs.js';
import { waitFor } from '../helpers/wait.js';

const ADMIN = 'test-admin-token-not-secret';
const PW = 'client-password-for-tests-only';

/** One message as `email`: the login's refusal or the reply to the message. */
const send = async (proxy: ProxyProc, email: string, pw = PW) =>
  (await loginAndSend(proxy.smtpPort, email, pw)).reply;

async function adminAccount(proxy: ProxyProc, email: string): Promise<any> {
  const r = await proxy.http('/admin/accounts', { headers: { authorization: `Bearer ${ADMIN}` } });
  return ((await r.json()) as { accounts: any[] }).accounts.find((a) => a.email === email);
}

const reload = (proxy: ProxyProc) =>
  proxy.http('/admin/reload', { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });

/** `xoauth2-proxy ARGS...`: exit code and output. */
function cli(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  return new Promise((r) => child.once('exit', (code) => r({ code, out, err })));
}

async function postJson(sim: SimProc, p: string, body: unknown): Promise<any> {
  const r = await fetch(`http://127.0.0.1:${sim.httpPort}${p}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${p}: ${r.status} ${await r.text()}`);
  return r.json();
}

describe('Microsoft app-only (client credentials)', () => {
  const procs = useProcs('all');
  let sim: SimProc;
  let proxy: ProxyProc;
  let dir: string;

  beforeAll(async () => {
    sim = await procs.sim([
      '--style',
      'microsoft',
      '--app',
      'contoso.example/smtp-app:app-secret-not-real',
      '--permission',
      'smtp-app=granted@contoso.example',
    ]);
    // a second app that authenticates with a certificate (private_key_jwt)
    const certApp = await postJson(sim, '/control/clients', {
      clientId: 'cert-app',
      tenant: 'contoso.example',
      generateCertificate: true,
      mailboxes: ['cert@contoso.example'],
    });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-app-only-'));
    fs.writeFileSync(path.join(dir, 'app.crt'), certApp.certificate);
    fs.writeFileSync(path.join(dir, 'app.key'), certApp.privateKey, { mode: 0o600 });
    const accounts = ['granted@contoso.example', 'denied@contoso.example'].map((email) => ({
      email,
      provider: 'm365',
      password: PW,
    }));
    accounts.push({ email: 'cert@contoso.example', provider: 'm365-cert', password: PW });
    fs.writeFileSync(path.join(dir, 'accounts.yaml'), YAML.stringify({ accounts }), { mode: 0o600 });
    const base = `http://127.0.0.1:${sim.httpPort}`;
    const smtp = { host: '127.0.0.1', port: sim.smtpPort, security: 'none' };
    proxy = await procs.proxy(
      {
        http: { adminToken: ADMIN },
        providers: {
          m365: {
            tokenUrl: `${base}/{tenant}/oauth2/v2.0/token`,
            smtp,
            auth: {
              type: 'client_credentials',
              tenant: 'contoso.example',
              clientId: 'smtp-app',
              clientSecret: 'app-secret-not-real',
            },
          },
          'm365-cert': {
            tokenUrl: `${base}/{tenant}/oauth2/v2.0/token`,
            smtp,
            auth: {
              type: 'client_credentials',
              tenant: 'contoso.example',
              clientId: 'cert-app',
              certificate: './app.crt',
              privateKey: './app.key',
            },
          },
        },
        accountsFile: './accounts.yaml',
      },
      { dir },
    );
  });

  it('a granted mailbox sends with a client secret; XOAUTH2 user= is the mailbox', async () => {
    const r = await send(proxy, 'granted@contoso.example');
    expect(r.ok, r.response).toBe(true);
    const a = await adminAccount(proxy, 'granted@contoso.example');
    expect(a).toMatchObject({ auth: 'app-only', state: 'ok' });
    const stats = await sim.stats();
    expect(stats.perUser['granted@contoso.example']).toBe(1);
    expect(stats.oauth.issued.client_credentials).toBeGreaterThanOrEqual(1);
  });

  it('and with a certificate (private_key_jwt)', async () => {
    const r = await send(proxy, 'cert@contoso.example');
    expect(r.ok, r.response).toBe(true);
    expect((await adminAccount(proxy, 'cert@contoso.example')).auth).toBe('app-only');
  });

  it('a mailbox the app was not granted gets 451 4.7.0 naming the grant, fails fast, and works once granted (reload, no restart)', async () => {
    const email = 'denied@contoso.example';
    const r = await send(proxy, email);
    expect(r.ok).toBe(false);
    expect(r.response).toMatch(
      /^451 4\.7\.0 Mailbox denied@contoso\.example was refused by the upstream with an app-only token \(535 5\.7\.3 .*\): grant the app smtp-app access to the mailbox \(Add-MailboxPermission -Identity denied@contoso\.example .*\) and enable SMTP AUTH/,
    );
    expect(await adminAccount(proxy, email)).toMatchObject({ auth: 'app-only', state: 'needs_reauth' });
    // no new token request or connection per message while the refusal stands
    const before = (await sim.stats()).tokenRequests;
    const again = await send(proxy, email);
    expect(again.response).toMatch(/^451 4\.7\.0 .*Add-MailboxPermission/);
    expect((await sim.stats()).tokenRequests).toBe(before);

    await postJson(sim, '/control/permissions', { clientId: 'smtp-app', mailbox: email });
    expect((await reload(proxy)).status).toBe(200);
    const ok = await send(proxy, email);
    expect(ok.ok, ok.response).toBe(true);
  });

  it('a CSV of emails and passwords onboards app-only mailboxes (passwords stored hashed); the running proxy takes them', async () => {
    const csv = path.join(dir, 'users.csv');
    fs.writeFileSync(
      csv,
      'email,password\nnew1@contoso.example,pw-one-for-tests\nNew2@Contoso.example,pw-two-for-tests\n',
    );
    await postJson(sim, '/control/permissions', { clientId: 'smtp-app', mailbox: '@contoso.example' });
    const r = await cli(['accounts', 'import', csv, '--provider', 'm365', '-c', proxy.configFile]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('imported new1@contoso.example');
    expect(r.out).toContain('imported new2@contoso.example');
    const text = fs.readFileSync(path.join(dir, 'accounts.yaml'), 'utf8');
    expect(text).not.toContain('pw-one-for-tests');
    const stored = (YAML.parse(text) as { accounts: any[] }).accounts.find(
      (a) => a.email === 'new2@contoso.example',
    );
    expect(stored).toEqual({
      email: 'new2@contoso.example',
      provider: 'm365',
      passwordHash: expect.stringMatching(/^\$scrypt\$/),
    });
    await waitFor(
      'the imported accounts',
      () => adminAccount(proxy, 'new2@contoso.example'),
      (a) => a !== undefined,
      10_000,
    );
    const sent = await send(proxy, 'new2@contoso.example', 'pw-two-for-tests');
    expect(sent.ok, sent.response).toBe(true);
  });
});

describe('Google service account with domain-wide delegation', () => {
  const procs = useProcs('all');
  let sim: SimProc;
  let proxy: ProxyProc;
  let dir: string;
  const SA = 'relay@proxy-project.iam.gserviceaccount.com';

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-sa-'));
    const keyFile = path.join(dir, 'sa-key.json');
    sim = await procs.sim([
      '--service-account',
      `${SA}=${keyFile}`,
      '--permission',
      `${SA}=granted@example.com`,
    ]);
    fs.writeFileSync(
      path.join(dir, 'accounts.yaml'),
      YAML.stringify({
        accounts: ['granted@example.com', 'other@example.com'].map((email) => ({
          email,
          provider: 'google',
          password: PW,
        })),
      }),
      { mode: 0o600 },
    );
    proxy = await procs.proxy(
      {
        http: { adminToken: ADMIN },
        providers: {
          google: {
            tokenUrl: sim.tokenUrl,
            smtp: { host: '127.0.0.1', port: sim.smtpPort, security: 'none' },
            auth: { type: 'service_account', keyFile: './sa-key.json' },
          },
        },
        accountsFile: './accounts.yaml',
      },
      { dir },
    );
  });

  it('a delegated mailbox sends (JWT bearer, sub = the mailbox)', async () => {
    const r = await send(proxy, 'granted@example.com');
    expect(r.ok, r.response).toBe(true);
    expect(await adminAccount(proxy, 'granted@example.com')).toMatchObject({
      auth: 'service account',
      state: 'ok',
    });
    expect(
      (await sim.stats()).oauth.issued['urn:ietf:params:oauth:grant-type:jwt-bearer'],
    ).toBeGreaterThanOrEqual(1);
  });

  it('a mailbox outside the delegation gets 451 4.7.0 naming the domain-wide delegation to grant', async () => {
    const r = await send(proxy, 'other@example.com');
    expect(r.ok).toBe(false);
    expect(r.response).toMatch(
      /^451 4\.7\.0 Mailbox other@example\.com cannot get an access token \(unauthorized_client\): grant domain-wide delegation for client id \d+ with scope https:\/\/mail\.google\.com\//,
    );
    expect(await adminAccount(proxy, 'other@example.com')).toMatchObject({ state: 'needs_reauth' });
  });

  it('check names the bad field of a key file that is not a service account key', async () => {
    fs.writeFileSync(
      path.join(dir, 'user-cred.json'),
      JSON.stringify({ type: 'authorized_user', client_id: 'x' }),
    );
    const cfg = path.join(dir, 'bad.yaml');
    fs.writeFileSync(
      cfg,
      YAML.stringify({
        providers: { google: { auth: { type: 'service_account', keyFile: './user-cred.json' } } },
      }),
    );
    const r = await cli(['check', '-c', cfg]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      /providers\.google\.auth\.keyFile: .*user-cred\.json: type: "authorized_user" is a user credential/,
    );
  });
});
