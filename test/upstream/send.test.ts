// One message over real sockets: security modes, pipelining, dot-stuffing, exact reply pass-through,
// refused recipients, connection setup failures.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { expectSmtpError } from '../helpers/expect-rejection.js';
import type { FakeSmtpOptions } from '../helpers/fake-smtp-server.js';
import { until } from '../helpers/wait.js';
import { detachedMetrics } from '../../src/metrics/metrics.js';
import {
  FakeTokens,
  USER,
  account,
  env,
  fakeWithPools,
  makePools,
  msg,
  selfSignedCert,
  startSink,
  type Sink,
} from './helpers.js';
import { freePort } from '../../src/tools/harness/ports.js';
import type { UpstreamAccount } from '../../src/upstream/types.js';

let cert: { cert: string; key: string };
const cleanup: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  cert = await selfSignedCert();
});

afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function sinkAndPools(opts: Parameters<typeof startSink>[0] = {}, over = {}) {
  const sink = await startSink(opts);
  const pools = makePools();
  pools.setAccounts([account(sink.port, over)]);
  cleanup.push(
    () => sink.close(),
    () => pools.close(1000),
  );
  return { sink, pools };
}

const fakeAndPools = (
  opts: FakeSmtpOptions = {},
  over: Partial<UpstreamAccount> = {},
  tokens = new FakeTokens(),
) => fakeWithPools(cleanup, opts, over, tokens);

