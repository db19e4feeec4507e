// Reload and shutdown of the real process while clients are sending.
import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { simProvider } from '../helpers/procs.js';
import { TEST_PASSWORD as PW, simAccount } from '../helpers/sim-accounts.js';
import { TestClient, loginAndSend, makeMessage } from '../helpers/smtp-client.js';
import { useProcs } from '../helpers/use-procs.js';
import { sleep } from '../helpers/wait.js';

const acct = (email: string, password = PW) => simAccount(email, { password });
const procs = useProcs();

const trySend = async (port: number, user: string, password = PW) =>
  (await loginAndSend(port, user, password, { to: 'r@example.net' })).reply;

describe('reload', () => {
  it('adds, changes and removes accounts under load without failing unchanged ones; a bad file keeps the old snapshot', async () => {
    const sim = await procs.sim();
    const dir = fs.mkdtempSync(path.join((await import('node:os')).tmpdir(), 'xo-reload-'));
    const accountsFile = path.join(dir, 'accounts.yaml');
    const write = (list: unknown[]) => {
      const tmp = accountsFile + '.tmp';
      fs.writeFileSync(tmp, YAML.stringify({ accounts: list }));
      fs.renameSync(tmp, accountsFile);
    };
    write([acct('keep@example.com'), acct('change@example.com'), acct('remove@example.com')]);
    const proxy = await procs.proxy(
      { providers: { sim: simProvider(sim) }, accountsFile: './accounts.yaml' },
      { dir },
    );

    let stop = false;
    const failures: string[] = [];
    let sent = 0;
    const load = (async () => {
      const c = new TestClient({ port: proxy.smtpPort });
      await c.connect();
      await c.login('keep@example.com', PW);
      while (!stop) {
        const r = await c.send(
          'keep@example.com',
          'r@example.net',
          makeMessage('keep@example.com', 'r@example.net').raw,
        );
        sent++;
        if (!r.ok) failures.push(r.response);
      }
      c.close();
    })();

    await sleep(500);
    write([acct('keep@example.com'), acct('change@example.com', 'new-password'), acct('added@example.com')]);
    await sleep(1000);
    expect((await trySend(proxy.smtpPort, 'added@example.com')).ok).toBe(true);
    expect((await trySend(proxy.smtpPort, 'remove@example.com')).response).toBe(
      '535 5.7.8 Authentication credentials invalid',
    );
    expect((await trySend(proxy.smtpPort, 'change@example.com', PW)).ok).toBe(false);
    expect((await trySend(proxy.smtpPort, 'change@example.com', 'new-password')).ok).toBe(true);

    // a broken file: the previous snapshot stays, and SIGHUP says so in the log
    fs.writeFileSync(accountsFile, 'accounts: [ { email: "not-an-address", provider: nope } ]');
    proxy.child.kill('SIGHUP');
    await sleep(1000);
    expect((await trySend(proxy.smtpPort, 'added@example.com')).ok).toBe(true);
    expect(proxy.output()).toMatch(/reload failed/);

    stop = true;
    await load;
    expect(sent).toBeGreaterThan(20);
    expect(failures).toEqual([]);
  });
});

describe('shutdown', () => {
  it('finishes 100 in-flight messages on SIGTERM and exits 0', async () => {
    const sim = await procs.sim(['--latency', '1000', '--max-connections-per-user', '20']);
    const users = Array.from({ length: 10 }, (_, i) => `s${i}@example.com`);
    const proxy = await procs.proxy({
      providers: { sim: simProvider(sim, { maxConnectionsPerAccount: 10 }) },
      accounts: users.map((u) => acct(u)),
    });
    const clients = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const c = new TestClient({ port: proxy.smtpPort });
        await c.connect();
        await c.login(users[i % 10]!, PW);
        return { c, user: users[i % 10]! };
      }),
    );
    const ids: string[] = [];
    const sends = clients.map(({ c, user }) => {
      const m = makeMessage(user, 'r@example.net');
      ids.push(m.id);
      return c.send(user, 'r@example.net', m.raw);
    });
    // wait until all 100 are in flight at the proxy
    for (let i = 0; i < 50; i++) {
      const text = await (await proxy.http('/metrics')).text();
      const m = /^xoauth2_proxy_inflight_messages (\d+)/m.exec(text);
      if (m && Number(m[1]) >= 100) break;
      await sleep(50);
    }
    proxy.child.kill('SIGTERM');
    const results = await Promise.all(sends);
    for (const { c } of clients) c.close();
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(await proxy.exited).toBe(0);
    const seen = new Set((await sim.stats()).messageIds);
    expect(ids.every((id) => seen.has(id))).toBe(true);
  });
});
