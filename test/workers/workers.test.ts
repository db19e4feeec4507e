// serve --workers 2 over real sockets against the simulator: the workers share the listeners and
// one set of per-mailbox limits (the simulator refuses a third connection per user with 432), one
// aggregated /metrics, /readyz over all workers, SIGHUP and admin changes reach both, a worker killed
// with SIGKILL is replaced while mail keeps flowing, and SIGTERM drains both and exits 0.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { simProvider, type ProxyProc, type SimProc } from '../helpers/procs.js';
import { TEST_PASSWORD, simAccount } from '../helpers/sim-accounts.js';
import { loginAndSend, makeMessage, TestClient } from '../helpers/smtp-client.js';
import { useProcs } from '../helpers/use-procs.js';
import { metricValue, waitFor } from '../helpers/wait.js';

const A = 'alice@example.com';
const B = 'bob@example.com';
const C = 'carol@example.com';
const ADMIN = 'admin-token-for-tests-only';

/** the workers' pids, from the primary's `worker N up` log lines (the latest per slot) */
function workerPids(proxy: ProxyProc): Map<number, number> {
  const pids = new Map<number, number>();
  for (const line of proxy.output().split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const j = JSON.parse(line);
      if (typeof j.workerPid === 'number' && /^worker \d+ up$/.test(j.msg)) pids.set(j.worker, j.workerPid);
    } catch {}
  }
  return pids;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** `clients` connections at once, each sending `each` messages as `user`; every reply */
async function load(port: number, users: string[], clients: number, each: number) {
  const ids: string[] = [];
  const replies = await Promise.all(
    Array.from({ length: clients }, async (_, i) => {
      const user = users[i % users.length]!;
      const c = new TestClient({ port });
      await c.connect();
      const out: { code?: number; response: string }[] = [];
      const login = await c.login(user, TEST_PASSWORD);
      if (!login.ok) return [login];
      for (let k = 0; k < each; k++) {
        const m = makeMessage(user, 'rcpt@example.net');
        ids.push(m.id);
        out.push(await c.send(user, 'rcpt@example.net', m.raw));
      }
      c.close();
      return out;
    }),
  );
  return { ids, replies: replies.flat() };
}

