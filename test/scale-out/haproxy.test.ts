// One proxy behind Debian's haproxy with `send-proxy` (PROXY protocol v1): the proxy sees each
// client's own address, not the balancer's, in trustedNetworks and in its logs, mail relays through
// the balancer, and the /readyz health check takes a draining proxy out of rotation.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simProvider, type ProxyProc, type SimProc } from '../helpers/procs.js';
import { HAPROXY, NO_HAPROXY_MESSAGE, startHaproxy, type Haproxy } from '../helpers/haproxy.js';
import { simAccount, TEST_PASSWORD } from '../helpers/sim-accounts.js';
import { TestClient, loginAndSend, makeMessage } from '../helpers/smtp-client.js';
import { useProcs } from '../helpers/use-procs.js';
import { waitFor } from '../helpers/wait.js';

const ALICE = 'alice@example.com';
// HAProxy connects to the proxy from this address, the only one allowed to send a PROXY header
const BALANCER = '127.0.0.9';
const TRUSTED_CLIENT = '127.0.0.5';

if (!HAPROXY) console.warn(NO_HAPROXY_MESSAGE);

describe.skipIf(!HAPROXY)('one proxy behind haproxy (send-proxy)', () => {
  const procs = useProcs('all');
  let sim: SimProc;
  let proxy: ProxyProc;
  let lb: Haproxy;
  beforeAll(async () => {
    sim = await procs.sim();
    proxy = await procs.proxy({
      smtp: { proxyProtocol: [BALANCER], trustedNetworks: [`${TRUSTED_CLIENT}/32`] },
      providers: { sim: simProvider(sim) },
      accounts: [simAccount(ALICE)],
    });
    lb = await startHaproxy({
      backends: [{ smtpPort: proxy.smtpPort, httpPort: proxy.httpPort }],
      proxyProtocol: 'v1',
      sourceAddress: BALANCER,
    });
  });
  afterAll(async () => {
    await lb?.stop();
  });

  const via = (localAddress: string) => ({ port: lb.port, host: lb.host, localAddress });

  it('relays an authenticated message through the balancer', async () => {
    const r = await loginAndSend(via('127.0.0.1'), ALICE, TEST_PASSWORD);
    expect(r.reply).toMatchObject({ ok: true, code: 250 });
    expect((await sim.stats()).messageIds).toContain(r.id);
  });

  it("trusts the client's own address from the header, not the balancer's", async () => {
    // the proxy's socket comes from 127.0.0.9 in both cases; only the header tells them apart
    const send = async (from: string) => {
      const c = new TestClient(via(from));
      await c.connect();
      try {
        const m = makeMessage(ALICE, 'rcpt@example.net');
        return { id: m.id, reply: await c.send(ALICE, 'rcpt@example.net', m.raw) };
      } finally {
        c.close();
      }
    };
    const trusted = await send(TRUSTED_CLIENT);
    expect(trusted.reply).toMatchObject({ ok: true, code: 250 });
    const outside = await send('127.0.0.6');
    expect(outside.reply.code).toBe(530);
    const ids = (await sim.stats()).messageIds as string[];
    expect(ids).toContain(trusted.id);
    expect(ids).not.toContain(outside.id);
  });

  it("logs a failed login with the client's address", async () => {
    const r = await loginAndSend(via('127.0.0.7'), ALICE, 'wrong-password-for-tests-only');
    expect(r.login.code).toBe(535);
    const failed = await waitFor(
      'an auth_failed log line',
      () =>
        proxy
          .output()
          .split('\n')
          .filter((l) => l.includes('"auth_failed"'))
          .map((l) => JSON.parse(l) as { remoteAddress: string }),
      (ls) => ls.length > 0,
    );
    expect(failed.map((l) => l.remoteAddress)).toEqual(['127.0.0.7']);
  });

  // last: it stops the proxy
  it('marks a draining proxy DOWN through its /readyz', async () => {
    expect((await lb.backends())[0]).toMatchObject({ name: 'p1', status: 'UP' });
    const c = new TestClient(via('127.0.0.1'));
    await c.connect();
    expect((await c.login(ALICE, TEST_PASSWORD)).ok).toBe(true);
    // an open session keeps the drain going (up to shutdownTimeout) while /readyz says 503
    const stopping = proxy.stop();
    await waitFor(
      'haproxy to mark the draining proxy DOWN',
      () => lb.backends(),
      (bs) => bs[0]!.status.startsWith('DOWN'),
      10_000,
      50,
    );
    c.close();
    await stopping;
  });
});
