// Token lifecycle seen from outside: clients keep sending while tokens expire, are rejected,
// revoked and rotated.
import { describe, expect, it } from 'vitest';
import { simProvider } from '../helpers/procs.js';
import { TEST_PASSWORD as PW, simAccounts } from '../helpers/sim-accounts.js';
import { TestClient, loginAndSend, makeMessage } from '../helpers/smtp-client.js';
import { useProcs } from '../helpers/use-procs.js';
import { sleep } from '../helpers/wait.js';

const users = ['u1@example.com', 'u2@example.com', 'u3@example.com'];
const accounts = (names = users) => simAccounts(names);
const procs = useProcs();

async function sendLoop(user: string, port: number, untilMs: number, intervalMs: number) {
  const c = new TestClient({ port });
  await c.connect();
  await c.login(user, PW);
  const results: { ok: boolean; response: string; id: string }[] = [];
  while (Date.now() < untilMs) {
    const m = makeMessage(user, 'r@example.net');
    const r = await c.send(user, 'r@example.net', m.raw);
    results.push({ ok: r.ok, response: r.response, id: m.id });
    await sleep(intervalMs);
  }
  c.close();
  return results;
}

describe('token lifecycle', () => {
  it('keeps delivering while tokens expire every 4 s, with at most one refresh per account per expiry', async () => {
    const sim = await procs.sim(['--token-lifetime', '4']);
    const proxy = await procs.proxy({ providers: { sim: simProvider(sim) }, accounts: accounts() });
    const until = Date.now() + 20_000;
    const results = (await Promise.all(users.map((u) => sendLoop(u, proxy.smtpPort, until, 20)))).flat();
    const failed = results.filter((r) => !r.ok);
    expect(failed).toEqual([]);
    expect(results.length).toBeGreaterThan(100);
    const stats = await sim.stats();
    const ids = new Set(stats.messageIds);
    expect(results.every((r) => ids.has(r.id))).toBe(true);
    for (const u of users) {
      // 20 s of 4 s tokens: 1 warm-up + about 5 renewals; one refresh per expiry at most
      expect(stats.tokenRequestsPerUser[u]).toBeLessThanOrEqual(8);
      expect(stats.tokenRequestsPerUser[u]).toBeGreaterThanOrEqual(4);
    }
  });

  it('handles a token the upstream rejects (google 334 challenge): refresh once, retry, deliver', async () => {
    // tokens say they live an hour but stop validating after 2 s: the proxy learns it from the 334
    const sim = await procs.sim(['--expire-early', '2']);
    const proxy = await procs.proxy({
      providers: { sim: simProvider(sim, { connectionMaxAge: '1s', connectionIdleTimeout: '500ms' }) },
      accounts: accounts([users[0]!]),
    });
    const c = new TestClient({ port: proxy.smtpPort });
    await c.connect();
    await c.login(users[0]!, PW);
    expect((await c.send(users[0]!, 'r@example.net', makeMessage(users[0]!, 'r@example.net').raw)).ok).toBe(
      true,
    );
    await sleep(3000);
    const m = makeMessage(users[0]!, 'r@example.net');
    const r = await c.send(users[0]!, 'r@example.net', m.raw);
    c.close();
    expect(r.ok).toBe(true);
    const stats = await sim.stats();
    expect(stats.messageIds).toContain(m.id);
    expect(stats.authFailures).toBeGreaterThanOrEqual(1);
    expect(stats.tokenRequestsPerUser[users[0]!]).toBeGreaterThanOrEqual(2);
    expect(stats.tokenRequestsPerUser[users[0]!]).toBeLessThanOrEqual(3);
  });

  it('puts only the revoked account in needs-reauth (451 4.7.0) while the others deliver', async () => {
    const sim = await procs.sim();
    await sim.control('/control/revoke', { email: users[1] });
    const proxy = await procs.proxy({ providers: { sim: simProvider(sim) }, accounts: accounts() });
    for (const u of users) {
      const c = new TestClient({ port: proxy.smtpPort });
      await c.connect();
      await c.login(u, PW);
      const first = await c.send(u, 'r@example.net', makeMessage(u, 'r@example.net').raw);
      const second = await c.send(u, 'r@example.net', makeMessage(u, 'r@example.net').raw);
      c.close();
      if (u === users[1]) {
        expect(first.response).toMatch(/^451 4\.7\.0 .*re-?auth/i);
        expect(second.response).toMatch(/^451 4\.7\.0 /);
      } else {
        expect(first.ok && second.ok).toBe(true);
      }
    }
    const stats = await sim.stats();
    // never retried in a loop: the warm-up and at most one more attempt
    expect(stats.tokenRequestsPerUser[users[1]!] ?? 0).toBeLessThanOrEqual(2);
  });

  it('keeps rotated refresh tokens across a restart', async () => {
    const sim = await procs.sim(['--rotate-refresh-tokens', '--token-lifetime', '3']);
    let proxy = await procs.proxy({ providers: { sim: simProvider(sim) }, accounts: accounts([users[0]!]) });
    const send = async () =>
      (await loginAndSend(proxy.smtpPort, users[0]!, PW, { to: 'r@example.net' })).reply;
    expect((await send()).ok).toBe(true);
    await sleep(4000); // at least one rotation happened
    expect((await send()).ok).toBe(true);
    expect(await proxy.stop()).toBe(0);
    await sleep(3500); // the stored access token expired too
    proxy = await procs.restart(proxy);
    const r = await send();
    expect(r.ok).toBe(true);
    expect(proxy.output()).not.toMatch(/invalid_grant/);
  });
});
