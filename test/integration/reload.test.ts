// Hot reload of the accounts file: each change is loaded exactly once, whoever made it, and a
// reload does not repeat warnings the operator already got.
import { beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { simProvider, type ProxyProc, type SimProc } from '../helpers/procs.js';
import { simAccount } from '../helpers/sim-accounts.js';
import { TestClient } from '../helpers/smtp-client.js';
import { useProcs } from '../helpers/use-procs.js';
import { metricValue, sleep, waitFor } from '../helpers/wait.js';

const PW = 'client-password-for-tests-only';
const ADMIN = 'test-admin-token-not-secret';
const UNUSABLE_SOURCE = '192.0.2.10'; // TEST-NET-1: never on this host
const account = (email: string, extra: Record<string, unknown> = {}) =>
  simAccount(email, { clientId: 'reload-client', tag: 'reload', password: PW, ...extra });

describe('accounts file reload', () => {
  const procs = useProcs('all');
  let sim: SimProc;
  let proxy: ProxyProc;
  let accountsFile: string;
  const reloads = async () =>
    metricValue(await (await proxy.http('/metrics')).text(), 'xoauth2_proxy_config_reloads_total', {
      result: 'success',
    }) ?? 0;
  const warnings = () => proxy.output().split('cannot send: ').length - 1;
  const canLogin = async (user: string) => {
    const c = new TestClient({ port: proxy.smtpPort });
    await c.connect();
    try {
      return (await c.login(user, PW)).ok;
    } finally {
      c.close();
    }
  };

  beforeAll(async () => {
    sim = await procs.sim();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-reload-'));
    accountsFile = path.join(dir, 'accounts.yaml');
    fs.writeFileSync(
      accountsFile,
      YAML.stringify({
        accounts: [
          account('a@example.com'),
          account('pinned@example.com', { sourceAddress: UNUSABLE_SOURCE }),
        ],
      }),
    );
    proxy = await procs.proxy(
      { providers: { sim: simProvider(sim) }, accountsFile: './accounts.yaml', http: { adminToken: ADMIN } },
      { dir },
    );
  });

  it('applies an admin API change once, not again when the file watcher sees the write', async () => {
    // log lines are batched (FLUSH_MS), so /readyz can answer before the start-up warning is out
    await waitFor('the start-up warning', warnings, (n) => n >= 1);
    expect(warnings()).toBe(1);
    const before = await reloads();
    const r = await proxy.http('/admin/accounts?verify=false', {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify(account('b@example.com')),
    });
    expect(r.status).toBe(201);
    expect(await canLogin('b@example.com')).toBe(true);
    // the watcher debounces 200 ms; give it ample time to (wrongly) reload again
    await sleep(1000);
    expect(await reloads()).toBe(before + 1);
    // the unusable sourceAddress was reported at start-up; the reload does not repeat it
    expect(warnings()).toBe(1);
  });

  it('reloads an edit made by hand exactly once', async () => {
    const before = await reloads();
    const doc = YAML.parse(fs.readFileSync(accountsFile, 'utf8')) as { accounts: unknown[] };
    doc.accounts.push(account('c@example.com'));
    fs.writeFileSync(accountsFile, YAML.stringify(doc));
    await waitFor(
      'c@example.com to log in',
      () => canLogin('c@example.com'),
      (ok) => ok,
    );
    await sleep(1000);
    expect(await reloads()).toBe(before + 1);
  });

  it('reloads on SIGHUP even when nothing changed (the operator asked)', async () => {
    const before = await reloads();
    proxy.child.kill('SIGHUP');
    await waitFor('the SIGHUP reload', reloads, (n) => n === before + 1);
    await sleep(500); // past the log batching, so a repeated warning would be out by now
    expect(warnings()).toBe(1);
  });
});