describe('delivery over each security mode', () => {
  for (const security of ['none', 'starttls', 'tls'] as const) {
    it(`delivers over ${security}, authenticating with XOAUTH2 as the account`, async () => {
      const sink = await startSink({ security, cert });
      const pools = makePools();
      pools.setAccounts([
        account(sink.port, {
          smtp: { host: '127.0.0.1', port: sink.port, security, rejectUnauthorized: true, ca: cert.cert },
        }),
      ]);
      cleanup.push(
        () => sink.close(),
        () => pools.close(1000),
      );
      const r = await pools.deliver(USER, env(['bob@example.net'], 'someone-else@example.org'), msg());
      expect(r.kind).toBe('delivered');
      expect(r.reply.code).toBe(250);
      expect(sink.messages).toHaveLength(1);
      expect(sink.messages[0].data.toString()).toBe('Subject: hi\r\n\r\nhello\r\n');
      expect(sink.messages[0].from).toBe('someone-else@example.org');
      // user= is always the account, never MAIL FROM
      expect(sink.auths).toEqual([{ user: USER, token: 'good-token' }]);
    });
  }

  for (const security of ['tls', 'starttls'] as const) {
    it(`resumes the TLS session of an earlier connection of the pool instead of a full handshake (${security})`, async () => {
      const sink = await startSink({ security, cert });
      const pools = makePools();
      const smtp = { host: '127.0.0.1', port: sink.port, security, rejectUnauthorized: true };
      pools.setAccounts([
        account(sink.port, { smtp: { ...smtp, ca: cert.cert }, maxMessagesPerConnection: 1 }),
      ]);
      cleanup.push(
        () => sink.close(),
        () => pools.close(1000),
      );
      for (let i = 0; i < 3; i++) expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
      expect(sink.resumed.length).toBeGreaterThanOrEqual(3);
      expect(sink.resumed[0]).toBe(false);
      expect(sink.resumed.slice(1, 3)).toEqual([true, true]);
      expect(sink.messages).toHaveLength(3);
    });
  }

  for (const security of ['tls', 'starttls'] as const) {
    it(`resumes, for another mailbox's first connection, the session of a mailbox on the same upstream (${security})`, async () => {
      const BOB = 'bob@example.com';
      const sink = await startSink({ security, cert, users: [USER, BOB] });
      const pools = makePools();
      const smtp = { host: '127.0.0.1', port: sink.port, security, rejectUnauthorized: true, ca: cert.cert };
      pools.setAccounts([account(sink.port, { smtp }), account(sink.port, { email: BOB, smtp })]);
      cleanup.push(
        () => sink.close(),
        () => pools.close(1000),
      );
      // the ticket arrives before the first reply after the handshake, so it is kept by now
      expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
      expect((await pools.deliver(BOB, env(), msg())).kind).toBe('delivered');
      expect(sink.resumed.slice(0, 2)).toEqual([false, true]);
      // each mailbox still authenticated as itself inside the resumed channel
      expect(sink.auths.map((a) => a.user)).toEqual([USER, BOB]);
    });
  }

  it('keeps apart the sessions of a pool that does not verify, of another CA and of other source addresses', async () => {
    const [LAX, OTHER_CA, OTHER_IP] = ['lax@example.com', 'other-ca@example.com', 'other-ip@example.com'];
    const sink = await startSink({ security: 'tls', cert, users: [LAX, USER, OTHER_CA, OTHER_IP] });
    const pools = makePools();
    const smtp = { host: '127.0.0.1', port: sink.port, security: 'tls' as const, ca: cert.cert };
    pools.setAccounts([
      account(sink.port, { email: LAX, smtp: { ...smtp, rejectUnauthorized: false } }),
      account(sink.port, { smtp: { ...smtp, rejectUnauthorized: true } }),
      // another trust list (here the same certificate twice, so that it still verifies)
      account(sink.port, {
        email: OTHER_CA,
        smtp: { ...smtp, ca: `${cert.cert}\n${cert.cert}`, rejectUnauthorized: true },
      }),
      account(sink.port, {
        email: OTHER_IP,
        smtp: { ...smtp, rejectUnauthorized: true },
        sourceAddress: '127.0.0.2',
      }),
    ]);
    cleanup.push(
      () => sink.close(),
      () => pools.close(1000),
    );
    // a ticket from the unverified pool would let the verifying one skip verification
    for (const email of [LAX, USER, OTHER_CA, OTHER_IP])
      expect((await pools.deliver(email, env(), msg())).kind).toBe('delivered');
    expect(sink.resumed.slice(0, 4)).toEqual([false, false, false, false]);
  });

  it('refuses a certificate it cannot verify and says so (451 4.4.1)', async () => {
    const sink = await startSink({ security: 'tls', cert });
    const pools = makePools();
    pools.setAccounts([
      account(sink.port, {
        smtp: { host: '127.0.0.1', port: sink.port, security: 'tls', rejectUnauthorized: true },
      }),
    ]);
    cleanup.push(
      () => sink.close(),
      () => pools.close(1000),
    );
    const err = await expectSmtpError(pools.deliver(USER, env(), msg()));
    expect(err.code).toBe('UPSTREAM_UNREACHABLE');
    expect(err.reply.code).toBe(451);
    expect(err.reply.enhanced).toBe('4.4.1');
    expect(err.reply.text).toMatch(
      new RegExp(`^Upstream 127.0.0.1:${sink.port} unreachable: TLS certificate verification failed`),
    );
    expect(sink.messages).toHaveLength(0);
  });

  it('never falls back to plain text when STARTTLS is required but not offered', async () => {
    const sink = await startSink({ security: 'none' });
    const pools = makePools();
    pools.setAccounts([
      account(sink.port, {
        smtp: { host: '127.0.0.1', port: sink.port, security: 'starttls', rejectUnauthorized: true },
      }),
    ]);
    cleanup.push(
      () => sink.close(),
      () => pools.close(1000),
    );
    const err = await expectSmtpError(pools.deliver(USER, env(), msg()));
    expect(err.reply.text).toMatch(/does not offer STARTTLS/);
    expect(sink.auths).toHaveLength(0);
  });
});

