// Operations end to end in the real process (dist/cli.js serve): the admin API against an accounts
// file, secrets never in the output, one log line per message, exact metric values after a known
// run, health endpoints and the status page, an unusable dedicated source address.
//
// The tests of the first describe share one simulator and one proxy and run in order: each one
// builds on the accounts and the traffic of the ones before it (the ledger below counts what was
// sent, so the output and metrics checks at the end are exact).
import { beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { hashPassword } from '../../src/accounts/password.js';
import { simRefreshToken } from '../../src/tools/sim/index.js';
import { simProvider, type ProxyProc, type SimProc } from '../helpers/procs.js';
import { simAccount } from '../helpers/sim-accounts.js';
import { loginAndSend } from '../helpers/smtp-client.js';
import { useProcs } from '../helpers/use-procs.js';
import { metricValue, waitFor } from '../helpers/wait.js';

// obviously fake values; the test greps the proxy's whole output for each of them
const PW = 'client-password-for-tests-only';
const WRONG_PW = 'a-wrong-password-for-tests';
const ADMIN = 'test-admin-token-not-secret';
const CLIENT_SECRET = 'fake-client-secret-for-tests';
const STATE_KEY = 'test-state-key-not-secret-0123456789abcdef';
const ALICE = 'alice@example.com';
const DEDICATED = 'dedicated@example.com';
const BOB = 'bob@example.com';
const CAROL = 'carol@example.com';
const UNUSABLE_SOURCE = '192.0.2.10'; // TEST-NET-1: never on this host
/** a refresh token the simulator accepts */
const rt = (email: string, tag = 'ops') => simRefreshToken(email, tag);
/** a refresh token the simulator rejects (not in its format) */
const BOGUS_RT = 'not-a-refresh-token-the-simulator-issued';
/** secrets posted as unquoted numbers (a numeric PIN is common): refused, and never echoed to the log */
const NUMERIC_PW = 86753090412;
const NUMERIC_SECRET = 27182818284;
const NUMERIC_RT = 31415926535;

interface AccountJson {
  email: string;
  provider: string;
  state: string;
  lastError?: string;
  sourceAddress?: string;
}
interface AdminError {
  error: string;
  code?: string;
  issues?: { path: string; message: string }[];
}
interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

const accountsIn = (file: string): string[] =>
  (YAML.parse(fs.readFileSync(file, 'utf8')).accounts as { email: string }[]).map((a) => a.email);

describe('operations against the running proxy (accounts file)', () => {
  const procs = useProcs('all');
  let sim: SimProc;
  let proxy: ProxyProc;
  let dir: string;
  let accountsFile: string;
  let hash: string;
  const auth = { authorization: `Bearer ${ADMIN}` };
  const json = { ...auth, 'content-type': 'application/json' };
  /** what this file sent through the proxy, for the exact checks of output and metrics */
  const ledger = { delivered: [] as { id: string; bytes: number; user: string }[], deferred: 0 };

  beforeAll(async () => {
    sim = await procs.sim(['--style', 'google']);
    hash = await hashPassword(PW);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-ops-'));
    accountsFile = path.join(dir, 'accounts.yaml');
    const account = (email: string, extra: Record<string, unknown> = {}) =>
      simAccount(email, {
        clientId: 'ops-client',
        clientSecret: CLIENT_SECRET,
        tag: 'ops',
        passwordHash: hash,
        ...extra,
      });
    fs.writeFileSync(
      accountsFile,
      YAML.stringify({
        accounts: [account(ALICE), account(DEDICATED, { sourceAddress: UNUSABLE_SOURCE })],
      }),
    );
    proxy = await procs.proxy(
      {
        providers: { sim: simProvider(sim) },
        accountsFile: './accounts.yaml',
        http: { adminToken: ADMIN },
        state: { secretKey: STATE_KEY },
        log: { level: 'info', messages: true },
      },
      { dir },
    );
  });

  /** AUTH PLAIN as `user`, then one message to one recipient if the login worked */
  async function send(user: string, password = PW) {
    const r = await loginAndSend(proxy.smtpPort, user, password, { to: 'someone@example.net' });
    const { sent } = r;
    if (sent?.ok) ledger.delivered.push({ id: r.id, bytes: Buffer.byteLength(r.raw), user });
    else if (sent?.code && sent.code >= 400 && sent.code < 500) ledger.deferred++;
    return r;
  }
  const metrics = async () => (await proxy.http('/metrics')).text();
  const listAccounts = async () =>
    ((await (await proxy.http('/admin/accounts', { headers: auth })).json()) as { accounts: AccountJson[] })
      .accounts;
  const post = (body: unknown, query = '') =>
    proxy.http(`/admin/accounts${query}`, {
      method: 'POST',
      headers: json,
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });

  it('answers /healthz and /readyz; the admin API and the status page need the admin token', async () => {
    expect((await proxy.http('/healthz')).status).toBe(200);
    expect((await proxy.http('/readyz')).status).toBe(200);

    expect((await proxy.http('/admin/accounts')).status).toBe(401);
    for (const authorization of ['Bearer wrong-token', `Bearer ${ADMIN}x`, ADMIN, `Basic ${ADMIN}`]) {
      const r = await proxy.http('/admin/accounts', { headers: { authorization } });
      expect(r.status, authorization).toBe(401);
    }
    // the change calls are refused before anything else happens
    expect((await proxy.http('/admin/reload', { method: 'POST' })).status).toBe(401);
    const unauthorizedAdd = await proxy.http('/admin/accounts', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer wrong-token' },
      body: JSON.stringify({
        email: 'mallory@example.com',
        provider: 'sim',
        clientId: 'x',
        refreshToken: 'y',
      }),
    });
    expect(unauthorizedAdd.status).toBe(401);
    expect(accountsIn(accountsFile)).toEqual([ALICE, DEDICATED]);
    expect((await proxy.http('/admin/accounts', { headers: auth })).status).toBe(200);

    const anonymous = await proxy.http('/');
    expect(anonymous.status).toBe(401);
    expect(await anonymous.text()).not.toContain(ALICE);
    expect((await proxy.http('/?token=wrong-token')).status).toBe(401);
    expect((await proxy.http('/', { headers: { authorization: 'Bearer wrong-token' } })).status).toBe(401);
    const page = await proxy.http('/', { headers: auth });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain(ALICE);
    for (const secret of [CLIENT_SECRET, rt(ALICE), hash, ADMIN]) expect(html).not.toContain(secret);
  });

  it('lists the accounts of the file without any secret', async () => {
    const res = await proxy.http('/admin/accounts', { headers: auth });
    const text = await res.text();
    const { accounts } = JSON.parse(text) as { accounts: AccountJson[] };
    expect(accounts.map((a) => a.email).sort()).toEqual([ALICE, DEDICATED]);
    for (const a of accounts) {
      expect(a.provider).toBe('sim');
      expect(a.state).toEqual(expect.any(String));
    }
    for (const secret of [CLIENT_SECRET, rt(ALICE), rt(DEDICATED), hash, PW, 'simat.']) {
      expect(text).not.toContain(secret);
    }
    expect(text).not.toMatch(/refreshToken|clientSecret|passwordHash|"password"/);
  });

  it('counts exactly the messages of a known run in /metrics, with every metric the README names', async () => {
    const N = 5;
    const before = await metrics();
    // nothing was sent yet: the counter is absent or 0, so the value after the run must be N
    expect(metricValue(before, 'xoauth2_proxy_messages_total', { result: 'delivered' }) ?? 0).toBe(0);
    for (let i = 0; i < N; i++) {
      const r = await send(ALICE);
      expect(r.sent?.ok, r.sent?.response).toBe(true);
    }
    const text = await metrics();
    expect(metricValue(text, 'xoauth2_proxy_messages_total', { provider: 'sim', result: 'delivered' })).toBe(
      N,
    );
    expect(metricValue(text, 'xoauth2_proxy_messages_total', { result: 'deferred' }) ?? 0).toBe(0);
    expect(metricValue(text, 'xoauth2_proxy_messages_total', { result: 'rejected' }) ?? 0).toBe(0);
    expect(metricValue(text, 'xoauth2_proxy_message_duration_seconds_count', { provider: 'sim' })).toBe(N);
    const bytes = ledger.delivered.reduce((n, m) => n + m.bytes, 0);
    expect(metricValue(text, 'xoauth2_proxy_message_bytes_total', { provider: 'sim' })).toBe(bytes);
    expect(metricValue(text, 'xoauth2_proxy_auth_attempts_total', { result: 'success' })).toBe(N);
    expect(metricValue(text, 'xoauth2_proxy_inflight_messages')).toBe(0);
    expect((await sim.stats()).messageIds).toEqual(expect.arrayContaining(ledger.delivered.map((m) => m.id)));

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
    // Node's default process metrics
    expect(text).toMatch(/^process_resident_memory_bytes /m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m);
    // no label takes a value from client input (docs/design.md, principle 6)
    expect(text).not.toContain(ALICE);
    expect(text).not.toContain('someone@example.net');
  });

  it('gives 451 naming the address to a mailbox whose sourceAddress is not on this host; nothing reaches the simulator from it', async () => {
    const statsBefore = await sim.stats();
    const r = await send(DEDICATED);
    expect(r.login.ok).toBe(true);
    expect(r.sent?.ok).toBe(false);
    expect(r.sent?.code).toBe(451);
    expect(r.sent?.response).toMatch(
      new RegExp(`^451 4\\.4\\.1 .*${UNUSABLE_SOURCE.replaceAll('.', '\\.')}.*not assigned to any local`),
    );
    const stats = await sim.stats();
    expect(stats.messages).toBe(statsBefore.messages);
    expect(stats.perUser[DEDICATED]).toBeUndefined();
    expect(stats.connections.peakPerUser[DEDICATED]).toBeUndefined();
    expect(stats.messageIds).not.toContain(r.id);
    // the other mailbox is not affected
    expect((await send(ALICE)).sent?.ok).toBe(true);
    // the admin view says why
    const dedicated = (await listAccounts()).find((a) => a.email === DEDICATED);
    expect(dedicated).toMatchObject({ state: 'error', sourceAddress: UNUSABLE_SOURCE });
    expect(dedicated?.lastError).toContain(UNUSABLE_SOURCE);
    const text = await metrics();
    expect(metricValue(text, 'xoauth2_proxy_messages_total', { provider: 'sim', result: 'deferred' })).toBe(
      1,
    );
  });

  it('adds a verified account (201) that can AUTH and deliver at once, without a restart', async () => {
    const tokenRequests = (await sim.stats()).tokenRequestsPerUser[BOB] ?? 0;
    const res = await post(
      { email: BOB, provider: 'sim', clientId: 'ops-client', refreshToken: rt(BOB), passwordHash: hash },
      '?verify=true',
    );
    const text = await res.text();
    expect(res.status, text).toBe(201);
    expect(JSON.parse(text)).toMatchObject({ ok: true, account: { email: BOB, provider: 'sim' } });
    for (const secret of [rt(BOB), hash]) expect(text).not.toContain(secret);
    // verification was a real refresh at the token endpoint
    expect((await sim.stats()).tokenRequestsPerUser[BOB] ?? 0).toBeGreaterThan(tokenRequests);
    expect(accountsIn(accountsFile)).toEqual([ALICE, DEDICATED, BOB]);
    expect((await listAccounts()).map((a) => a.email)).toContain(BOB);

    const r = await send(BOB);
    expect(r.login.ok, r.login.response).toBe(true);
    expect(r.sent?.ok, r.sent?.response).toBe(true);
    expect((await sim.stats()).messageIds).toContain(r.id);
  });

  it('refuses a bad field (400, named), a duplicate (409) and a failed verification (422), changing nothing', async () => {
    const fileBefore = fs.readFileSync(accountsFile, 'utf8');
    const listedBefore = (await listAccounts()).map((a) => a.email).sort();
    const statsBefore = await sim.stats();
    const valid = {
      email: CAROL,
      provider: 'sim',
      clientId: 'x',
      refreshToken: rt(CAROL),
      passwordHash: hash,
    };

    const cases: [string, unknown][] = [
      ['provider', { ...valid, provider: 'gmial' }],
      ['sourceAddress', { ...valid, sourceAddress: 'not-an-ip-address' }],
      ['email', { ...valid, email: 'not an email' }],
      // absent is allowed (the account then waits for `accounts authorize`); empty is a mistake
      ['refreshToken', { ...valid, refreshToken: '' }],
      ['passwordHash', { ...valid, passwordHash: 'plain-text-is-not-a-hash' }],
      ['password', { ...valid, passwordHash: undefined, password: NUMERIC_PW }],
      ['clientSecret', { ...valid, clientSecret: NUMERIC_SECRET }],
      ['refreshToken', { ...valid, refreshToken: NUMERIC_RT }],
    ];
    for (const [field, body] of cases) {
      const res = await post(body); // verify defaults to true: validation comes first
      expect(res.status, field).toBe(400);
      const err = (await res.json()) as AdminError;
      expect(
        err.issues?.map((i) => i.path),
        field,
      ).toContain(field);
      expect(err.error, field).toContain(field);
    }
    const notJson = await post('{"email": ');
    expect(notJson.status).toBe(400);

    for (const email of [ALICE, ALICE.toUpperCase()]) {
      const dup = await post({ ...valid, email, refreshToken: rt(ALICE) });
      expect(dup.status, email).toBe(409);
      expect(((await dup.json()) as AdminError).error).toContain(ALICE);
    }
    // none of those reached the token endpoint
    expect((await sim.stats()).tokenRequests).toBe(statsBefore.tokenRequests);

    // a token the simulator rejects: a real refresh is tried, answered invalid_grant -> 422
    for (const refreshToken of [BOGUS_RT, rt(CAROL, 'revoked')]) {
      if (refreshToken !== BOGUS_RT) await sim.control('/control/revoke', { refreshToken });
      const res = await post({ ...valid, refreshToken }, '?verify=true');
      const text = await res.text();
      expect(res.status, text).toBe(422);
      expect((JSON.parse(text) as AdminError).error).toMatch(/invalid_grant/);
      expect(text).not.toContain(refreshToken);
    }
    const stats = await sim.stats();
    expect(stats.tokenErrors - statsBefore.tokenErrors).toBe(2);

    expect(fs.readFileSync(accountsFile, 'utf8')).toBe(fileBefore);
    expect((await listAccounts()).map((a) => a.email).sort()).toEqual(listedBefore);
    const carol = await send(CAROL);
    expect(carol.login.code).toBe(535);
  });

  it('loses no update when ten accounts are added at once', async () => {
    const emails = Array.from({ length: 10 }, (_, i) => `many${i}@example.com`);
    const before = accountsIn(accountsFile);
    const responses = await Promise.all(
      emails.map((email) =>
        // the default is ?verify=true: ten real refreshes inside the serialized chain
        post({ email, provider: 'sim', clientId: 'x', refreshToken: rt(email), passwordHash: hash }),
      ),
    );
    expect(responses.map((r) => r.status)).toEqual(emails.map(() => 201));
    const inFile = accountsIn(accountsFile);
    expect(inFile.slice(0, before.length)).toEqual(before);
    expect([...inFile].sort()).toEqual([...before, ...emails].sort());
    expect((await listAccounts()).map((a) => a.email).sort()).toEqual([...before, ...emails].sort());
    // and they are live: the last one added can send
    const r = await send(emails[9]!);
    expect(r.sent?.ok, r.sent?.response).toBe(true);
  });

  it('deletes an account (204), which then gets 535; unknown gives 404; POST /admin/reload works', async () => {
    const del = await proxy.http(`/admin/accounts/${encodeURIComponent(BOB)}`, {
      method: 'DELETE',
      headers: auth,
    });
    expect(del.status).toBe(204);
    expect(accountsIn(accountsFile)).not.toContain(BOB);
    expect((await listAccounts()).map((a) => a.email)).not.toContain(BOB);
    const r = await send(BOB);
    expect(r.login.ok).toBe(false);
    expect(r.login.code).toBe(535);
    expect(r.login.response).toMatch(/535 5\.7\.8 Authentication credentials invalid/);

    const missing = await proxy.http(`/admin/accounts/${encodeURIComponent('nobody@example.com')}`, {
      method: 'DELETE',
      headers: auth,
    });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as AdminError).error).toContain('nobody@example.com');
    const again = await proxy.http(`/admin/accounts/${encodeURIComponent(BOB)}`, {
      method: 'DELETE',
      headers: auth,
    });
    expect(again.status).toBe(404);

    const reloadsBefore =
      metricValue(await metrics(), 'xoauth2_proxy_config_reloads_total', { result: 'success' }) ?? 0;
    const reload = await proxy.http('/admin/reload', { method: 'POST', headers: auth });
    expect(reload.status).toBe(200);
    expect(await reload.json()).toMatchObject({ ok: true });
    const text = await metrics();
    // at least: the file watcher may also reload (after a debounce) for the DELETE above
    expect(
      metricValue(text, 'xoauth2_proxy_config_reloads_total', { result: 'success' }),
    ).toBeGreaterThanOrEqual(reloadsBefore + 1);
    expect(metricValue(text, 'xoauth2_proxy_config_reloads_total', { result: 'failure' })).toBe(0);
    // after the reload the remaining accounts still deliver
    expect((await send(ALICE)).sent?.ok).toBe(true);
  });

  it('never writes a secret to its output, and logs exactly one info line per message', async () => {
    expect((await send(ALICE, WRONG_PW)).login.code).toBe(535); // a failed AUTH

    const expected = ledger.delivered.length + ledger.deferred;
    const parse = () =>
      proxy
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as LogLine);
    // pino writes asynchronously: wait until every message line is out
    const lines = await waitFor(
      'the message log lines',
      parse,
      (ls) => ls.filter((l) => l.msg === 'message').length >= expected,
    );
    const out = proxy.output();
    const secrets = [
      PW,
      WRONG_PW,
      ADMIN,
      CLIENT_SECRET,
      STATE_KEY,
      hash,
      BOGUS_RT,
      ...[ALICE, DEDICATED, BOB, CAROL, ...Array.from({ length: 10 }, (_, i) => `many${i}@example.com`)].map(
        (e) => rt(e),
      ),
      rt(CAROL, 'revoked'),
      String(NUMERIC_PW),
      String(NUMERIC_SECRET),
      String(NUMERIC_RT),
      // the encoded forms a client or a header would carry
      Buffer.from(`\0${ALICE}\0${PW}`).toString('base64'),
      Buffer.from(PW).toString('base64'),
    ];
    for (const secret of secrets) expect(out, secret).not.toContain(secret);
    // access tokens the simulator issued all start `simat.` (src/sim/state.ts)
    expect(out).not.toMatch(/simat\./);

    // the output has the admin traffic, so the checks above saw it
    expect(lines.some((l) => l.msg === 'admin add done' && l.email === BOB)).toBe(true);
    expect(lines.some((l) => l.msg === 'admin add failed' && l.email === CAROL)).toBe(true);

    const messages = lines.filter((l) => l.msg === 'message');
    expect(messages.length).toBe(expected);
    const delivered = messages.filter((l) => l.result === 'delivered');
    expect(delivered.length).toBe(ledger.delivered.length);
    for (const [i, l] of delivered.entries()) {
      const sent = ledger.delivered[i]!;
      expect(l).toMatchObject({
        level: 30, // info
        account: sent.user,
        rcpts: 1,
        size: sent.bytes,
        reply: '250 2.0.0',
        upstream: expect.stringMatching(/^250\b/),
        txid: expect.any(String),
        ms: expect.any(Number),
      });
    }
    expect(new Set(messages.map((l) => l.txid)).size).toBe(messages.length);
    const deferred = messages.filter((l) => l.result === 'deferred');
    expect(deferred).toEqual([
      expect.objectContaining({ account: DEDICATED, reply: '451 4.4.1', level: 30 }),
    ]);
    expect(deferred[0]!.upstream).toBeUndefined();

    // the metrics agree with the log
    const text = await metrics();
    expect(metricValue(text, 'xoauth2_proxy_messages_total', { provider: 'sim', result: 'delivered' })).toBe(
      ledger.delivered.length,
    );
    expect(metricValue(text, 'xoauth2_proxy_auth_attempts_total', { result: 'failure' })).toBe(3);
  });

  it('keeps tokens and secrets out of the state directory in plain text', async () => {
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(d, e.name));
        else files.push(path.join(d, e.name));
      }
    };
    walk(path.join(dir, 'data'));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      const bytes = fs.readFileSync(f).toString('latin1');
      expect(bytes, f).not.toMatch(/simat\./);
      expect(bytes, f).not.toContain(rt(ALICE));
      expect(bytes, f).not.toContain(STATE_KEY);
    }
  });
});

