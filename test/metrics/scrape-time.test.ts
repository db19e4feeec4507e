// The instruments that change with every message are plain numbers of ours, read at scrape time:
// the gauges (inflight_messages, inflight_bytes, upstream_connections{provider,state}) show what is
// in flight or open at that moment, summed over relays and over pools; the counters
// (messages_total, message_bytes_total) are added to their series at each scrape, once; the
// histograms (message_duration_seconds, pool_wait_seconds) are merged into prom-client's series at
// each scrape and expose exactly what prom-client's own observe() would.
import { afterEach, describe, expect, it } from 'vitest';
import { Histogram, Registry } from 'prom-client';
import { Metrics } from '../../src/metrics/metrics.js';
import { Relay } from '../../src/relay/relay.js';
import { silentLogger } from '../../src/shared/log.js';
import { FakeSmtpServer } from '../helpers/fake-smtp-server.js';
import { sleep, until } from '../helpers/wait.js';
import { FakeDeliverer, metric, testAccount } from '../relay/helpers.js';
import { FakeTokens, account, env, makePools, msg } from '../upstream/helpers.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function relayOn(metrics: Metrics): { relay: Relay; deliverer: FakeDeliverer } {
  const deliverer = new FakeDeliverer();
  const relay = new Relay({
    deliverer,
    metrics,
    log: silentLogger,
    logMessages: false,
    maxInflightMessages: 100,
    maxInflightBytes: 1_000_000,
  });
  return { relay, deliverer };
}

describe('inflight gauges', () => {
  it('are the sum of the relays that share the registry, read at scrape time', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const a = relayOn(metrics);
    const b = relayOn(metrics);
    const acct = await testAccount();
    const ra = a.relay.reserve();
    ra.add(Buffer.alloc(100));
    const rb = b.relay.reserve();
    rb.add(Buffer.alloc(250));
    expect(await metric(metrics, 'inflight_bytes')).toBe(350);
    const openA = a.deliverer.hold();
    const sent = a.relay.send(acct, { from: acct.email, to: ['r@example.net'], size: 100 }, ra, 'tx');
    await new Promise((r) => setImmediate(r));
    expect(await metric(metrics, 'inflight_messages')).toBe(1);
    rb.release();
    expect(await metric(metrics, 'inflight_bytes')).toBe(100);
    openA();
    expect((await sent).code).toBe(250);
    expect(await metric(metrics, 'inflight_messages')).toBe(0);
    expect(await metric(metrics, 'inflight_bytes')).toBe(0);
  });
});

describe('upstream_connections', () => {
  it('shows a provider at 0 from its first pool, sums its pools, and follows busy and idle at scrape time', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let hold = false;
    const fake = await FakeSmtpServer.start({
      onMessage: () => (hold ? held.then(() => undefined) : undefined),
    });
    const metrics = new Metrics({ defaultMetrics: false });
    const pools = makePools(new FakeTokens(), metrics);
    cleanup.push(
      () => fake.close(),
      () => pools.close(1000),
    );
    const other = { ...account(fake.port), email: 'other@example.com', providerName: 'other' };
    const second = { ...account(fake.port), email: 'second@example.com' };
    pools.setAccounts([account(fake.port), second, other]);
    const conns = (provider: string, state: string) =>
      metric(metrics, 'upstream_connections', { provider, state });
    const text = await metrics.registry.metrics();
    expect(text).toContain('xoauth2_proxy_upstream_connections{provider="test",state="idle"} 0');
    expect(text).toContain('xoauth2_proxy_upstream_connections{provider="other",state="busy"} 0');

    await pools.deliver('alice@example.com', env(), msg());
    await pools.deliver(second.email, env(['x@example.net'], second.email), msg());
    await pools.deliver(other.email, env(['x@example.net'], other.email), msg());
    expect(await conns('test', 'idle')).toBe(2);
    expect(await conns('other', 'idle')).toBe(1);

    hold = true;
    const pending = pools.deliver(second.email, env(['x@example.net'], second.email), msg());
    await until(async () => (await conns('test', 'busy')) === 1);
    expect(await conns('test', 'idle')).toBe(1);
    release();
    expect((await pending).kind).toBe('delivered');
    expect(await conns('test', 'busy')).toBe(0);
    expect(await conns('test', 'idle')).toBe(2);

    await pools.close(1000);
    await until(() => fake.open === 0);
    await sleep(10);
    expect(await conns('test', 'idle')).toBe(0);
    expect(await conns('other', 'idle')).toBe(0);
  });
});

