// Pools over real sockets: limits, FIFO, timeouts, retry on reused connections, tokens, reload, close.
import { afterEach, describe, expect, it } from 'vitest';
import { SmtpError, reply } from '../../src/shared/smtp-reply.js';
import { expectSmtpError } from '../helpers/expect-rejection.js';
import type { FakeSmtpOptions } from '../helpers/fake-smtp-server.js';
import { sleep, until } from '../helpers/wait.js';
import {
  FakeTokens,
  GOOD_TOKEN,
  USER,
  account,
  env,
  fakeWithPools,
  makePools,
  msg,
  startSink,
} from './helpers.js';
import type { UpstreamAccount } from '../../src/upstream/types.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const setup = (opts: FakeSmtpOptions = {}, over: Partial<UpstreamAccount> = {}, tokens = new FakeTokens()) =>
  fakeWithPools(cleanup, opts, over, tokens);

describe('pool bursts', () => {
  it('a burst waits for the busy connection when that beats opening one per message', async () => {
    // a setup (AUTH) much slower than a message, as with TLS to a provider
    const { fake, pools } = await setup(
      { onCommand: (l) => (l.startsWith('AUTH') ? sleep(80).then(() => undefined) : undefined) },
      { maxConnections: 10 },
    );
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered'); // the first setup
    const t0 = performance.now();
    const results = await Promise.all(Array.from({ length: 10 }, () => pools.deliver(USER, env(), msg())));
    const took = performance.now() - t0;
    expect(results.every((r) => r.kind === 'delivered')).toBe(true);
    expect(fake.accepted).toHaveLength(11);
    // before: one connection (and setup) per message of the burst (10 in all)
    expect(fake.conns.length).toBeLessThanOrEqual(3);
    // and no slower for it than one setup and the messages
    expect(took).toBeLessThan(80 * 2);
  });

  it('a first setup that waited for a token refresh does not make the burst wait on one connection', async () => {
    // the first token takes 600 ms (a refresh); connecting and AUTH are quick; a message takes 40 ms
    class SlowFirstToken extends FakeTokens {
      override async getToken(email: string): Promise<string> {
        if (this.calls === 0) await sleep(600);
        return super.getToken(email);
      }
    }
    const { fake, pools } = await setup(
      { onMessage: () => sleep(40).then(() => undefined) },
      { maxConnections: 6 },
      new SlowFirstToken(),
    );
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    const t0 = performance.now();
    const results = await Promise.all(Array.from({ length: 6 }, () => pools.deliver(USER, env(), msg())));
    expect(results.every((r) => r.kind === 'delivered')).toBe(true);
    // judged on the 600 ms setup, the six would queue on one connection (6 x 40 ms); judged on the
    // connection's own setup, opening beats waiting and they go side by side
    expect(performance.now() - t0).toBeLessThan(6 * 40 * 0.6);
    expect(fake.conns.length).toBeGreaterThan(2);
  });

  it('a queue that lasts longer than a setup opens more connections, up to the limit', async () => {
    // the first messages are quick, so the burst chooses to wait; then every message takes 150 ms
    const { fake, pools } = await setup(
      {
        onCommand: (l) => (l.startsWith('AUTH') ? sleep(40).then(() => undefined) : undefined),
        onMessage: (_m, _c, k) => (k < 3 ? undefined : sleep(150).then(() => undefined)),
      },
      { maxConnections: 4 },
    );
    for (let i = 0; i < 3; i++) expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    const t0 = performance.now();
    const results = await Promise.all(Array.from({ length: 12 }, () => pools.deliver(USER, env(), msg())));
    const took = performance.now() - t0;
    expect(results.every((r) => r.kind === 'delivered')).toBe(true);
    expect(fake.maxOpen).toBe(4);
    // one connection would take 12 x 150 ms; four, ramped up one setup apart, about a quarter of it
    expect(took).toBeLessThan(12 * 150 * 0.6);
  });
});