describe('the transaction', () => {
  it('pipelines MAIL, every RCPT and DATA in one write, with SIZE/BODY/SMTPUTF8 when offered', async () => {
    const { fake, pools } = await fakeAndPools({ caps: ['PIPELINING', 'SIZE 1000', '8BITMIME', 'SMTPUTF8'] });
    const r = await pools.deliver(
      USER,
      { from: USER, to: ['a@x.test', 'b@x.test', 'c@x.test'], size: 42, body8bit: true, smtputf8: true },
      msg(),
    );
    expect(r.kind).toBe('delivered');
    const chunks = fake.conns[0].chunks.map((c) => c.toString());
    expect(chunks).toContain(
      'MAIL FROM:<alice@example.com> SIZE=42 BODY=8BITMIME SMTPUTF8\r\n' +
        'RCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n',
    );
  });

  it('sends one command at a time without PIPELINING, and no parameters the server did not offer', async () => {
    const { fake, pools } = await fakeAndPools({ caps: ['AUTH XOAUTH2'] });
    const r = await pools.deliver(USER, { ...env(['a@x.test', 'b@x.test']), body8bit: true }, msg());
    expect(r.kind).toBe('delivered');
    const chunks = fake.conns[0].chunks.map((c) => c.toString());
    for (const cmd of [
      'MAIL FROM:<alice@example.com>\r\n',
      'RCPT TO:<a@x.test>\r\n',
      'RCPT TO:<b@x.test>\r\n',
      'DATA\r\n',
    ]) {
      expect(chunks).toContain(cmd);
    }
  });

  it('dot-stuffs on the way out, across buffer boundaries, and adds a missing final CRLF', async () => {
    const { sink, pools } = await sinkAndPools();
    const parts = [
      '.starts with a dot\r\n',
      'middle\r\n.',
      'dot at a chunk start\r\n',
      '\r\n',
      '.\r\n', // a line that is just "." must not end the message
      '..two dots\r',
      '\n.after a split CRLF\r\nno final newline',
    ];
    const r = await pools.deliver(
      USER,
      env(),
      parts.map((p) => Buffer.from(p)),
    );
    expect(r.kind).toBe('delivered');
    expect(sink.messages[0].data.toString()).toBe(parts.join('') + '\r\n');
  });

  it('streams a large multi-chunk message intact', async () => {
    const { sink, pools } = await sinkAndPools();
    const line = Buffer.from('.x'.repeat(38) + '\r\n');
    const chunks = Array.from({ length: 4000 }, () => line);
    const r = await pools.deliver(USER, { ...env(), size: line.length * 4000 }, chunks);
    expect(r.kind).toBe('delivered');
    expect(sink.messages[0].data.equals(Buffer.concat(chunks))).toBe(true);
  });

  it('passes the final reply through exactly: code, enhanced code and every line of text', async () => {
    const replies = [
      '554-5.7.1 [192.0.2.1] Message rejected\r\n554 5.7.1 See https://support.example/policy',
      '451 4.3.0 Temporary local problem, try later',
      '552 Message size exceeds fixed maximum',
    ];
    let i = 0;
    const { pools } = await fakeAndPools({ onMessage: () => replies[i++] });
    const got = [];
    for (let k = 0; k < replies.length; k++) got.push(await pools.deliver(USER, env(), msg()));
    expect(got).toEqual([
      {
        kind: 'rejected',
        failedRecipients: [],
        reply: {
          code: 554,
          enhanced: '5.7.1',
          text: '[192.0.2.1] Message rejected\nSee https://support.example/policy',
        },
      },
      {
        kind: 'rejected',
        failedRecipients: [],
        reply: { code: 451, enhanced: '4.3.0', text: 'Temporary local problem, try later' },
      },
      {
        kind: 'rejected',
        failedRecipients: [],
        reply: { code: 552, enhanced: '', text: 'Message size exceeds fixed maximum' },
      },
    ]);
  });

  it('a refused MAIL is the verdict and no body is sent', async () => {
    const { fake, pools } = await fakeAndPools({
      onCommand: (l) =>
        l.startsWith('MAIL')
          ? '550 5.7.1 Sender not allowed'
          : l.startsWith('RCPT')
            ? '503 5.5.1 MAIL first'
            : undefined,
    });
    const r = await pools.deliver(USER, env(), msg());
    expect(r).toEqual({
      kind: 'rejected',
      reply: { code: 550, enhanced: '5.7.1', text: 'Sender not allowed' },
      failedRecipients: [],
    });
    expect(fake.received).toHaveLength(0);
  });

  it('one refused recipient of three: nothing is delivered, the refusal is passed through naming it', async () => {
    const { sink, pools } = await sinkAndPools({ refuse: { 'b@x.test': [550, '5.1.1 No such user here'] } });
    const r = await pools.deliver(USER, env(['a@x.test', 'b@x.test', 'c@x.test']), msg());
    expect(r.kind).toBe('rejected');
    if (r.kind !== 'rejected') return;
    expect(r.reply).toEqual({ code: 550, enhanced: '5.1.1', text: '<b@x.test> No such user here' });
    expect(r.failedRecipients).toEqual([
      { rcpt: 'b@x.test', reply: { code: 550, enhanced: '5.1.1', text: 'No such user here' } },
    ]);
    // smtp-server answered DATA with 354: the connection was cut before any terminating dot,
    // so it is not kept for reuse
    expect(pools.stats(USER)).toEqual({ idle: 0, busy: 0, connecting: 0, waiting: 0 });
    await until(() => sink.open === 0);
    expect(sink.messages).toHaveLength(0);
    // and the pool goes on with a new connection
    const ok = await pools.deliver(USER, env(['a@x.test']), msg());
    expect(ok.kind).toBe('delivered');
    expect(sink.messages).toHaveLength(1);
    expect(sink.messages[0].to).toEqual(['a@x.test']);
  });

  it('after a refused recipient and a 354 the body never starts: no terminating dot, connection cut', async () => {
    const { fake, pools } = await fakeAndPools({
      onCommand: (l) =>
        l === 'RCPT TO:<b@x.test>' ? '550 5.1.1 Unknown' : l === 'DATA' ? '354 Go ahead' : undefined,
    });
    const r = await pools.deliver(USER, env(['a@x.test', 'b@x.test']), msg());
    expect(r.kind).toBe('rejected');
    await until(() => fake.conns[0].closed);
    expect(fake.received).toHaveLength(0);
    expect(fake.conns[0].chunks.map((c) => c.toString()).join('')).not.toContain('hello');
  });

  it('several refusals combine into one reply: 4xx unless every refusal was permanent, naming each', async () => {
    const { sink, pools } = await sinkAndPools({
      refuse: {
        'b@x.test': [550, '5.1.1 No such user'],
        'c@x.test': [450, '4.2.1 Mailbox busy'],
        'd@x.test': [553, '5.1.3 Bad'],
      },
    });
    const mixed = await pools.deliver(USER, env(['a@x.test', 'b@x.test', 'c@x.test']), msg());
    expect(mixed.kind).toBe('rejected');
    expect(mixed.reply.code).toBe(450);
    expect(mixed.reply.enhanced).toBe('4.2.1');
    expect(mixed.reply.text).toContain('<b@x.test> 550 5.1.1 No such user');
    expect(mixed.reply.text).toContain('<c@x.test> 450 4.2.1 Mailbox busy');
    const permanent = await pools.deliver(USER, env(['b@x.test', 'd@x.test']), msg());
    expect(permanent.reply.code).toBe(550);
    expect(permanent.reply.enhanced).toBe('5.0.0');
    expect(permanent.kind === 'rejected' && permanent.failedRecipients.map((f) => f.rcpt)).toEqual([
      'b@x.test',
      'd@x.test',
    ]);
    expect(sink.messages).toHaveLength(0);
  });

  it('without PIPELINING a refused recipient means RSET and no DATA, and the connection is reused', async () => {
    const { fake, pools } = await fakeAndPools({
      caps: ['AUTH XOAUTH2'],
      onCommand: (l) => (l === 'RCPT TO:<b@x.test>' ? '451 4.7.1 Greylisted, try again' : undefined),
    });
    const r = await pools.deliver(USER, env(['a@x.test', 'b@x.test']), msg());
    expect(r).toEqual({
      kind: 'rejected',
      reply: { code: 451, enhanced: '4.7.1', text: '<b@x.test> Greylisted, try again' },
      failedRecipients: [
        { rcpt: 'b@x.test', reply: { code: 451, enhanced: '4.7.1', text: 'Greylisted, try again' } },
      ],
    });
    expect(fake.conns[0].commands.slice(-3)).toEqual(['RCPT TO:<a@x.test>', 'RCPT TO:<b@x.test>', 'RSET']);
    expect(await pools.deliver(USER, env(['a@x.test']), msg())).toMatchObject({ kind: 'delivered' });
    expect(fake.conns).toHaveLength(1);
    expect(fake.accepted).toHaveLength(1);
  });

  it('a 421 after the body is a 4xx verdict and retires the connection', async () => {
    let n = 0;
    const { fake, pools } = await fakeAndPools({
      onMessage: () => (n++ === 0 ? '421 4.7.0 Too many messages, closing' : undefined),
    });
    const r = await pools.deliver(USER, env(), msg());
    expect(r).toEqual({
      kind: 'rejected',
      reply: { code: 421, enhanced: '4.7.0', text: 'Too many messages, closing' },
      failedRecipients: [],
    });
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    expect(fake.conns).toHaveLength(2);
  });

  it('refuses addresses with line breaks instead of writing them', async () => {
    const { fake, pools } = await fakeAndPools();
    const err = await expectSmtpError(pools.deliver(USER, env(['a@x.test\r\nRCPT TO:<evil@x.test>']), msg()));
    expect(err.code).toBe('BAD_ADDRESS');
    expect(fake.conns).toHaveLength(0);
  });
});