describe('per-message counters', () => {
  it('messages_total and message_bytes_total are exact at every scrape, across scrapes', async () => {
    const fake = await FakeSmtpServer.start();
    const metrics = new Metrics({ defaultMetrics: false });
    const pools = makePools(new FakeTokens(), metrics);
    cleanup.push(
      () => fake.close(),
      () => pools.close(1000),
    );
    pools.setAccounts([account(fake.port)]);
    const relay = new Relay({
      deliverer: pools,
      metrics,
      log: silentLogger,
      logMessages: false,
      maxInflightMessages: 100,
      maxInflightBytes: 1_000_000,
    });
    const acct = { ...(await testAccount()), provider: { name: 'test' } } as Awaited<
      ReturnType<typeof testAccount>
    >;
    const send = async (text: string) => {
      const r = relay.reserve();
      r.add(Buffer.from(text));
      return relay.send(acct, { from: acct.email, to: ['r@example.net'], size: r.bytes }, r, 'tx');
    };
    const delivered = () => metric(metrics, 'messages_total', { provider: 'test', result: 'delivered' });
    const bytes = () => metric(metrics, 'message_bytes_total', { provider: 'test' });
    expect((await metrics.registry.metrics()).includes('message_bytes_total{')).toBe(false);
    expect((await send('Subject: a\r\n\r\n1\r\n')).code).toBe(250);
    expect((await send('Subject: b\r\n\r\n22\r\n')).code).toBe(250);
    expect(await delivered()).toBe(2);
    expect(await bytes()).toBe(35);
    expect(await delivered()).toBe(2); // a second scrape adds nothing
    expect((await send('Subject: c\r\n\r\n333\r\n')).code).toBe(250);
    const text = await metrics.registry.metrics();
    expect(text).toContain('xoauth2_proxy_messages_total{provider="test",result="delivered"} 3');
    expect(text).toContain('xoauth2_proxy_message_bytes_total{provider="test"} 54');
    expect(text).not.toContain('result="rejected"');
  });
});

describe('per-message histograms', () => {
  /** the series of `name` in an exposition: bucket and count lines as they are, the sum as a number */
  function series(text: string, name: string): { lines: string[]; sums: Record<string, number> } {
    const lines = text.split('\n').filter((l) => l.startsWith(name + '_') && !l.includes('_sum'));
    const sums: Record<string, number> = {};
    for (const l of text.split('\n')) {
      const m = new RegExp(`^${name}_sum(\\{[^}]*\\})? (\\S+)$`).exec(l);
      if (m) sums[m[1] ?? ''] = Number(m[2]);
    }
    return { lines, sums };
  }

  it('expose what prom-client observe() would, across scrapes and providers', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const ref = new Registry();
    const name = 'xoauth2_proxy_message_duration_seconds';
    const refH = new Histogram({
      name,
      help: 'End of DATA to the reply sent to the client',
      labelNames: ['provider'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [ref],
    });
    const observe = (provider: string, values: number[]) => {
      const d = metrics.forProvider(provider).duration;
      for (const v of values) {
        d.observe(v);
        refH.observe({ provider }, v);
      }
    };
    const same = async () => {
      const ours = series(await metrics.registry.metrics(), name);
      const theirs = series(await ref.metrics(), name);
      expect(ours.lines).toEqual(theirs.lines);
      expect(Object.keys(ours.sums)).toEqual(Object.keys(theirs.sums));
      for (const k of Object.keys(theirs.sums)) expect(ours.sums[k]).toBeCloseTo(theirs.sums[k]!, 9);
      return ours;
    };
    expect((await same()).lines).toEqual([]);
    // bounds are inclusive (le); above the last bound counts only in +Inf
    observe('p1', [0, 0.0002, 0.001, 0.0011, 0.0025, 0.003, 0.02, 0.7, 2, 30, 31, 100]);
    const first = await same();
    expect(first.lines).toContain(`${name}_bucket{le="0.001",provider="p1"} 3`);
    expect(first.lines).toContain(`${name}_count{provider="p1"} 12`);
    expect(first.sums['{provider="p1"}']).toBeCloseTo(163.7278, 9);
    await same(); // a scrape with nothing new changes nothing
    observe('p2', [0.004]);
    observe('p1', [0.0005, 9]);
    const third = await same();
    expect(third.lines).toContain(`${name}_count{provider="p1"} 14`);
    expect(third.lines).toContain(`${name}_bucket{le="0.005",provider="p2"} 1`);
  });
});