describe('pool limits and order', () => {
  it('never has more than maxConnections open at the upstream (50 concurrent deliveries, max 3)', async () => {
    const { fake, pools } = await setup(
      { onMessage: () => sleep(5).then(() => undefined) },
      { maxConnections: 3 },
    );
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => pools.deliver(USER, env([`r${i}@x.test`]), msg())),
    );
    expect(results.every((r) => r.kind === 'delivered')).toBe(true);
    expect(fake.accepted).toHaveLength(50);
    expect(fake.maxOpen).toBe(3);
    expect(fake.conns).toHaveLength(3);
  });

  it('stays within maxConnections while connections are retired and replaced under load', async () => {
    // a slow QUIT keeps retired connections open at the server for a while: they must still count
    const { fake, pools } = await setup(
      {
        onMessage: () => sleep(2).then(() => undefined),
        onCommand: (l) => (l === 'QUIT' ? sleep(20).then(() => undefined) : undefined),
      },
      { maxConnections: 3, maxMessagesPerConnection: 4 },
    );
    const results = await Promise.all(Array.from({ length: 50 }, () => pools.deliver(USER, env(), msg())));
    expect(results.every((r) => r.kind === 'delivered')).toBe(true);
    expect(fake.maxOpen).toBeLessThanOrEqual(3);
    expect(fake.conns.length).toBeGreaterThanOrEqual(13);
    expect(Math.max(...fake.conns.map((c) => c.messages))).toBeLessThanOrEqual(4);
  });

  it("a retiring connection's slot stays taken until the upstream has closed it", async () => {
    const { fake, pools } = await setup(
      { onCommand: (l) => (l === 'QUIT' ? sleep(60).then(() => undefined) : undefined) },
      { maxConnections: 1, maxMessagesPerConnection: 1 },
    );
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    // the first connection is still saying QUIT: the next message waits for it to go
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    expect(fake.conns).toHaveLength(2);
    expect(fake.maxOpen).toBe(1);
  });

  it('serves waiters first-in first-out', async () => {
    const { fake, pools } = await setup(
      { onMessage: () => sleep(15).then(() => undefined) },
      { maxConnections: 1 },
    );
    const senders = Array.from({ length: 6 }, (_, i) => `s${i}@example.com`);
    const pending = senders.map((s) => pools.deliver(USER, env(['r@x.test'], s), msg()));
    await until(() => pools.stats(USER)?.waiting === 5);
    expect(pools.stats(USER)).toEqual({ idle: 0, busy: 0, connecting: 1, waiting: 5 });
    await Promise.all(pending);
    expect(fake.accepted.map((m) => m.from)).toEqual(senders);
    expect(fake.conns).toHaveLength(1);
    expect(pools.stats(USER)).toEqual({ idle: 1, busy: 0, connecting: 0, waiting: 0 });
  });

  it('a waiter gets 451 4.7.0 after acquireTimeoutMs', async () => {
    const { fake, pools } = await setup(
      { onMessage: () => sleep(400).then(() => undefined) },
      { maxConnections: 1, acquireTimeoutMs: 100 },
    );
    const first = pools.deliver(USER, env(), msg());
    const t0 = Date.now();
    const err = await expectSmtpError(pools.deliver(USER, env(), msg()));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
    expect(err.code).toBe('POOL_TIMEOUT');
    expect(err.reply).toEqual(
      reply(451, '4.7.0', `No upstream connection for ${USER} became free within 0.1 s`),
    );
    expect((await first).kind).toBe('delivered');
    expect(fake.accepted).toHaveLength(1);
    expect(pools.stats(USER)?.waiting).toBe(0);
  });

  it('QUITs after maxMessagesPerConnection messages', async () => {
    const { fake, pools } = await setup({}, { maxMessagesPerConnection: 2 });
    for (let i = 0; i < 5; i++) expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    // each connection carries its two messages; the one after them is a spare, opened ahead
    expect(fake.conns.slice(0, 3).map((c) => c.messages)).toEqual([2, 2, 1]);
    expect(fake.conns.slice(3).every((c) => c.messages === 0)).toBe(true);
    await until(() => fake.conns[1].closed);
    expect(fake.conns[0].commands.at(-1)).toBe('QUIT');
    expect(fake.conns[1].commands.at(-1)).toBe('QUIT');
    expect(fake.conns[2].closed).toBe(false);
  });

  it('replaces a connection retired for its message count in the background, before the next message', async () => {
    const { fake, pools } = await setup({}, { maxMessagesPerConnection: 2 });
    for (let i = 0; i < 2; i++) expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    // no message is waiting, yet a ready connection is: the next message pays no connect
    await until(() => pools.stats(USER)?.idle === 1 && fake.conns[0]!.closed);
    expect(fake.conns).toHaveLength(2);
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    expect(fake.conns.slice(0, 2).map((c) => c.messages)).toEqual([2, 1]);
  });

  it('opens the replacement before a busy connection is spent: no message waits for a connection setup', async () => {
    const SETUP_MS = 300;
    const { fake, pools } = await setup(
      { onCommand: (l) => (l.startsWith('AUTH') ? sleep(SETUP_MS).then(() => undefined) : undefined) },
      { maxMessagesPerConnection: 20 },
    );
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered'); // pays the first setup
    const waits: number[] = [];
    for (let i = 0; i < 45; i++) {
      await sleep(25); // ~30 messages a second on one connection: spent after ~0.7 s
      const t0 = performance.now();
      expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
      waits.push(performance.now() - t0);
    }
    expect(fake.conns.filter((c) => c.messages > 0).length).toBeGreaterThanOrEqual(3);
    expect(fake.conns.slice(0, 2).map((c) => c.messages)).toEqual([20, 20]);
    // before: the message after each retirement waited for the rest of connect + EHLO + AUTH
    // (SETUP_MS less the pause it came after)
    expect(Math.max(...waits)).toBeLessThan(SETUP_MS / 3);
  });

  it('a client login opens the first connection, so the first message finds it ready', async () => {
    const { fake, pools } = await setup();
    pools.prepare(USER);
    pools.prepare(USER); // one is enough
    await until(() => pools.stats(USER)?.idle === 1);
    expect(fake.conns).toHaveLength(1);
    expect(fake.conns[0]!.commands).toContain('AUTH');
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    expect(fake.conns).toHaveLength(1);
    pools.prepare('nobody@example.com'); // not an account: nothing
  });

  it('a message that waited for a background replacement that failed connects on its own at once', async () => {
    let auths = 0;
    const { fake, pools } = await setup(
      {
        onCommand: (l) =>
          l.startsWith('AUTH') && ++auths === 2
            ? sleep(100).then(() => '454 4.7.0 Try again later')
            : undefined,
      },
      { maxConnections: 2, maxMessagesPerConnection: 1, acquireTimeoutMs: 3000 },
    );
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    // the replacement is on its way (its AUTH is slow and refused): the next message waits for it
    await until(() => auths === 2);
    const t0 = Date.now();
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(fake.conns).toHaveLength(3);
  });

  it('closes idle connections after idleTimeoutMs with QUIT', async () => {
    const { fake, pools } = await setup({}, { idleTimeoutMs: 100 });
    await pools.deliver(USER, env(), msg());
    expect(pools.stats(USER)?.idle).toBe(1);
    await until(() => fake.conns[0].closed);
    expect(fake.conns[0].commands.at(-1)).toBe('QUIT');
    expect(pools.stats(USER)).toEqual({ idle: 0, busy: 0, connecting: 0, waiting: 0 });
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    expect(fake.conns).toHaveLength(2);
  });

  it('does not reuse a connection older than maxAgeMs', async () => {
    const { fake, pools } = await setup({}, { maxAgeMs: 400 });
    await pools.deliver(USER, env(), msg());
    await pools.deliver(USER, env(), msg());
    expect(fake.conns).toHaveLength(1);
    await sleep(450);
    await pools.deliver(USER, env(), msg());
    expect(fake.conns).toHaveLength(2);
    await until(() => fake.conns[0].closed);
  });

  it('notices an idle connection the upstream closed and opens a new one (no NOOP probing)', async () => {
    const { fake, pools } = await setup();
    await pools.deliver(USER, env(), msg());
    fake.conns[0].socket.end('421 4.4.2 Idle too long, closing\r\n');
    await until(() => pools.stats(USER)?.idle === 0);
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    expect(fake.conns).toHaveLength(2);
    expect(fake.commands()).not.toContain('NOOP');
  });

  it('limits messages per minute per mailbox before taking a connection', async () => {
    const { fake, pools } = await setup({}, { messagesPerMinute: 3 });
    for (let i = 0; i < 3; i++) expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    const err = await expectSmtpError(pools.deliver(USER, env(), msg()));
    expect(err.code).toBe('RATE_LIMITED');
    expect(err.reply).toEqual(
      reply(451, '4.7.0', `Mailbox ${USER} reached its limit of 3 messages per minute`),
    );
    expect(fake.accepted).toHaveLength(3);
  });
});

