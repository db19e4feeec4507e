// Upstream trouble seen by clients: dropped connections, connection limits, pool waits.
import { describe, expect, it } from 'vitest';
import { simProvider } from '../helpers/procs.js';
import { TEST_PASSWORD as PW, simAccounts as accounts } from '../helpers/sim-accounts.js';
import { TestClient, makeMessage } from '../helpers/smtp-client.js';
import { useProcs } from '../helpers/use-procs.js';

const procs = useProcs();

async function burst(port: number, users: string[], clients: number, perClient: number) {
  const results: { ok: boolean; code?: number; response: string; id: string }[] = [];
  await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      const user = users[i % users.length]!;
      const c = new TestClient({ port });
      await c.connect();
      await c.login(user, PW);
      for (let k = 0; k < perClient; k++) {
        const m = makeMessage(user, 'r@example.net');
        const r = await c.send(user, 'r@example.net', m.raw);
        results.push({ ...r, id: m.id });
      }
      c.close();
    }),
  );
  return results;
}

describe('upstream faults', () => {
  it('never answers 250 for a message the upstream did not get when connections drop before the final reply', async () => {
    const sim = await procs.sim(['--drop', '0.2']);
    const proxy = await procs.proxy({
      providers: { sim: simProvider(sim) },
      accounts: accounts(['a@example.com', 'b@example.com']),
    });
    const results = await burst(proxy.smtpPort, ['a@example.com', 'b@example.com'], 6, 40);
    const stats = await sim.stats();
    const seen = new Set(stats.messageIds);
    const accepted = results.filter((r) => r.ok);
    // every id that got 250 is upstream: no lie
    expect(accepted.filter((r) => !seen.has(r.id))).toEqual([]);
    // everything else got a temporary reply, so the client keeps it
    for (const r of results.filter((x) => !x.ok)) expect(r.response).toMatch(/^4\d\d 4\.\d+\.\d+ /);
    // most made it through the retry on a fresh connection (20% drops, one retry each: ~96%)
    expect(accepted.length).toBeGreaterThan(results.length * 0.85);
  });

  it('never exceeds the upstream per-user connection limit with 200 clients on 3 mailboxes', async () => {
    const sim = await procs.sim(['--max-connections-per-user', '3']);
    const users = ['c1@example.com', 'c2@example.com', 'c3@example.com'];
    const proxy = await procs.proxy({
      providers: { sim: simProvider(sim, { maxConnectionsPerAccount: 3, acquireTimeout: '30s' }) },
      accounts: accounts(users),
    });
    const results = await burst(proxy.smtpPort, users, 200, 3);
    const stats = await sim.stats();
    expect(stats.limitRejections.connections).toBe(0);
    expect(results.filter((r) => !r.ok)).toEqual([]);
    for (const u of users) expect(stats.connections.peakPerUser[u]).toBeLessThanOrEqual(3);
  });

  it('gives 451 4.7.0 to messages that wait longer than acquireTimeout for a connection', async () => {
    const sim = await procs.sim(['--latency', '1500']);
    const proxy = await procs.proxy({
      providers: { sim: simProvider(sim, { maxConnectionsPerAccount: 1, acquireTimeout: '300ms' }) },
      accounts: accounts(['w@example.com']),
    });
    const results = await burst(proxy.smtpPort, ['w@example.com'], 4, 1);
    const waited = results.filter((r) => !r.ok);
    expect(results.filter((r) => r.ok).length).toBeGreaterThanOrEqual(1);
    expect(waited.length).toBeGreaterThanOrEqual(2);
    for (const r of waited) expect(r.response).toMatch(/^451 4\.7\.0 /);
  });
});