describe('serve --workers 2', () => {
  const procs = useProcs('all');
  let sim: SimProc;
  let proxy: ProxyProc;

  beforeAll(async () => {
    sim = await procs.sim(['--max-connections-per-user', '2']);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-workers-'));
    const accounts = [A, B].map((e) => simAccount(e, { maxConnections: 2 }));
    fs.writeFileSync(path.join(dir, 'accounts.yaml'), YAML.stringify({ accounts }));
    proxy = await procs.proxy(
      {
        workers: 2,
        http: { adminToken: ADMIN },
        // the default idle timeout (60 s): a worker holding both slots of a mailbox gives one up
        // when the other is refused (Coordinator.onLeaseWanted)
        providers: { sim: simProvider(sim) },
        accountsFile: './accounts.yaml',
        shutdownTimeout: '10s',
      },
      { dir },
    );
  }, 60_000);

  it('is ready only with both workers, and relays under load with no 432: the limits are global', async () => {
    // (log lines leave in batches, up to 100 ms after /readyz turned 200)
    await waitFor(
      'both workers logged up',
      () => workerPids(proxy).size,
      (n) => n === 2,
      3000,
    );
    expect((await proxy.http('/readyz')).status).toBe(200);
    // cluster deals connections round-robin: [A, A, B, B, ...] puts each mailbox on both workers,
    // so without global leases each worker would open its own 2 and the simulator would say 432
    const { ids, replies } = await load(proxy.smtpPort, [A, A, B, B], 8, 6);
    expect(replies.filter((r) => r.code !== 250)).toEqual([]);
    const stats = await sim.stats();
    expect(stats.violations.concurrentConnections).toBe(0);
    expect(stats.connections.peakPerUser[A]).toBeLessThanOrEqual(2);
    expect(stats.connections.peakPerUser[B]).toBeLessThanOrEqual(2);
    for (const id of ids) expect(stats.messageIds).toContain(id);

    // one /metrics for the whole: counters summed over the workers (each had half the clients)
    const text = await (await proxy.http('/metrics')).text();
    expect(metricValue(text, 'xoauth2_proxy_smtp_connections_total', { result: 'accepted' })).toBe(8);
    expect(metricValue(text, 'xoauth2_proxy_messages_total', { provider: 'sim', result: 'delivered' })).toBe(
      48,
    );
    expect(metricValue(text, 'xoauth2_proxy_workers', { state: 'up' })).toBe(2);
    // the admin API answers through the primary's port (forwarded to a worker)
    const live = await proxy.http('/admin/accounts', { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(live.status).toBe(200);
    const body = (await live.json()) as { accounts: { email: string }[] };
    expect(body.accounts.map((a) => a.email).sort()).toEqual([A, B]);
  });

  const reloads = async () =>
    metricValue(await (await proxy.http('/metrics')).text(), 'xoauth2_proxy_config_reloads_total', {
      result: 'success',
    }) ?? 0;

  it('passes SIGHUP on to every worker', async () => {
    const before = await reloads();
    proxy.child.kill('SIGHUP');
    await waitFor('both workers reloaded', reloads, (n) => n === before + 2, 5000);
    expect((await proxy.http('/readyz')).status).toBe(200);
  });

  it('applies an account added through the admin API in every worker', async () => {
    const r = await proxy.http('/admin/accounts?verify=false', {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify(simAccount(C, { maxConnections: 2 })),
    });
    expect(r.status).toBe(201);
    // two connections at once: one on each worker (round-robin); both must know carol
    await waitFor(
      'carol accepted by both workers',
      async () => {
        const two = await Promise.all([0, 1].map(() => loginAndSend(proxy.smtpPort, C, TEST_PASSWORD)));
        return two.map((x) => x.reply.code);
      },
      (codes) => codes.every((c) => c === 250),
      5000,
      100,
    );
    // the other worker heard it over the coordinator (announceAccountsChanged -> onAccountsChanged)
    await waitFor(
      'a reload for the announced change',
      () => proxy.output(),
      (out) => /"reason":"shared state: accounts changed"/.test(out),
      3000,
    );
  });

  it('replaces a worker killed with SIGKILL; its slots return at once and mail keeps flowing', async () => {
    const pids = await waitFor(
      'pids',
      () => workerPids(proxy),
      (p) => p.size === 2,
    );
    const victim = pids.get(1)!;
    process.kill(victim, 'SIGKILL');
    await waitFor(
      'readyz to name the dead worker',
      async () => (await proxy.http('/readyz')).text(),
      (t) => /worker 1 (down|starting)/.test(t),
      5000,
    );
    // the survivor serves alone: two connections of one mailbox at once need both global slots,
    // so the dead worker's leases must be back already (not after the 30 s lease TTL)
    const { replies } = await load(proxy.smtpPort, [A], 2, 3);
    expect(replies.map((r) => r.code)).toEqual([250, 250, 250, 250, 250, 250]);
    await waitFor(
      'a new worker 1',
      () => workerPids(proxy).get(1),
      (p) => p !== undefined && p !== victim,
      20_000,
      100,
    );
    await waitFor(
      'readyz',
      async () => (await proxy.http('/readyz')).status,
      (s) => s === 200,
      10_000,
    );
    expect(alive(victim)).toBe(false);
    const text = await (await proxy.http('/metrics')).text();
    expect(metricValue(text, 'xoauth2_proxy_worker_restarts_total')).toBe(1);
    expect((await load(proxy.smtpPort, [A, A, B, B], 4, 2)).replies.every((r) => r.code === 250)).toBe(true);
    expect((await sim.stats()).violations.concurrentConnections).toBe(0);
  });

  it('drains every worker on SIGTERM: the message in flight gets its 250, then exit 0', async () => {
    const pids = [
      ...(
        await waitFor(
          'pids',
          () => workerPids(proxy),
          (p) => p.size === 2,
        )
      ).values(),
    ];
    await sim.control('/control/faults', { latencyMs: 1500 });
    const c = new TestClient({ port: proxy.smtpPort });
    await c.connect();
    expect((await c.login(A, TEST_PASSWORD)).ok).toBe(true);
    const m = makeMessage(A, 'rcpt@example.net');
    const sent = c.send(A, 'rcpt@example.net', m.raw);
    await waitFor(
      'the message in flight',
      async () => (await sim.stats()).connections.open,
      () => true,
      500,
    );
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const code = await proxy.stop('SIGTERM');
    expect((await sent).code).toBe(250);
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(15_000);
    for (const pid of pids) expect(alive(pid)).toBe(false);
    expect((await sim.stats()).messageIds).toContain(m.id);
    expect(proxy.output()).toMatch(/draining the workers/);
    await sim.control('/control/faults', { latencyMs: 0 });
  });
});
