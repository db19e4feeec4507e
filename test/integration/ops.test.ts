// Operations end to end in the real process: admin API against the accounts file, secrets never in
// the logs, metric values after a known run, health endpoints, an unusable source address.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { hashPassword } from '../../src/accounts/password.js';
import { startProxy, startSim, simProvider, type ProxyProc, type SimProc } from '../helpers/procs.js';
import { TestClient, makeMessage } from '../helpers/smtp-client.js';

// obviously fake values; the test greps the proxy's whole output for each of them
const PW = 'client-password-for-tests-only';
const ADMIN = 'test-admin-token-not-secret';
const CLIENT_SECRET = 'fake-client-secret-for-tests';
const ALICE = 'alice@example.com';
const DEDICATED = 'dedicated@example.com';
const rt = (email: string, tag = 'ops') => `simrt.${email}.${tag}`;

describe('operations', () => {
  let sim: SimProc;
  let proxy: ProxyProc;
  let accountsFile: string;
  let hash: string;
  const auth = { authorization: `Bearer ${ADMIN}` };
  const json = { ...auth, 'content-type': 'application/json' };

  beforeAll(async () => {
    sim = await startSim(['--style', 'google']);
    hash = await hashPassword(PW);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-ops-'));
    accountsFile = path.join(dir, 'accounts.yaml');
    const account = (email: string, extra: Record<string, unknown> = {}) => ({
      email,
      provider: 'sim',
      clientId: 'ops-client',
      clientSecret: CLIENT_SECRET,
      refreshToken: rt(email),
      passwordHash: hash,
      ...extra,
    });
    fs.writeFileSync(
      accountsFile,
      YAML.stringify({ accounts: [account(ALICE), account(DEDICATED, { sourceAddress: '192.0.2.10' })] }),
    );
    proxy = await startProxy(
      {
        providers: { sim: simProvider(sim) },
        accountsFile: './accounts.yaml',
        http: { adminToken: ADMIN },
        log: { level: 'info', messages: true },
      },
      { dir },
    );
  });
  afterAll(async () => {
    await proxy?.stop();
    await sim?.stop();
  });

  async function send(user: string, password = PW) {
    const c = new TestClient({ port: proxy.smtpPort });
    await c.connect();
    const login = await c.login(user, password);
    if (!login.ok) {
      c.close();
      return { login, sent: undefined, id: undefined };
    }
    const m = makeMessage(user, 'someone@example.net');
    const sent = await c.send(user, 'someone@example.net', m.raw);
    c.close();
    return { login, sent, id: m.id };
  }

  it('health endpoints answer; admin API and status page need the token', async () => {
    expect((await proxy.http('/healthz')).status).toBe(200);
    expect((await proxy.http('/readyz')).status).toBe(200);
    expect((await proxy.http('/admin/accounts')).status).toBe(401);
    expect((await proxy.http('/admin/accounts', { headers: { authorization: 'Bearer wrong' } })).status).toBe(
      401,
    );
    expect((await proxy.http('/admin/accounts', { headers: auth })).status).toBe(200);
    const page = await proxy.http('/', { headers: auth });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain(ALICE);
    expect(await (await proxy.http('/')).text()).not.toContain(ALICE);
  });

  it('lists accounts without secrets', async () => {
    const text = await (await proxy.http('/admin/accounts', { headers: auth })).text();
    const body = JSON.parse(text);
    expect(body.accounts.map((a: { email: string }) => a.email).sort()).toEqual([ALICE, DEDICATED]);
    for (const secret of [CLIENT_SECRET, rt(ALICE), hash, PW]) expect(text).not.toContain(secret);
  });

  it('counts exactly the messages of a known run in /metrics', async () => {
    const metric = async () => {
      const text = await (await proxy.http('/metrics')).text();
      const m = /^xoauth2_proxy_messages_total\{provider="sim",result="delivered"\} (\d+)/m.exec(text);
      return { text, delivered: m ? Number(m[1]) : 0 };
    };
    const before = (await metric()).delivered;
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await send(ALICE);
      expect(r.sent?.ok).toBe(true);
      ids.push(r.id!);
    }
    const { text, delivered } = await metric();
    expect(delivered - before).toBe(5);
    expect((await sim.stats()).messageIds).toEqual(expect.arrayContaining(ids));
    for (const name of [
      'smtp_connections_active',
      'smtp_connections_total',
      'auth_attempts_total',
      'messages_total',
      'message_duration_seconds_bucket',
      'message_bytes_total',
      'inflight_messages',
      'upstream_connections',
      'upstream_connects_total',
      'pool_wait_seconds_bucket',
      'token_refresh_total',
      'token_refresh_duration_seconds_bucket',
      'accounts',
      'config_reloads_total',
    ]) {
      expect(text).toMatch(new RegExp(`^xoauth2_proxy_${name}[{ ]`, 'm'));
    }
    expect(text).toMatch(/^process_resident_memory_bytes /m);
  });

  it('gives 451 to a mailbox whose sourceAddress is not on this host, and sends nothing upstream', async () => {
    const before = (await sim.stats()).messages;
    const r = await send(DEDICATED);
    expect(r.login.ok).toBe(true);
    expect(r.sent?.code).toBe(451);
    expect(r.sent?.response).toMatch(/451 4\.4\.1 .*192\.0\.2\.10/);
    expect((await sim.stats()).messages).toBe(before);
    expect((await send(ALICE)).sent?.ok).toBe(true);
  });

  it('adds a verified account that can send at once, without a restart', async () => {
    const bob = 'bob@example.com';
    const res = await proxy.http('/admin/accounts?verify=true', {
      method: 'POST',
      headers: json,
      body: JSON.stringify({
        email: bob,
        provider: 'sim',
        clientId: 'ops-client',
        refreshToken: rt(bob),
        passwordHash: hash,
      }),
    });
    expect(res.status).toBe(201);
    expect(YAML.parse(fs.readFileSync(accountsFile, 'utf8')).accounts.map((a: any) => a.email)).toContain(
      bob,
    );
    const r = await send(bob);
    expect(r.sent?.ok).toBe(true);
    expect((await sim.stats()).messageIds).toContain(r.id);
  });

  it('refuses bad input by field (400), duplicates (409) and a failed verification (422), changing nothing', async () => {
    const before = fs.readFileSync(accountsFile, 'utf8');
    const post = (body: unknown, verify = true) =>
      proxy.http(`/admin/accounts?verify=${verify}`, {
        method: 'POST',
        headers: json,
        body: JSON.stringify(body),
      });
    const bad = await post({
      email: 'carol@example.com',
      provider: 'gmial',
      clientId: 'x',
      refreshToken: 'y',
    });
    expect(bad.status).toBe(400);
    const badBody = (await bad.json()) as any;
    expect(badBody.issues.map((i: { path: string }) => i.path)).toContain('provider');
    const dup = await post({ email: ALICE, provider: 'sim', clientId: 'x', refreshToken: rt(ALICE) }, false);
    expect(dup.status).toBe(409);
    const unverified = await post({
      email: 'carol@example.com',
      provider: 'sim',
      clientId: 'x',
      refreshToken: 'not-a-token-the-simulator-issued',
    });
    expect(unverified.status).toBe(422);
    expect(((await unverified.json()) as any).error).toMatch(/invalid_grant/);
    expect(fs.readFileSync(accountsFile, 'utf8')).toBe(before);
  });

  it('loses no update when ten accounts are added at once', async () => {
    const emails = Array.from({ length: 10 }, (_, i) => `many${i}@example.com`);
    const statuses = await Promise.all(
      emails.map((email) =>
        proxy
          .http('/admin/accounts?verify=false', {
            method: 'POST',
            headers: json,
            body: JSON.stringify({ email, provider: 'sim', clientId: 'x', refreshToken: rt(email) }),
          })
          .then((r) => r.status),
      ),
    );
    expect(statuses).toEqual(emails.map(() => 201));
    const inFile = YAML.parse(fs.readFileSync(accountsFile, 'utf8')).accounts.map((a: any) => a.email);
    expect(inFile).toEqual(expect.arrayContaining(emails));
    const listed = (
      (await (await proxy.http('/admin/accounts', { headers: auth })).json()) as any
    ).accounts.map((a: any) => a.email);
    expect(listed).toEqual(expect.arrayContaining(emails));
  });

  it('deletes an account (204), which then cannot authenticate; unknown gives 404; reload works', async () => {
    const del = await proxy.http(`/admin/accounts/${encodeURIComponent('bob@example.com')}`, {
      method: 'DELETE',
      headers: auth,
    });
    expect(del.status).toBe(204);
    const r = await send('bob@example.com');
    expect(r.login.ok).toBe(false);
    expect(r.login.code).toBe(535);
    const missing = await proxy.http('/admin/accounts/nobody%40example.com', {
      method: 'DELETE',
      headers: auth,
    });
    expect(missing.status).toBe(404);
    const reload = await proxy.http('/admin/reload', { method: 'POST', headers: auth });
    expect(reload.status).toBe(200);
  });

  it('never writes a secret to its output, and logs one line per message', async () => {
    await send(ALICE, 'a-wrong-password-for-tests'); // a failed AUTH is logged too
    const out = proxy.output();
    for (const secret of [
      PW,
      'a-wrong-password-for-tests',
      ADMIN,
      CLIENT_SECRET,
      rt(ALICE),
      rt('bob@example.com'),
      hash,
    ]) {
      expect(out).not.toContain(secret);
    }
    // access tokens the simulator issued look like its own format; none may appear
    expect(out).not.toMatch(/simat\./);
    const lines = out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l));
    const messages = lines.filter(
      (l) => l.msg === 'message' && l.account === ALICE && l.result === 'delivered',
    );
    expect(messages.length).toBeGreaterThanOrEqual(6);
    expect(messages[0]).toMatchObject({ rcpts: 1, reply: '250 2.0.0' });
    expect(messages[0].txid).toEqual(expect.any(String));
    expect(messages[0].size).toBeGreaterThan(0);
    expect(messages[0].upstream).toMatch(/^250/);
    expect(messages[0].ms).toEqual(expect.any(Number));
  });
});

describe('admin API with inline accounts', () => {
  let sim: SimProc;
  let proxy: ProxyProc;
  beforeAll(async () => {
    sim = await startSim();
    proxy = await startProxy({
      providers: { sim: simProvider(sim) },
      http: { adminToken: ADMIN },
      accounts: [{ email: ALICE, provider: 'sim', clientId: 'x', refreshToken: rt(ALICE), password: PW }],
    });
  });
  afterAll(async () => {
    await proxy?.stop();
    await sim?.stop();
  });

  it('says changes need an accounts file, and keeps running', async () => {
    const res = await proxy.http('/admin/accounts?verify=false', {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        email: 'bob@example.com',
        provider: 'sim',
        clientId: 'x',
        refreshToken: rt('bob'),
      }),
    });
    expect(res.status).toBe(500);
    expect(((await res.json()) as any).error).toMatch(/accountsFile/);
    expect((await proxy.http('/healthz')).status).toBe(200);
  });
});