describe('admin API with inline accounts (no accountsFile)', () => {
  const procs = useProcs('all');
  let sim: SimProc;
  let proxy: ProxyProc;
  beforeAll(async () => {
    sim = await procs.sim();
    proxy = await procs.proxy({
      providers: { sim: simProvider(sim) },
      http: { adminToken: ADMIN },
      accounts: [simAccount(ALICE, { clientId: 'x', tag: 'ops', password: PW })],
    });
  });

  it('says changes need an accounts file, changes nothing and keeps serving', async () => {
    const headers = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
    const add = await proxy.http('/admin/accounts?verify=false', {
      method: 'POST',
      headers,
      body: JSON.stringify({ email: BOB, provider: 'sim', clientId: 'x', refreshToken: rt(BOB) }),
    });
    // a conflict with how this proxy is configured (not a server error), naming the fix
    expect(add.status).toBe(409);
    expect(((await add.json()) as AdminError).error).toMatch(/inline.*accountsFile/);

    const del = await proxy.http(`/admin/accounts/${encodeURIComponent(ALICE)}`, {
      method: 'DELETE',
      headers,
    });
    expect(del.status).toBe(409);
    expect(((await del.json()) as AdminError).error).toMatch(/inline.*accountsFile/);

    const listed = (await (await proxy.http('/admin/accounts', { headers })).json()) as {
      accounts: AccountJson[];
    };
    expect(listed.accounts.map((a) => a.email)).toEqual([ALICE]);
    expect((await proxy.http('/admin/reload', { method: 'POST', headers })).status).toBe(200);
    expect((await proxy.http('/healthz')).status).toBe(200);
    expect((await proxy.http('/readyz')).status).toBe(200);

    // the process is alive and the account it has still delivers
    expect(proxy.child.exitCode).toBeNull();
    const r = await loginAndSend(proxy.smtpPort, ALICE, PW, { to: 'someone@example.net' });
    expect(r.login.ok).toBe(true);
    expect(r.reply.ok, r.reply.response).toBe(true);
    expect((await sim.stats()).messageIds).toContain(r.id);
  });
});
