// Connection leases: pools of several instances (members of one InProcessHub, as workers are)
// share each mailbox's maxConnections; a refused lease queues the message, never fails it early.
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/shared/log.js';
import { detachedMetrics } from '../../src/metrics/metrics.js';
import { InProcessHub } from '../../src/coordination/in-process.js';
import type { StateStore } from '../../src/state/store.js';
import { FakeSmtpServer } from '../helpers/fake-smtp-server.js';
import { expectSmtpError } from '../helpers/expect-rejection.js';
import { sleep, until } from '../helpers/wait.js';
import { FakeTokens, USER, account, env, makePools, msg } from './helpers.js';
import type { UpstreamAccount } from '../../src/upstream/types.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function instances(n: number, over: Partial<UpstreamAccount>, onMessage?: () => Promise<undefined>) {
  const fake = await FakeSmtpServer.start(onMessage ? { onMessage } : {});
  const hub = new InProcessHub({
    store: undefined as unknown as StateStore,
    log: silentLogger,
    leaseTtlMs: 2_000,
  });
  const members = Array.from({ length: n }, (_, i) => hub.member(`instance-${i}`));
  const pools = members.map((m) => makePools(new FakeTokens(), detachedMetrics(), m));
  for (const p of pools) p.setAccounts([account(fake.port, over)]);
  cleanup.push(
    () => fake.close(),
    ...pools.map((p) => () => p.close(1000)),
    ...members.map((m) => () => m.close()),
  );
  return { fake, pools, members, hub };
}

describe('connection leases across instances', () => {
  it('three instances, maxConnections 3: never more than 3 at the upstream, every message delivered', async () => {
    const { fake, pools } = await instances(3, { maxConnections: 3 }, () => sleep(3).then(() => undefined));
    const sends = Array.from({ length: 90 }, (_, i) =>
      pools[i % 3].deliver(USER, env([`r${i}@x.test`]), msg()),
    );
    const results = await Promise.all(sends);
    expect(results.every((r) => r.kind === 'delivered')).toBe(true);
    expect(fake.accepted).toHaveLength(90);
    expect(fake.maxOpen).toBeLessThanOrEqual(3);
  });

  it('a message that cannot get a slot within acquireTimeout gets a temporary 451, not a failure', async () => {
    let hold = true;
    const { pools } = await instances(2, { maxConnections: 1, acquireTimeoutMs: 300 }, async () => {
      while (hold) await sleep(10);
      return undefined;
    });
    // instance 0's one connection stays busy past instance 1's acquireTimeout
    const first = pools[0].deliver(USER, env(), msg());
    await until(() => pools[0].stats(USER)?.busy === 1);
    const started = Date.now();
    const err = await expectSmtpError(pools[1].deliver(USER, env(), msg()));
    expect(err.reply.code).toBe(451);
    expect(Date.now() - started).toBeLessThan(1_500);
    hold = false;
    expect((await first).kind).toBe('delivered');
  });

  it('an instance that dies without giving its slots back: they return after the lease TTL', async () => {
    const { fake, pools, members } = await instances(2, { maxConnections: 1, acquireTimeoutMs: 5_000 });
    expect((await pools[0].deliver(USER, env(), msg())).kind).toBe('delivered');
    // a crash: its heartbeat stops and its leases are not released; its socket stays open too
    await members[0].close({ release: false });
    const started = Date.now();
    expect((await pools[1].deliver(USER, env(), msg())).kind).toBe('delivered');
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(1_500);
    expect(waited).toBeLessThan(4_500);
    expect(fake.accepted).toHaveLength(2);
  });
});

describe('slots go where the mail is', () => {
  it('an instance holding every slot idle gives one up when another is refused (no wait for the idle timeout)', async () => {
    const { fake, pools } = await instances(
      2,
      { maxConnections: 2, idleTimeoutMs: 60_000, acquireTimeoutMs: 5_000 },
      () => sleep(20).then(() => undefined),
    );
    // instance 0 opens both connections; they stay idle for a minute
    await Promise.all([0, 1].map(() => pools[0].deliver(USER, env(), msg())));
    expect(pools[0].stats(USER)).toMatchObject({ idle: 2 });
    const started = Date.now();
    expect((await pools[1].deliver(USER, env(), msg())).kind).toBe('delivered');
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(pools[0].stats(USER)).toMatchObject({ idle: 1 });
    expect(fake.maxOpen).toBeLessThanOrEqual(2);
  });

  it('a busy instance gives up the next connection it releases with nothing waiting', async () => {
    let hold = true;
    const { fake, pools } = await instances(
      2,
      { maxConnections: 1, idleTimeoutMs: 60_000, acquireTimeoutMs: 5_000 },
      async () => {
        while (hold) await sleep(10);
        return undefined;
      },
    );
    const first = pools[0].deliver(USER, env(), msg());
    await until(() => pools[0].stats(USER)?.busy === 1);
    const second = pools[1].deliver(USER, env(), msg());
    await until(() => pools[1].stats(USER)?.waiting === 1);
    await sleep(300); // the refusal is announced while instance 0's connection is busy
    hold = false;
    expect((await first).kind).toBe('delivered');
    expect((await second).kind).toBe('delivered');
    expect(pools[0].stats(USER)).toMatchObject({ idle: 0, busy: 0 });
    expect(fake.maxOpen).toBe(1);
  });
});

describe('rate limit across instances', () => {
  it('messagesPerMinute is one budget for all instances', async () => {
    const { fake, pools } = await instances(2, { messagesPerMinute: 5 });
    const out = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => pools[i % 2].deliver(USER, env(), msg())),
    );
    expect(out.filter((r) => r.status === 'fulfilled')).toHaveLength(5);
    expect(fake.accepted).toHaveLength(5);
    for (const r of out.filter((x) => x.status === 'rejected'))
      expect(((r as PromiseRejectedResult).reason as { reply: { code: number } }).reply.code).toBe(451);
  });
});