describe('connection setup failures are temporary local replies', () => {
  it('connection refused -> 451 4.4.1 naming host and port', async () => {
    const port = await freePort();
    const pools = makePools();
    pools.setAccounts([account(port)]);
    cleanup.push(() => pools.close(1000));
    const err = await expectSmtpError(pools.deliver(USER, env(), msg()));
    expect(err.code).toBe('UPSTREAM_UNREACHABLE');
    expect(err.reply).toEqual({
      code: 451,
      enhanced: '4.4.1',
      text: `Upstream 127.0.0.1:${port} unreachable: connection refused`,
    });
  });

  it('no greeting within commandTimeoutMs -> 451 4.4.1 timed out', async () => {
    const { pools } = await fakeAndPools({ greeting: null }, { commandTimeoutMs: 150 });
    const t0 = Date.now();
    const err = await expectSmtpError(pools.deliver(USER, env(), msg()));
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(err.reply.enhanced).toBe('4.4.1');
    expect(err.reply.text).toMatch(/unreachable: timed out.*greeting/);
  });

  it('a 4xx greeting is reported with the upstream text', async () => {
    const { pools } = await fakeAndPools({ greeting: '421 4.3.2 Service not available' });
    const err = await expectSmtpError(pools.deliver(USER, env(), msg()));
    expect(err.reply.text).toMatch(/unreachable: greeting was 421 4.3.2 Service not available/);
  });

  it('binds the source address, and fails (no fallback) when it cannot', async () => {
    const { fake, pools } = await fakeAndPools({}, { sourceAddress: '127.0.0.2' });
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    expect(fake.conns[0].remoteAddress).toBe('127.0.0.2');

    const pools2 = makePools();
    pools2.setAccounts([account(fake.port, { sourceAddress: '192.0.2.77' })]);
    cleanup.push(() => pools2.close(1000));
    const err = await expectSmtpError(pools2.deliver(USER, env(), msg()));
    expect(err.reply.text).toMatch(/cannot use source address 192\.0\.2\.77/);
    expect(fake.conns).toHaveLength(1);
  });
});

