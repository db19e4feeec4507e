// The pool's counts (stats() and the upstream_connections{state} gauge) stay true to what is open at
// the upstream through every way a connection changes state: connect, hand-over, retirement for
// message count, idle timeout, the upstream closing an idle connection, a failed setup, a retry.
import { afterEach, describe, expect, it } from 'vitest';
import { detachedMetrics, type Metrics } from '../../src/metrics/metrics.js';
import { FakeSmtpServer, type FakeSmtpOptions } from '../helpers/fake-smtp-server.js';
import { sleep, until } from '../helpers/wait.js';
import { FakeTokens, USER, account, env, makePools, msg } from './helpers.js';
import type { UpstreamAccount } from '../../src/upstream/types.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function setup(opts: FakeSmtpOptions, over: Partial<UpstreamAccount>) {
  const fake = await FakeSmtpServer.start(opts);
  const metrics = detachedMetrics();
  const pools = makePools(new FakeTokens(), metrics);
  pools.setAccounts([account(fake.port, over)]);
  cleanup.push(
    () => fake.close(),
    () => pools.close(1000),
  );
  return { fake, pools, metrics };
}

async function gauge(metrics: Metrics): Promise<{ idle: number; busy: number }> {
  const text = await metrics.registry.metrics();
  const read = (state: string) => {
    const m = new RegExp(
      `xoauth2_proxy_upstream_connections\\{provider="test",state="${state}"\\} (\\S+)`,
    ).exec(text);
    return m ? Number(m[1]) : 0;
  };
  return { idle: read('idle'), busy: read('busy') };
}

describe('pool state counts', () => {
  it('match the upstream after concurrent load with retirements, and drop to zero at close', async () => {
    const { fake, pools, metrics } = await setup(
      { onMessage: () => sleep(2).then(() => undefined) },
      { maxConnections: 3, maxMessagesPerConnection: 3 },
    );
    const results = await Promise.all(Array.from({ length: 40 }, () => pools.deliver(USER, env(), msg())));
    expect(results.every((r) => r.kind === 'delivered')).toBe(true);
    // retired connections finish their QUIT, a spare opened ahead finishes its setup; what stays is idle
    await until(() => pools.stats(USER)!.connecting === 0 && fake.open === pools.stats(USER)!.idle);
    const stats = pools.stats(USER)!;
    expect(stats).toMatchObject({ busy: 0, connecting: 0, waiting: 0 });
    expect(stats.idle).toBeGreaterThan(0);
    expect(await gauge(metrics)).toEqual({ idle: stats.idle, busy: 0 });
    await pools.close(1000);
    await until(() => fake.open === 0);
    expect(await gauge(metrics)).toEqual({ idle: 0, busy: 0 });
  });

  it('count an idle connection out when it times out or the upstream closes it', async () => {
    const { fake, pools, metrics } = await setup({}, { maxConnections: 2, idleTimeoutMs: 300 });
    await Promise.all([pools.deliver(USER, env(), msg()), pools.deliver(USER, env(), msg())]);
    expect(pools.stats(USER)).toEqual({ idle: 2, busy: 0, connecting: 0, waiting: 0 });
    expect(await gauge(metrics)).toEqual({ idle: 2, busy: 0 });
    fake.conns[0].socket.destroy();
    await until(() => pools.stats(USER)!.idle === 1);
    expect(await gauge(metrics)).toEqual({ idle: 1, busy: 0 });
    await until(() => fake.open === 0);
    expect(pools.stats(USER)).toEqual({ idle: 0, busy: 0, connecting: 0, waiting: 0 });
    expect(await gauge(metrics)).toEqual({ idle: 0, busy: 0 });
  });

  it('count a failed setup and a retried send out, and the retry in', async () => {
    let auths = 0;
    let bodies = 0;
    const { fake, pools, metrics } = await setup(
      {
        auth: () => (++auths === 2 ? '454 4.7.0 Try again later' : '235 2.7.0 Accepted'),
        onMessage: () => (++bodies === 2 ? 'drop' : undefined),
      },
      { maxConnections: 1 },
    );
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    // the reused connection drops; its retry's setup is refused; the next message connects again
    await expect(pools.deliver(USER, env(), msg())).rejects.toMatchObject({ code: 'UPSTREAM_AUTH_TEMPFAIL' });
    expect(pools.stats(USER)).toEqual({ idle: 0, busy: 0, connecting: 0, waiting: 0 });
    expect(await gauge(metrics)).toEqual({ idle: 0, busy: 0 });
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    expect(pools.stats(USER)).toEqual({ idle: 1, busy: 0, connecting: 0, waiting: 0 });
    expect(await gauge(metrics)).toEqual({ idle: 1, busy: 0 });
    expect(fake.conns).toHaveLength(3);
  });
});