describe('retry when a reused connection fails before the final reply', () => {
  it('a dropped reused connection is retried once on a fresh one and delivered', async () => {
    let n = 0;
    const { fake, pools } = await setup({ onMessage: () => (n++ === 1 ? 'drop' : undefined) });
    expect((await pools.deliver(USER, env(), msg('Subject: one\r\n\r\n1\r\n'))).kind).toBe('delivered');
    const r = await pools.deliver(USER, env(), msg('Subject: two\r\n\r\n2\r\n'));
    expect(r.kind).toBe('delivered');
    expect(fake.conns).toHaveLength(2);
    expect(fake.accepted.map((m) => m.data.toString())).toEqual([
      'Subject: one\r\n\r\n1\r\n',
      'Subject: two\r\n\r\n2\r\n',
    ]);
  });

  it('a 421 to MAIL on a reused connection counts as lost and is retried', async () => {
    let mails = 0;
    const { fake, pools } = await setup({
      onCommand: (l) =>
        l.startsWith('MAIL') && ++mails === 2 ? '421 4.7.0 Try again later, closing connection' : undefined,
    });
    await pools.deliver(USER, env(), msg());
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    expect(fake.accepted).toHaveLength(2);
    expect(fake.conns).toHaveLength(2);
  });

  it('a silent reused connection times out and is retried', async () => {
    let n = 0;
    const { fake, pools } = await setup(
      { onMessage: () => (n++ === 1 ? 'silent' : undefined) },
      { commandTimeoutMs: 150 },
    );
    await pools.deliver(USER, env(), msg());
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    expect(fake.conns).toHaveLength(2);
  });

  it('on a fresh connection a drop before the final reply is 451 4.4.2, never delivered', async () => {
    const { fake, pools } = await setup({ onMessage: () => 'drop' });
    const err = await expectSmtpError(pools.deliver(USER, env(), msg()));
    expect(err.code).toBe('UPSTREAM_CONNECTION_LOST');
    expect(err.reply).toEqual(
      reply(451, '4.4.2', 'Upstream connection lost before the message was accepted'),
    );
    // the body did arrive; without the final reply the upstream did not take it, and we did not retry
    expect(fake.received).toHaveLength(1);
    expect(fake.conns).toHaveLength(1);
  });

  it('retries only once', async () => {
    let n = 0;
    const { fake, pools } = await setup({ onMessage: () => (n++ === 0 ? undefined : 'drop') });
    await pools.deliver(USER, env(), msg());
    const err = await expectSmtpError(pools.deliver(USER, env(), msg()));
    expect(err.code).toBe('UPSTREAM_CONNECTION_LOST');
    expect(fake.conns).toHaveLength(2);
    expect(fake.received).toHaveLength(3);
  });
});

