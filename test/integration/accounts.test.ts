// Accounts end to end in the real process.
// - A removed account's secrets go with it: whichever way it is removed (file edit + SIGHUP, the
//   `accounts remove` CLI, the admin API, or while the proxy is stopped), its row in state.db
//   (encrypted access token, rotated refresh token) is gone once the proxy runs without it. The
//   simulator rotates refresh tokens, so every account has both secrets stored.
// - A mailbox address is case-insensitive wherever it comes in: SMTP AUTH, MAIL FROM from a trusted
//   network, the admin API, the `accounts` commands.
import { beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import YAML from 'yaml';
import { CLI, simProvider, type ProxyProc, type SimProc } from '../helpers/procs.js';
import { runScript } from '../helpers/run-script.js';
import { simAccount } from '../helpers/sim-accounts.js';
import { useProcs } from '../helpers/use-procs.js';
import { TestClient, loginAndSend, makeMessage } from '../helpers/smtp-client.js';
import { metricValue, waitFor } from '../helpers/wait.js';

const PW = 'client-password-for-tests-only';
const ADMIN = 'test-admin-token-not-secret';
const KEEP = 'keep@example.com';
const BY_SIGHUP = 'by-sighup@example.com';
const BY_CLI = 'by-cli@example.com';
const BY_API = 'by-api@example.com';
const WHILE_STOPPED = 'while-stopped@example.com';
const ALL = [KEEP, BY_SIGHUP, BY_CLI, BY_API, WHILE_STOPPED];

const account = (email: string) =>
  simAccount(email, { clientId: 'removal-client', tag: 'removal', password: PW });

interface Row {
  email: string;
  access_token: Buffer | null;
  refresh_token: Buffer | null;
}

describe('removing an account deletes its stored secrets', () => {
  const procs = useProcs('all');
  let sim: SimProc;
  let proxy: ProxyProc;
  let dir: string;
  let accountsFile: string;

  /** the rows of state.db, read by a connection of our own (the proxy keeps its own open) */
  const rows = (): Row[] => {
    const db = new Database(path.join(dir, 'data', 'state.db'), { readonly: true, fileMustExist: true });
    try {
      return db.prepare<[], Row>('SELECT email, access_token, refresh_token FROM accounts').all();
    } finally {
      db.close();
    }
  };
  const emailsInStore = () => rows().map((r) => r.email);
  const reloads = async () =>
    metricValue(await (await proxy.http('/metrics')).text(), 'xoauth2_proxy_config_reloads_total', {
      result: 'success',
    }) ?? 0;
  const removeFromFile = (email: string) => {
    const doc = YAML.parse(fs.readFileSync(accountsFile, 'utf8')) as { accounts: { email: string }[] };
    doc.accounts = doc.accounts.filter((a) => a.email !== email);
    fs.writeFileSync(accountsFile, YAML.stringify(doc));
  };
  const cliRemove = (email: string) => runScript(CLI, ['accounts', 'remove', email, '-c', proxy.configFile]);

  beforeAll(async () => {
    sim = await procs.sim(['--rotate-refresh-tokens']);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-removal-'));
    accountsFile = path.join(dir, 'accounts.yaml');
    fs.writeFileSync(accountsFile, YAML.stringify({ accounts: ALL.map(account) }));
    proxy = await procs.proxy(
      { providers: { sim: simProvider(sim) }, accountsFile: './accounts.yaml', http: { adminToken: ADMIN } },
      { dir },
    );
    // warm-up stores an access token and the rotated refresh token of every account
    await waitFor(
      'every account to have both secrets in state.db',
      rows,
      (rs) => ALL.every((e) => rs.some((r) => r.email === e && r.access_token && r.refresh_token)),
      10_000,
    );
  });

  it('file edit + SIGHUP', async () => {
    const before = await reloads();
    removeFromFile(BY_SIGHUP);
    proxy.child.kill('SIGHUP');
    await waitFor('the reload', reloads, (n) => n > before);
    await waitFor('the row to go', emailsInStore, (es) => !es.includes(BY_SIGHUP));
    expect(emailsInStore()).toContain(KEEP);
  });

  it('`accounts remove` while the proxy runs (it reloads the watched file)', async () => {
    const r = await cliRemove('By-CLI@Example.com');
    expect(r.out).toContain(`removed ${BY_CLI}`);
    expect(r.code).toBe(0);
    await waitFor('the row to go', emailsInStore, (es) => !es.includes(BY_CLI));
    expect(emailsInStore()).toContain(KEEP);
  });

  it('the admin API', async () => {
    const r = await proxy.http(`/admin/accounts/${encodeURIComponent('By-API@EXAMPLE.com')}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    expect(r.status).toBe(204);
    expect(emailsInStore()).not.toContain(BY_API);
    expect(emailsInStore()).toContain(KEEP);
  });

  it('`accounts remove` while the proxy is stopped: pruned at the next start', async () => {
    expect(await proxy.stop()).toBe(0);
    const r = await cliRemove(WHILE_STOPPED);
    expect(r.code).toBe(0);
    proxy = await procs.restart(proxy);
    expect(emailsInStore()).toEqual([KEEP]);
    // the account that stays keeps its secrets across the restart
    const keep = rows()[0]!;
    expect(keep.access_token).not.toBeNull();
    expect(keep.refresh_token).not.toBeNull();
  });
});

describe('a mailbox address is case-insensitive at every entry point', () => {
  const procs = useProcs('all');
  const ALICE = 'alice@example.com';
  const TRUSTED_CLIENT = '127.0.0.2';
  let sim: SimProc;
  let proxy: ProxyProc;

  beforeAll(async () => {
    sim = await procs.sim();
    proxy = await procs.proxy({
      providers: { sim: simProvider(sim) },
      accounts: [account(ALICE)],
      smtp: { trustedNetworks: [`${TRUSTED_CLIENT}/32`] },
      http: { adminToken: ADMIN },
    });
  });

  it('SMTP AUTH', async () => {
    const r = await loginAndSend(proxy.smtpPort, 'Alice@EXAMPLE.com', PW, { from: ALICE });
    expect(r.login).toMatchObject({ ok: true });
    expect(r.sent).toMatchObject({ ok: true, code: 250 });
  });

  it('MAIL FROM from a trusted network (no AUTH)', async () => {
    const c = new TestClient({ port: proxy.smtpPort, localAddress: TRUSTED_CLIENT });
    await c.connect();
    try {
      const from = 'ALICE@example.COM';
      const r = await c.send(from, 'rcpt@example.net', makeMessage(from, 'rcpt@example.net').raw);
      expect(r).toMatchObject({ ok: true, code: 250 });
    } finally {
      c.close();
    }
    expect((await sim.stats()).perUser).toEqual({ [ALICE]: 2 });
  });

  it('the admin API', async () => {
    const r = await proxy.http(`/admin/accounts/${encodeURIComponent(' Alice@Example.COM')}`, {
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ email: ALICE });
  });
});