describe('metrics', () => {
  it('counts connects, idle/busy connections, pool waits and delivered bytes', async () => {
    const sink: Sink = await startSink();
    const metrics = detachedMetrics();
    const pools = makePools(new FakeTokens(), metrics);
    pools.setAccounts([account(sink.port)]);
    cleanup.push(
      () => sink.close(),
      () => pools.close(1000),
    );
    const body = msg();
    await pools.deliver(USER, env(), body);
    await pools.deliver(USER, env(), body);
    const text = await metrics.registry.metrics();
    expect(text).toContain('xoauth2_proxy_upstream_connects_total{provider="test",result="success"} 1');
    expect(text).toContain('xoauth2_proxy_upstream_connections{provider="test",state="idle"} 1');
    expect(text).toContain('xoauth2_proxy_upstream_connections{provider="test",state="busy"} 0');
    expect(text).toContain(`xoauth2_proxy_message_bytes_total{provider="test"} ${body[0].length * 2}`);
    expect(text).toContain('xoauth2_proxy_pool_wait_seconds_count{provider="test"} 2');
    await pools.close(1000);
    await until(() => sink.open === 0);
    expect(await metrics.registry.metrics()).toContain(
      'xoauth2_proxy_upstream_connections{provider="test",state="idle"} 0',
    );
  });
});