describe('access tokens', () => {
  it('a rejected token (334 challenge, then 535) is invalidated and replaced once', async () => {
    const sink = await startSink();
    const tokens = new FakeTokens(['stale-token', GOOD_TOKEN]);
    const pools = makePools(tokens);
    pools.setAccounts([account(sink.port)]);
    cleanup.push(
      () => sink.close(),
      () => pools.close(500),
    );
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    expect(tokens.invalidated).toEqual([[USER, 'stale-token']]);
    expect(sink.auths.map((a) => a.token)).toEqual(['stale-token', GOOD_TOKEN]);
    expect(sink.messages).toHaveLength(1);
  });

  it('a token rejected twice -> 451 4.7.0 UPSTREAM_AUTH_REJECTED', async () => {
    const sink = await startSink();
    const tokens = new FakeTokens(['bad-1', 'bad-2']);
    const pools = makePools(tokens);
    pools.setAccounts([account(sink.port)]);
    cleanup.push(
      () => sink.close(),
      () => pools.close(500),
    );
    const err = await expectSmtpError(pools.deliver(USER, env(), msg()));
    expect(err.code).toBe('UPSTREAM_AUTH_REJECTED');
    expect(err.reply).toEqual(reply(451, '4.7.0', `Upstream rejected the access token for ${USER}`));
    expect(tokens.invalidated).toEqual([
      [USER, 'bad-1'],
      [USER, 'bad-2'],
    ]);
    expect(sink.messages).toHaveLength(0);
  });

  it('Microsoft-style 535 5.7.3 is a token rejection too', async () => {
    const tokens = new FakeTokens(['old', 'new']);
    const { fake, pools } = await setup(
      {
        auth: (_u, t) =>
          t === 'new' ? '235 2.7.0 Authentication successful' : '535 5.7.3 Authentication unsuccessful',
      },
      {},
      tokens,
    );
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    expect(tokens.invalidated).toEqual([[USER, 'old']]);
    expect(fake.conns).toHaveLength(2);
  });

  it('a temporary 4xx at AUTH is not a token problem: 451 4.4.1 with the upstream text', async () => {
    const tokens = new FakeTokens();
    const { fake, pools } = await setup(
      { auth: () => '432 4.3.2 Concurrent connections limit exceeded' },
      {},
      tokens,
    );
    const err = await expectSmtpError(pools.deliver(USER, env(), msg()));
    expect(err.code).toBe('UPSTREAM_AUTH_TEMPFAIL');
    expect(err.reply.code).toBe(451);
    expect(err.reply.enhanced).toBe('4.4.1');
    expect(err.reply.text).toContain('432 4.3.2 Concurrent connections limit exceeded');
    expect(tokens.invalidated).toEqual([]);
    expect(fake.conns).toHaveLength(1);
  });

  it('another 5xx at AUTH -> 451 4.7.0 UPSTREAM_AUTH_FAILED, token kept', async () => {
    const tokens = new FakeTokens();
    const { pools } = await setup(
      { auth: () => '534 5.7.9 Application-specific password required' },
      {},
      tokens,
    );
    const err = await expectSmtpError(pools.deliver(USER, env(), msg()));
    expect(err.code).toBe('UPSTREAM_AUTH_FAILED');
    expect(err.reply.code).toBe(451);
    expect(err.reply.text).toContain('534 5.7.9 Application-specific password required');
    expect(tokens.invalidated).toEqual([]);
  });

  it('token source errors propagate unchanged', async () => {
    const boom = new SmtpError('TOKEN_REFRESH_FAILED', reply(451, '4.4.3', 'Token refresh failed: timeout'));
    const { fake, pools } = await setup({}, {}, {
      getToken: () => Promise.reject(boom),
      invalidate: () => {},
    } as unknown as FakeTokens);
    expect(await pools.deliver(USER, env(), msg()).catch((e: unknown) => e)).toBe(boom);
    expect(fake.conns).toHaveLength(0);
  });

  it('sends the token only inside AUTH, as user=<account email>', async () => {
    const seen: [string, string][] = [];
    const { fake, pools } = await setup({ auth: (u, t) => (seen.push([u, t]), '235 2.7.0 OK') });
    await pools.deliver(USER, env(['x@y.test'], 'other@example.org'), msg());
    expect(seen).toEqual([[USER, GOOD_TOKEN]]);
    const wire = fake.conns[0].chunks.map((c) => c.toString()).join('');
    expect(wire).not.toContain(GOOD_TOKEN); // only base64 inside AUTH
  });
});

