import net, { type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { runGenerator, type GeneratorOptions } from '../../../src/tools/harness/generator.js';
import { benchMessageId, makeTemplate } from '../../../src/tools/harness/message.js';
import { BenchSmtpConnection, SmtpClientError } from '../../../src/tools/harness/smtp-client.js';
import { FakeSmtpServer, type FakeSmtpOptions } from '../../helpers/fake-smtp-server.js';
import { sleep } from '../../helpers/wait.js';

const servers: { close(): unknown }[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});
async function startSink(o: FakeSmtpOptions = {}): Promise<FakeSmtpServer> {
  const sink = await FakeSmtpServer.start(o);
  servers.push(sink);
  return sink;
}

/** A server misbehaving as `onSocket` scripts it (greets first), and a PLAIN-authenticated connection to it. */
async function misbehaving(onSocket: (s: Socket) => void): Promise<BenchSmtpConnection> {
  const server = net.createServer((s) => {
    s.write('220 test ESMTP\r\n');
    onSocket(s);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return BenchSmtpConnection.open({
    host: '127.0.0.1',
    port: (server.address() as AddressInfo).port,
    auth: { mechanism: 'PLAIN', user: 'u@example.com', password: 'p' },
  });
}

/** From message `at` on (counted over all connections), every final reply waits until `ms` after it arrived. */
function stallFrom(at: number, ms: number): FakeSmtpOptions['onMessage'] {
  let until = 0;
  return async (_m, _conn, k) => {
    if (k === at) until = Date.now() + ms;
    if (until > Date.now()) await sleep(until - Date.now());
    return undefined;
  };
}

const users = ['u0@example.com', 'u1@example.com', 'u2@example.com'];
const base = (port: number): GeneratorOptions => ({
  host: '127.0.0.1',
  port,
  auth: { mechanism: 'PLAIN', password: 'pw' },
  users,
  connections: 4,
  size: 2048,
  recipients: 1,
  runId: 'test',
  quiet: true,
});

describe('message template', () => {
  it('builds messages of exactly the requested size with a unique Message-ID', () => {
    for (const size of [256, 1000, 2048, 2049, 2050, 102_400]) {
      const t = makeTemplate({ size, recipients: 2, runId: 'r1' });
      for (const n of [0, 7, 12345]) {
        const [head, tail] = t.parts(n, 'someone@example.com');
        const text = Buffer.concat([head, tail]).toString('latin1');
        expect(head.length + tail.length).toBe(size);
        expect(text).toContain(`\r\nMessage-ID: <bench-${n}-r1@bench>\r\n`);
        expect(text.endsWith('\r\n')).toBe(true);
        expect(text).not.toMatch(/\r\n\./); // nothing to dot-stuff
        expect(t.recipients).toHaveLength(2);
      }
    }
    expect(benchMessageId(3, 'abc')).toBe('<bench-3-abc@bench>');
  });
});

describe('runGenerator against a raw SMTP sink', () => {
  it('sends exactly --count messages in max mode, pipelined, with unique ids', async () => {
    const sink = await startSink();
    const r = await runGenerator({ ...base(sink.port), count: 300, recipients: 3 });
    expect(r.mode).toBe('max');
    expect(r.sent).toBe(300);
    expect(r.accepted).toBe(300);
    expect(r.deferred + r.rejected + r.errors + r.unsent).toBe(0);
    expect(new Set(r.acceptedIds).size).toBe(300);
    expect(new Set(sink.acceptedIds())).toEqual(new Set(r.acceptedIds));
    expect(r.acceptedIds).toContain('<bench-0-test@bench>');
    expect(r.acceptedIds).toContain('<bench-299-test@bench>');
    // MAIL + 3 RCPT + DATA arrived together: one write per envelope
    const envelopes = sink.batches().filter((b) => b.includes('MAIL'));
    expect(envelopes.length).toBe(300);
    for (const b of envelopes) expect(b).toEqual(['MAIL', 'RCPT', 'RCPT', 'RCPT', 'DATA']);
    // AUTH PLAIN once per connection, users spread i % N
    expect(sink.auths).toHaveLength(4);
    expect(sink.auths.map((a) => a.user).sort()).toEqual([users[0], users[0], users[1], users[2]].sort());
    expect(r.connectionsOpened).toBe(4);
    expect(r.latencyMs.p50).toBeGreaterThan(0);
    expect(r.latencyMs.p50).toBeLessThanOrEqual(r.latencyMs.p95);
    expect(r.latencyMs.p95).toBeLessThanOrEqual(r.latencyMs.p99);
    expect(r.latencyMs.p99).toBeLessThanOrEqual(r.latencyMs.max);
  });

  it('counts 2xx / 4xx / 5xx and keeps only accepted ids', async () => {
    const sink = await startSink({
      onMessage: (_m, _c, k) => (k % 10 === 3 ? '451 4.7.0 later' : k % 10 === 7 ? '550 5.7.1 no' : '250 ok'),
    });
    const r = await runGenerator({ ...base(sink.port), count: 100 });
    expect(r.sent).toBe(100);
    expect(r.accepted).toBe(80);
    expect(r.deferred).toBe(10);
    expect(r.rejected).toBe(10);
    expect(r.acceptedIds).toHaveLength(80);
    expect(r.failures['451 4.7.0 later']).toBe(10);
    expect(r.failures['550 5.7.1 no']).toBe(10);
  });

  it('fixed rate: sends count messages and uses XOAUTH2 tokens per user', async () => {
    const sink = await startSink({
      auth: (user, secret) => (secret === `tok-${user}` ? '235 2.7.0 ok' : '535 5.7.8 no'),
    });
    const r = await runGenerator({
      ...base(sink.port),
      auth: { mechanism: 'XOAUTH2', token: (u) => `tok-${u}` },
      rate: 500,
      count: 100,
    });
    expect(r.mode).toBe('rate');
    expect(r.offeredPerSec).toBe(500);
    expect(r.sent).toBe(100);
    expect(r.accepted).toBe(100);
    expect(sink.auths.every((a) => a.mechanism === 'XOAUTH2')).toBe(true);
  });

  it('duration bounds a rate run: rate x duration messages', async () => {
    const sink = await startSink();
    const r = await runGenerator({ ...base(sink.port), rate: 200, durationSec: 0.5 });
    expect(r.sent).toBe(100);
    expect(r.accepted).toBe(100);
  });

  it('open loop: a 500 ms stall shows up in the latency of every message due during it', async () => {
    // 200 msg/s for 1 s; the sink holds all replies for 500 ms from message 50 on. Messages due in
    // the first half of the stall (~50 of 200) cannot be answered before it ends, so they wait
    // >= 250 ms measured from their due time: p95 must show it. A closed-loop measurement (from the
    // moment a connection became free) would show the stall in only the two stuck messages.
    const sink = await startSink({ onMessage: stallFrom(50, 500) });
    const r = await runGenerator({ ...base(sink.port), connections: 2, rate: 200, count: 200 });
    expect(r.accepted).toBe(200);
    expect(r.latencyMs.max).toBeGreaterThanOrEqual(450);
    expect(r.latencyMs.p95).toBeGreaterThanOrEqual(250);
  });

  it('extend: past the duration, a rate run goes on until done() holds, and at most maxDurationSec', async () => {
    const sink = await startSink();
    const r = await runGenerator({
      ...base(sink.port),
      rate: 200,
      durationSec: 0.25,
      extend: { done: () => sink.accepted.length >= 120, maxDurationSec: 5 },
    });
    expect(r.sent).toBeGreaterThanOrEqual(120);
    expect(r.sent).toBeLessThan(200); // well before the 1,000 messages of 5 s
    expect(r.unsent).toBe(0);
    expect(r.accepted).toBe(r.sent);
    const never = await runGenerator({
      ...base(sink.port),
      rate: 200,
      durationSec: 0.25,
      extend: { done: () => false, maxDurationSec: 0.75 },
    });
    expect(never.sent).toBe(150);
    const early = await runGenerator({
      ...base(sink.port),
      rate: 200,
      durationSec: 0.25,
      extend: { done: () => true, maxDurationSec: 5 },
    });
    expect(early.sent).toBe(50); // never shorter than durationSec
  });

  it('warm-up messages are sent before measuring and loss-checked, not measured', async () => {
    const sink = await startSink();
    const r = await runGenerator({ ...base(sink.port), count: 20, warmup: 2 });
    expect(r.sent).toBe(20);
    expect(r.warmupAccepted).toBe(8);
    expect(r.acceptedIds).toHaveLength(28);
    expect(r.acceptedIds.filter((id) => id.includes('-test-warmup@'))).toHaveLength(8);
    expect(sink.received).toHaveLength(28);
  });

  it('fails clearly when no connection can authenticate', async () => {
    const sink = await startSink({ auth: () => '535 5.7.8 no' });
    await expect(runGenerator({ ...base(sink.port), count: 10 })).rejects.toThrow(
      /could not open any of 4 connections.*535 5\.7\.8/,
    );
  });

  it('counts a connection the server drops as an error and reconnects', async () => {
    const sink = await startSink({ onMessage: (_m, _c, k) => (k === 10 ? 'drop' : undefined) });
    // One connection: the run can only finish if the generator reconnects.
    const r = await runGenerator({
      ...base(sink.port),
      connections: 1,
      rate: 500,
      count: 50,
      reconnectDelayMs: 20,
    });
    expect(r.sent).toBe(50);
    expect(r.errors).toBe(1);
    expect(r.accepted).toBe(49);
    expect(r.reconnects).toBe(1);
    expect(sink.conns).toHaveLength(2);
    expect(Object.keys(r.failures).join()).toMatch(/ECONNECTION/);
  });
});

describe('BenchSmtpConnection', () => {
  it('treats an unsolicited 421 as the server closing: no transaction is started on that connection', async () => {
    let afterGoodbye = '';
    const conn = await misbehaving((s) => {
      let said421 = false;
      s.on('data', (d) => {
        const text = d.toString();
        if (said421) return void (afterGoodbye += text);
        if (/^EHLO/m.test(text)) s.write('250-test\r\n250 PIPELINING\r\n');
        if (/^AUTH/m.test(text)) {
          s.write('235 2.7.0 ok\r\n');
          // the server shuts down while the client is idle, and lingers before closing
          setTimeout(() => {
            said421 = true;
            s.write('421 4.3.2 Service shutting down\r\n');
            setTimeout(() => s.destroy(), 300);
          }, 50);
        }
      });
    });
    await sleep(150);
    expect(conn.state).toBe('closed');
    await expect(
      conn.send('u@example.com', ['r@example.net'], Buffer.from('x\r\n'), Buffer.alloc(0)),
    ).rejects.toThrow(SmtpClientError);
    await sleep(300);
    expect(afterGoodbye).toBe('');
  });
});

describe('BenchSmtpConnection, 421 mid-pipeline', () => {
  it('returns a 421 that answers the first command of a pipelined envelope, instead of a connection error', async () => {
    const conn = await misbehaving((s) =>
      s.on('data', (d) => {
        const text = d.toString();
        if (/^EHLO/m.test(text)) s.write('250-test\r\n250 PIPELINING\r\n');
        else if (/^AUTH/m.test(text)) s.write('235 2.7.0 ok\r\n');
        else if (/^MAIL/m.test(text)) {
          s.write('421 4.3.2 Service shutting down\r\n');
          s.end();
        }
      }),
    );
    const r = await conn.send('u@example.com', ['r@example.net'], Buffer.from('x\r\n'), Buffer.alloc(0));
    expect(r.code).toBe(421);
    expect(r.text).toMatch(/^421 4\.3\.2 /);
    expect(conn.state).toBe('closed');
  });
});