describe('reload and shutdown', () => {
  it('setAccounts keeps unchanged pools (same warm connection) and resets changed ones', async () => {
    const { fake, pools } = await setup();
    await pools.deliver(USER, env(), msg());
    pools.setAccounts([account(fake.port)]); // equal settings, new object
    await pools.deliver(USER, env(), msg());
    expect(fake.conns).toHaveLength(1);

    pools.setAccounts([account(fake.port, { maxConnections: 2 })]);
    await until(() => fake.conns[0].closed);
    expect(fake.conns[0].commands.at(-1)).toBe('QUIT');
    await pools.deliver(USER, env(), msg());
    expect(fake.conns).toHaveLength(2);
    expect(fake.accepted).toHaveLength(3);
  });

  it('a busy connection of a changed account finishes its message, then QUITs', async () => {
    const { fake, pools } = await setup({ onMessage: () => sleep(150).then(() => undefined) });
    const inFlight = pools.deliver(USER, env(), msg());
    await until(() => fake.received.length === 1);
    pools.setAccounts([account(fake.port, { messagesPerMinute: 100 })]);
    expect((await inFlight).kind).toBe('delivered');
    await until(() => fake.conns[0].closed);
    expect(fake.conns[0].commands.at(-1)).toBe('QUIT');
    await pools.deliver(USER, env(), msg());
    expect(fake.conns).toHaveLength(2);
  });

  it('a removed account is drained and refused', async () => {
    const { fake, pools } = await setup();
    await pools.deliver(USER, env(), msg());
    pools.setAccounts([]);
    await until(() => fake.conns[0].closed);
    expect(fake.conns[0].commands.at(-1)).toBe('QUIT');
    const err = await expectSmtpError(pools.deliver(USER, env(), msg()));
    expect(err.code).toBe('UNKNOWN_ACCOUNT');
    expect(err.reply.code).toBe(451);
    expect(pools.stats(USER)).toBeUndefined();
  });

  it('close() lets the busy message finish, QUITs everything and refuses new deliveries', async () => {
    const { fake, pools } = await setup(
      { onMessage: () => sleep(150).then(() => undefined) },
      { maxConnections: 2 },
    );
    await Promise.all([pools.deliver(USER, env(), msg()), pools.deliver(USER, env(), msg())]);
    const inFlight = pools.deliver(USER, env(), msg());
    await until(() => fake.received.length === 3);
    await pools.close(2000);
    expect((await inFlight).kind).toBe('delivered');
    await until(() => fake.open === 0);
    expect(fake.conns.map((c) => c.commands.at(-1))).toEqual(['QUIT', 'QUIT']);
    const err = await expectSmtpError(pools.deliver(USER, env(), msg()));
    expect(err.reply).toEqual(reply(421, '4.3.2', 'Service shutting down, try again later'));
  });

  it('close() cuts busy connections at its deadline; their messages get 451 4.4.2, not a retry', async () => {
    let n = 0;
    const { fake, pools } = await setup(
      { onMessage: () => (n++ === 0 ? undefined : 'silent') },
      { commandTimeoutMs: 10_000 },
    );
    await pools.deliver(USER, env(), msg()); // makes the next one a reused connection
    const inFlight = pools.deliver(USER, env(), msg());
    await until(() => fake.received.length === 2);
    const t0 = Date.now();
    await pools.close(200);
    expect(Date.now() - t0).toBeLessThan(1500);
    const err = await expectSmtpError(inFlight);
    expect(err.reply.enhanced).toBe('4.4.2');
    expect(fake.conns).toHaveLength(1);
    await until(() => fake.open === 0);
  });
});
