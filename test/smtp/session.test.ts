// The client-facing protocol (session.ts, server.ts) over real loopback sockets through
// SmtpListeners, with a real Relay in front of a fake Deliverer: what a client sees on the wire
// (replies as smtp-server 3.21.6 gave them) and what reaches the relay.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { beforeAll, describe, expect, it } from 'vitest';
import { smtpReply } from '../../src/shared/replies.js';
import { formatReply } from '../../src/shared/smtp-reply.js';
import { AuthThrottle } from '../../src/smtp/auth-throttle.js';
import { RawSmtp } from '../tools/sim/helpers.js';
import { until } from '../helpers/wait.js';
import { ALICE, PASSWORD, metric } from '../relay/helpers.js';
import { plain, useSmtpListeners } from './helpers.js';

const HOST = 'mx.test';
const startListeners = useSmtpListeners();

let certDir = '';
beforeAll(async () => {
  const { generate } = await import('selfsigned');
  const p = await generate([{ name: 'commonName', value: 'localhost' }], { keySize: 2048 } as never);
  certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-session-tls-'));
  fs.writeFileSync(path.join(certDir, 'cert.pem'), p.cert);
  fs.writeFileSync(path.join(certDir, 'key.pem'), p.private);
});

/** the listeners with HOST as smtp.hostname; `tls`: with a self-signed certificate */
const start = (smtp: Record<string, unknown> = {}, opts: { tls?: boolean; throttle?: AuthThrottle } = {}) =>
  startListeners(
    { hostname: HOST, ...smtp },
    {
      throttle: opts.throttle,
      tls: opts.tls
        ? { cert: path.join(certDir, 'cert.pem'), key: path.join(certDir, 'key.pem') }
        : undefined,
    },
  );

const b64 = (s: string) => Buffer.from(s).toString('base64');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The replies of `c` that arrived since chunk `from`, as the data events carried them. */
const chunksSince = (c: RawSmtp, from: number) => c.chunks.slice(from);

describe('pipelining (RFC 2920): the replies to one write leave in one write', () => {
  it('EHLO + NOOP pipelined: both replies in one data chunk', async () => {
    const { connect } = await start();
    const c = await connect();
    const from = c.chunks.length;
    c.write('EHLO client.test\r\nNOOP\r\n');
    const [ehlo, noop] = await c.readN(2);
    expect(ehlo![0]).toBe(`250-${HOST} Nice to meet you, [127.0.0.1]`);
    expect(noop).toEqual(['250 2.0.0 OK']);
    expect(chunksSince(c, from)).toHaveLength(1);
    c.close();
  });

  it('MAIL + RCPT + DATA pipelined: 250, 250, 354 in one chunk; the message reaches the relay', async () => {
    const { authed, deliverer } = await start();
    const c = await authed();
    const from = c.chunks.length;
    c.write(`MAIL FROM:<${ALICE}>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n`);
    expect(await c.readN(3)).toEqual([
      ['250 2.1.0 Accepted'],
      ['250 2.1.5 Accepted'],
      ['354 End data with <CR><LF>.<CR><LF>'],
    ]);
    expect(chunksSince(c, from)).toEqual([
      '250 2.1.0 Accepted\r\n250 2.1.5 Accepted\r\n354 End data with <CR><LF>.<CR><LF>\r\n',
    ]);
    c.write('Subject: t\r\n\r\nhi\r\n.\r\nQUIT\r\n');
    expect(await c.readN(2)).toEqual([['250 2.0.0 upstream: OK id=1'], ['221 2.0.0 Bye']]);
    await c.closedPromise;
    expect(deliverer.deliveries).toHaveLength(1);
    expect(deliverer.deliveries[0]!.bytes.toString()).toBe('Subject: t\r\n\r\nhi\r\n');
    expect(deliverer.deliveries[0]!.envelope).toMatchObject({ from: ALICE, to: ['r@example.net'] });
  });

  it('a whole transaction in one write, message and all, then a second one: every reply in order', async () => {
    const { authed, deliverer } = await start();
    const c = await authed();
    const one = (n: number) =>
      `MAIL FROM:<${ALICE}>\r\nRCPT TO:<r${n}@example.net>\r\nDATA\r\nSubject: ${n}\r\n\r\n..dot\r\n.\r\n`;
    c.write(one(1) + one(2) + 'NOOP\r\n');
    const replies = (await c.readN(9)).map((r) => r[0]!.slice(0, 3));
    expect(replies).toEqual(['250', '250', '354', '250', '250', '250', '354', '250', '250']);
    expect(deliverer.deliveries.map((d) => d.envelope.to)).toEqual([['r1@example.net'], ['r2@example.net']]);
    expect(deliverer.deliveries[1]!.bytes.toString()).toBe('Subject: 2\r\n\r\n.dot\r\n');
    c.close();
  });
});

describe('pipelining: volume', () => {
  it('250 commands in one write: every one answered, in order (the session yields every 100)', async () => {
    const { connect } = await start();
    const c = await connect();
    const other = await connect();
    c.write('NOOP\r\n'.repeat(125) + 'RSET\r\n'.repeat(125));
    expect(await other.cmd('NOOP')).toEqual(['250 2.0.0 OK']);
    const replies = await c.readN(250);
    expect(replies.slice(0, 125).every((r) => r[0] === '250 2.0.0 OK')).toBe(true);
    expect(replies.slice(125).every((r) => r[0] === '250 2.0.0 Flushed')).toBe(true);
    expect(await c.cmd('QUIT')).toEqual(['221 2.0.0 Bye']);
    other.close();
  });

  it('over 64 KiB pipelined while the relay holds a message: all of it answered once it replies', async () => {
    const { authed, deliverer } = await start();
    const c = await authed();
    await c.cmd(`MAIL FROM:<${ALICE}>`);
    await c.cmd('RCPT TO:<r@example.net>');
    await c.cmd('DATA');
    const release = deliverer.hold();
    const n = 15_000; // 90 KB of NOOPs behind the message
    c.write('hi\r\n.\r\n' + 'NOOP\r\n'.repeat(n));
    await until(() => deliverer.deliveries.length === 1);
    await sleep(50);
    expect(c.chunks.join('')).not.toMatch(/upstream/);
    release();
    expect(await c.read()).toEqual(['250 2.0.0 upstream: OK id=1']);
    const noops = await c.readN(n);
    expect(noops.every((r) => r[0] === '250 2.0.0 OK')).toBe(true);
    expect(await c.cmd('QUIT')).toEqual(['221 2.0.0 Bye']);
  });
});

describe('a client that pipelines without reading its replies', () => {
  it('is read no further than its replies are taken: the replies held stay bounded, and all arrive once it reads', async () => {
    const { port, listeners } = await start();
    const socket = net.connect({ host: '127.0.0.1', port });
    await new Promise((r) => socket.once('connect', r));
    socket.on('error', () => undefined);
    socket.pause(); // reads nothing: the greeting and every reply stay unread
    // ~20 bytes of reply per byte sent: 250k EHLOs are ~2 MB in, ~40 MB of replies out
    const n = 250_000;
    socket.write('EHLO x\r\n'.repeat(n));
    let most = 0;
    for (let i = 0; i < 20; i++) {
      await sleep(100);
      most = Math.max(most, listeners.bufferedReplyBytes);
    }
    expect(most).toBeLessThan(1024 * 1024);
    // now it reads: every EHLO gets its reply
    let got = 0;
    let tail = '';
    socket.on('data', (d: Buffer) => {
      const text = tail + d.toString('latin1');
      const lines = text.split('\r\n');
      tail = lines.pop()!;
      for (const l of lines) if (l.startsWith('250 ')) got++;
    });
    socket.resume();
    await until(() => got === n, 30_000, `${n} EHLO replies (got ${got})`);
    socket.destroy();
  });
});

describe('replies stay in order', () => {
  it('input held while the relay answers, with a message refused at once (too big) in it: replies in order', async () => {
    const { authed, deliverer } = await start({ maxMessageSize: 100 });
    const c = await authed();
    await c.cmd(`MAIL FROM:<${ALICE}>`);
    await c.cmd('RCPT TO:<r@example.net>');
    await c.cmd('DATA');
    const release = deliverer.hold();
    c.write('hi\r\n.\r\n');
    await until(() => deliverer.deliveries.length === 1);
    // two separate chunks arrive while the session waits for the relay
    c.write(`MAIL FROM:<${ALICE}>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n${'x'.repeat(200)}\r\n.\r\nNOOP\r\n`);
    await sleep(50);
    c.write('RSET\r\n');
    await sleep(50);
    release();
    const replies = (await c.readN(7)).map((r) => r[0]);
    expect(replies).toEqual([
      '250 2.0.0 upstream: OK id=1',
      '250 2.1.0 Accepted',
      '250 2.1.5 Accepted',
      '354 End data with <CR><LF>.<CR><LF>',
      formatReply(smtpReply('MESSAGE_TOO_BIG', 100)),
      '250 2.0.0 OK',
      '250 2.0.0 Flushed',
    ]);
    expect(deliverer.deliveries).toHaveLength(1);
    c.close();
  });

  it('a message refused at once, with commands pipelined after it in the same write: one write of replies', async () => {
    const { authed } = await start({ maxMessageSize: 100 });
    const c = await authed();
    const from = c.chunks.length;
    c.write(`MAIL FROM:<${ALICE}>\r\nRCPT TO:<r@example.net>\r\nDATA\r\n${'x'.repeat(200)}\r\n.\r\nNOOP\r\n`);
    expect((await c.readN(5)).map((r) => r[0])).toEqual([
      '250 2.1.0 Accepted',
      '250 2.1.5 Accepted',
      '354 End data with <CR><LF>.<CR><LF>',
      formatReply(smtpReply('MESSAGE_TOO_BIG', 100)),
      '250 2.0.0 OK',
    ]);
    expect(chunksSince(c, from)).toHaveLength(1);
    c.close();
  });
});

describe('connections that end badly leave no session behind', () => {
  it('a failed STARTTLS handshake, a reset mid-AUTH, mid-DATA and mid-PROXY header: connectionCount back to 0', async () => {
    const { connect, listeners, raw: rawPlain } = await start({}, { tls: true });
    // STARTTLS, then plaintext garbage instead of a ClientHello
    const a = await connect();
    await a.cmd('EHLO client.test');
    expect(await a.cmd('STARTTLS')).toEqual(['220 2.0.0 Ready to start TLS']);
    a.write('EHLO this is not TLS\r\n');
    await a.closedPromise;
    // STARTTLS, then the client goes away
    const b = await connect();
    await b.cmd('EHLO client.test');
    await b.cmd('STARTTLS');
    b.close();
    // gone while its AUTH is checked, and mid-DATA
    const c = await connect();
    await c.cmd('EHLO client.test');
    c.write(`AUTH PLAIN ${plain(ALICE, PASSWORD)}\r\n`);
    c.close();
    const d = await connect();
    await d.cmd('EHLO client.test');
    await d.cmd(`AUTH PLAIN ${plain(ALICE, PASSWORD)}`);
    await d.cmd(`MAIL FROM:<${ALICE}>`);
    await d.cmd('RCPT TO:<r@example.net>');
    await d.cmd('DATA');
    d.write('half a message');
    d.close();
    await until(() => listeners.connectionCount === 0);
    // and the listener still serves
    const e = await rawPlain();
    expect((await e.read())[0]).toMatch(/^220 /);
    e.close();
  });

  it('maxClients is not used up by connections that ended badly', async () => {
    const { connect, listeners } = await start({ maxClients: 1 }, { tls: true });
    for (let i = 0; i < 3; i++) {
      const a = await connect();
      await a.cmd('EHLO client.test');
      await a.cmd('STARTTLS');
      a.write('garbage\r\n');
      await a.closedPromise;
      await until(() => listeners.connectionCount === 0);
    }
    const ok = await connect();
    expect(await ok.cmd('NOOP')).toEqual(['250 2.0.0 OK']);
    ok.close();
  });
});

describe("the relay's reply", () => {
  const send = async (c: RawSmtp) => {
    await c.cmd(`MAIL FROM:<${ALICE}>`);
    await c.cmd('RCPT TO:<r@example.net>');
    await c.cmd('DATA');
    return c.cmd('hi\r\n.');
  };

  it('a refusal passes through and the session goes on; a 421 also closes the connection', async () => {
    const { authed, deliverer } = await start();
    const c = await authed();
    deliverer.answer = () => ({
      kind: 'rejected',
      reply: { code: 550, enhanced: '5.7.1', text: 'no\r\n250 injected' },
      failedRecipients: [],
    });
    const refused = await send(c);
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatch(/^550 5\.7\.1 upstream: no/);
    expect(refused[0]).not.toMatch(/[\r\n]/);
    expect(await c.cmd('NOOP')).toEqual(['250 2.0.0 OK']);
    deliverer.answer = () => ({
      kind: 'rejected',
      reply: { code: 421, enhanced: '4.7.0', text: 'try later' },
      failedRecipients: [],
    });
    expect(await send(c)).toEqual(['421 4.7.0 upstream: try later']);
    await c.closedPromise;
  });
});

describe('drain', () => {
  it('a connection waiting for its AUTH verdict gets the verdict, then 421 4.3.2 and close', async () => {
    // every failure delayed 400 ms: the drain starts while the verdict is pending
    const throttle = new AuthThrottle({ freeFailures: 0, baseDelayMs: 400 });
    const { connect, listeners } = await start({}, { throttle });
    const c = await connect();
    await c.cmd('EHLO client.test');
    c.write(`AUTH PLAIN ${plain(ALICE, 'wrong')}\r\n`);
    await sleep(100);
    const t0 = Date.now();
    const drained = listeners.drain();
    expect(await c.read()).toEqual([formatReply(smtpReply('AUTH_INVALID'))]);
    expect(await c.read()).toEqual([formatReply(smtpReply('SHUTTING_DOWN'))]);
    await c.closedPromise;
    await drained;
    expect(Date.now() - t0).toBeLessThan(1500); // not cut at shutdownTimeout (2 s)
  });
});

describe('drain during a STARTTLS handshake', () => {
  it('closes the connection without writing plaintext into the handshake', async () => {
    const { port, listeners } = await start({}, { tls: true });
    const socket = net.connect({ host: '127.0.0.1', port });
    const lines = new Lines(socket);
    expect((await lines.reply())[0]).toMatch(/^220 /);
    await lines.cmd('EHLO client.test');
    expect(await lines.cmd('STARTTLS')).toEqual(['220 2.0.0 Ready to start TLS']);
    const before = lines.received.length;
    const closed = new Promise((r) => socket.once('close', r));
    await listeners.drain();
    await closed;
    expect(lines.received.slice(before)).toEqual([]);
  });
});

describe('deadlines', () => {
  it('no complete command within idleTimeout: 421 4.4.2 and close', async () => {
    const { connect } = await start({ idleTimeout: '1s' });
    const c = await connect();
    c.write('NOO'); // a partial line does not count as activity
    const t0 = Date.now();
    expect(await c.read()).toEqual([formatReply(smtpReply('COMMAND_TIMEOUT'))]);
    await c.closedPromise;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
  });

  it('a message slower than idleTimeout + size / minDataRate: 421 4.4.2 and nothing relayed', async () => {
    const { authed, deliverer } = await start({ idleTimeout: '1s', minDataRate: 1000 });
    const c = await authed();
    await c.cmd(`MAIL FROM:<${ALICE}>`);
    await c.cmd('RCPT TO:<r@example.net>');
    await c.cmd('DATA');
    const timer = setInterval(() => c.write('x'), 100);
    try {
      expect(await c.read()).toEqual([formatReply(smtpReply('DATA_TIMEOUT'))]);
    } finally {
      clearInterval(timer);
    }
    await c.closedPromise;
    expect(deliverer.deliveries).toEqual([]);
  });

  it('a client waiting for the relay is never timed out', async () => {
    const { authed, deliverer } = await start({ idleTimeout: '1s' });
    const c = await authed();
    await c.cmd(`MAIL FROM:<${ALICE}>`);
    await c.cmd('RCPT TO:<r@example.net>');
    await c.cmd('DATA');
    const release = deliverer.hold();
    c.write('hi\r\n.\r\n');
    await sleep(2500);
    release();
    expect(await c.read()).toEqual(['250 2.0.0 upstream: OK id=1']);
    expect(await c.cmd('NOOP')).toEqual(['250 2.0.0 OK']);
    c.close();
  });

  it('a PROXY header that never completes: the socket is closed after idleTimeout', async () => {
    const { raw } = await start({ idleTimeout: '1s', proxyProtocol: true });
    const c = await raw();
    c.write('PROXY TCP4 ');
    await c.closedPromise;
    expect(c.chunks).toEqual([]);
  });
});

describe('AUTH', () => {
  it('AUTH PLAIN without an initial response: "334 " then the token', async () => {
    const { connect } = await start();
    const c = await connect();
    await c.cmd('EHLO client.test');
    const from = c.chunks.length;
    expect(await c.cmd('AUTH PLAIN')).toEqual(['334 ']);
    expect(c.chunks.slice(from).join('')).toBe('334 \r\n');
    expect(await c.cmd(plain(ALICE, PASSWORD))).toEqual(['235 2.7.0 Authentication successful']);
    c.close();
  });

  it('AUTH PLAIN with a wrong password: 535 5.7.8; a token without two NULs: 501', async () => {
    const { connect } = await start();
    const c = await connect();
    await c.cmd('EHLO client.test');
    expect(await c.cmd(`AUTH PLAIN ${plain(ALICE, 'wrong')}`)).toEqual([
      formatReply(smtpReply('AUTH_INVALID')),
    ]);
    expect(await c.cmd(`AUTH PLAIN ${b64('no-nuls')}`)).toEqual(['501 5.5.4 Error: invalid userdata']);
    expect(await c.cmd('AUTH PLAIN a b')).toEqual(['501 5.5.4 Error: syntax: AUTH PLAIN token']);
    c.close();
  });

  it('AUTH LOGIN: username and password prompts; with an initial response only the password one', async () => {
    const { connect } = await start();
    const c = await connect();
    await c.cmd('EHLO client.test');
    expect(await c.cmd('AUTH LOGIN')).toEqual(['334 VXNlcm5hbWU6']);
    expect(await c.cmd(b64(ALICE))).toEqual(['334 UGFzc3dvcmQ6']);
    expect(await c.cmd(b64(PASSWORD))).toEqual(['235 2.7.0 Authentication successful']);
    c.close();
    const d = await connect();
    await d.cmd('EHLO client.test');
    expect(await d.cmd(`AUTH LOGIN ${b64(ALICE)}`)).toEqual(['334 UGFzc3dvcmQ6']);
    expect(await d.cmd(b64(PASSWORD))).toEqual(['235 2.7.0 Authentication successful']);
    expect((await d.cmd(`MAIL FROM:<${ALICE}>`))[0]).toBe('250 2.1.0 Accepted');
    d.close();
  });

  it('"*" aborts at any step with 501 5.5.4; the session goes on unauthenticated', async () => {
    const { connect } = await start();
    const c = await connect();
    await c.cmd('EHLO client.test');
    expect(await c.cmd('AUTH PLAIN')).toEqual(['334 ']);
    expect(await c.cmd('*')).toEqual(['501 5.5.4 Authentication aborted']);
    expect(await c.cmd('AUTH LOGIN')).toEqual(['334 VXNlcm5hbWU6']);
    expect(await c.cmd('*')).toEqual(['501 5.5.4 Authentication aborted']);
    expect(await c.cmd(`AUTH LOGIN ${b64(ALICE)}`)).toEqual(['334 UGFzc3dvcmQ6']);
    expect(await c.cmd('*')).toEqual(['501 5.5.4 Authentication aborted']);
    // as an initial response "*" is no abort, just a bad token (smtp-server's sasl.js)
    expect(await c.cmd('AUTH PLAIN *')).toEqual(['501 5.5.4 Error: invalid userdata']);
    expect(await c.cmd('AUTH LOGIN *')).toEqual(['501 5.5.4 Error: missing username']);
    expect(await c.cmd(`MAIL FROM:<${ALICE}>`)).toEqual(['530 5.7.0 Authentication required']);
    expect(await c.cmd('NOOP')).toEqual(['250 2.0.0 OK']);
    c.close();
  });

  it('AUTH PLAIN with the username in the authzid and an empty authcid logs in as the authzid', async () => {
    const { connect } = await start();
    const c = await connect();
    await c.cmd('EHLO client.test');
    expect(await c.cmd(`AUTH PLAIN ${b64(`${ALICE}\0\0${PASSWORD}`)}`)).toEqual([
      '235 2.7.0 Authentication successful',
    ]);
    expect(await c.cmd(`MAIL FROM:<${ALICE}>`)).toEqual(['250 2.1.0 Accepted']);
    c.close();
  });

  it('a username or authzid with a control character: 501 invalid userdata, never checked', async () => {
    const { connect, metrics } = await start();
    const c = await connect();
    await c.cmd('EHLO client.test');
    const bad = '501 5.5.4 Error: invalid userdata';
    expect(await c.cmd(`AUTH PLAIN ${b64(`\0${ALICE}\r\nx\0${PASSWORD}`)}`)).toEqual([bad]);
    expect(await c.cmd(`AUTH PLAIN ${b64(`a\x1bb\0${ALICE}\0${PASSWORD}`)}`)).toEqual([bad]);
    expect(await c.cmd(`AUTH LOGIN ${b64(`${ALICE}\u0085`)}`)).toEqual([bad]);
    expect(await c.cmd('AUTH LOGIN')).toEqual(['334 VXNlcm5hbWU6']);
    expect(await c.cmd(b64(`${ALICE}\n`))).toEqual([bad]);
    expect(await metric(metrics, 'auth_attempts_total', { result: 'failure' })).toBe(0);
    c.close();
  });

  it('AUTH again after success: 503 5.5.1; before EHLO: 503; an unknown mechanism: 504', async () => {
    const { connect, authed } = await start();
    const c = await authed();
    expect(await c.cmd(`AUTH PLAIN ${plain(ALICE, PASSWORD)}`)).toEqual([
      '503 5.5.1 Error: No identity changes permitted',
    ]);
    c.close();
    const d = await connect();
    expect(await d.cmd(`AUTH PLAIN ${plain(ALICE, PASSWORD)}`)).toEqual([
      '503 5.5.1 Error: send HELO/EHLO first',
    ]);
    await d.cmd('EHLO client.test');
    expect(await d.cmd('AUTH CRAM-MD5')).toEqual(['504 5.5.4 Error: Unrecognized authentication type']);
    d.close();
  });

  it('a command pipelined after AUTH waits for the AUTH verdict', async () => {
    const { connect } = await start();
    const c = await connect();
    await c.cmd('EHLO client.test');
    c.write(`AUTH PLAIN ${plain(ALICE, PASSWORD)}\r\nMAIL FROM:<${ALICE}>\r\n`);
    expect(await c.readN(2)).toEqual([['235 2.7.0 Authentication successful'], ['250 2.1.0 Accepted']]);
    c.close();
  });
});

describe('commands outside a transaction', () => {
  it('EHLO lists the extensions; HELO gets the one-line greeting', async () => {
    const { connect } = await start({ maxMessageSize: 12345 });
    const c = await connect();
    expect(await c.cmd('EHLO client.test')).toEqual([
      `250-${HOST} Nice to meet you, [127.0.0.1]`,
      '250-PIPELINING',
      '250-8BITMIME',
      '250-SMTPUTF8',
      '250-ENHANCEDSTATUSCODES',
      '250-AUTH PLAIN LOGIN',
      '250 SIZE 12345',
    ]);
    expect(await c.cmd('HELO client.test')).toEqual([`250 ${HOST} Nice to meet you, [127.0.0.1]`]);
    expect(await c.cmd(`AUTH PLAIN ${plain(ALICE, PASSWORD)}`)).toEqual([
      '235 2.7.0 Authentication successful',
    ]);
    // logged in: AUTH is no longer offered
    expect(await c.cmd('EHLO client.test')).not.toContain('250-AUTH PLAIN LOGIN');
    c.close();
  });

  it('EHLO/HELO without a name, with two, or with a control character: 501 without an enhanced code', async () => {
    const { connect } = await start();
    const c = await connect();
    expect(await c.cmd('EHLO')).toEqual(['501 Error: syntax: EHLO hostname']);
    expect(await c.cmd('EHLO a b')).toEqual(['501 Error: syntax: EHLO hostname']);
    expect(await c.cmd('HELO')).toEqual(['501 Error: Syntax: HELO hostname']);
    expect(await c.cmd('EHLO a\x01b')).toEqual(['501 Error: Bad hostname syntax']);
    expect(await c.cmd(`EHLO ${'x'.repeat(301)}`)).toEqual(['501 Error: Bad hostname syntax']);
    expect(await c.cmd('MAIL FROM:<>')).toEqual(['503 5.5.1 Error: send HELO/EHLO first']);
    c.close();
  });

  it('RSET, NOOP, HELP, VRFY, QUIT', async () => {
    const { connect } = await start();
    const c = await connect();
    expect(await c.cmd('RSET')).toEqual(['250 2.0.0 Flushed']);
    expect(await c.cmd('noop')).toEqual(['250 2.0.0 OK']);
    expect(await c.cmd('HELP')).toEqual(['214 2.0.0 See https://tools.ietf.org/html/rfc5321 for details']);
    expect(await c.cmd('VRFY someone')).toEqual(['252 2.1.5 Try to send something. No promises though']);
    expect(await c.cmd('VRFY')).toEqual(['501 5.5.4 Error: Syntax: VRFY address']);
    expect(await c.cmd('QUIT')).toEqual(['221 2.0.0 Bye']);
    await c.closedPromise;
  });

  it('an unknown command gets 500 5.5.2; the 10th closes with 421 4.4.2', async () => {
    const { connect } = await start();
    const c = await connect();
    for (let i = 1; i <= 9; i++)
      expect(await c.cmd(`FOO${i}`)).toEqual(['500 5.5.2 Error: command not recognized']);
    expect(await c.cmd('FOO10')).toEqual(['421 4.4.2 Error: too many unrecognized commands']);
    await c.closedPromise;
  });

  it('an HTTP request line gets 421 4.4.2 and the connection is closed', async () => {
    const { connect } = await start();
    const c = await connect();
    c.write('POST /upload HTTP/1.1\r\nHost: mx.test\r\n\r\n');
    expect(await c.read()).toEqual(['421 4.4.2 HTTP requests not allowed']);
    await c.closedPromise;
  });

  it('an HTTP request line gets 421 even as an AUTH continuation (smtp-server checks it first)', async () => {
    const { connect } = await start();
    const c = await connect();
    await c.cmd('EHLO client.test');
    expect(await c.cmd('AUTH LOGIN')).toEqual(['334 VXNlcm5hbWU6']);
    expect(await c.cmd('GET / HTTP/1.1')).toEqual(['421 4.4.2 HTTP requests not allowed']);
    await c.closedPromise;
  });

  it('a command line of exactly 16 KiB (not counting CRLF) is accepted, one more character is not', async () => {
    const { connect } = await start();
    const c = await connect();
    const at = `VRFY ${'y'.repeat(16 * 1024 - 5)}`;
    expect(at.length).toBe(16 * 1024);
    expect(await c.cmd(at)).toEqual(['252 2.1.5 Try to send something. No promises though']);
    // the same line with its CR and LF in separate writes
    c.write(`${at}\r`);
    await sleep(50);
    c.write('\n');
    expect(await c.read()).toEqual(['252 2.1.5 Try to send something. No promises though']);
    expect(await c.cmd(`${at}y`)).toEqual(['421 4.4.2 Error: Command line too long']);
    await c.closedPromise;
  });

  it('a command line over 16 KiB gets 421 and close (in one chunk and trickled); the proxy keeps serving', async () => {
    const { connect } = await start();
    const c = await connect();
    c.write(`NOOP ${'x'.repeat(17 * 1024)}\r\n`);
    expect(await c.read()).toEqual(['421 4.4.2 Error: Command line too long']);
    await c.closedPromise;
    // no line break at all: the partial line is judged as it grows
    const d = await connect();
    for (let i = 0; i < 17; i++) d.write('x'.repeat(1024));
    expect(await d.read()).toEqual(['421 4.4.2 Error: Command line too long']);
    await d.closedPromise;
    const e = await connect();
    expect(await e.cmd('NOOP')).toEqual(['250 2.0.0 OK']);
    // a long AUTH line under the limit is fine
    expect(await e.cmd(`VRFY ${'y'.repeat(16 * 1024 - 10)}`)).toEqual([
      '252 2.1.5 Try to send something. No promises though',
    ]);
    e.close();
  });
});

describe('the transaction', () => {
  it('nested MAIL 503, RCPT before MAIL 503, DATA without RCPT 503, RSET ends the transaction', async () => {
    const { authed } = await start();
    const c = await authed();
    expect(await c.cmd('RCPT TO:<r@example.net>')).toEqual(['503 5.5.1 Error: need MAIL command']);
    expect(await c.cmd('DATA')).toEqual(['503 5.5.1 Error: need RCPT command']);
    expect(await c.cmd(`MAIL FROM:<${ALICE}>`)).toEqual(['250 2.1.0 Accepted']);
    expect(await c.cmd(`MAIL FROM:<${ALICE}>`)).toEqual(['503 5.5.1 Error: nested MAIL command']);
    expect(await c.cmd('DATA')).toEqual(['503 5.5.1 Error: need RCPT command']);
    expect(await c.cmd('RSET')).toEqual(['250 2.0.0 Flushed']);
    expect(await c.cmd('RCPT TO:<r@example.net>')).toEqual(['503 5.5.1 Error: need MAIL command']);
    expect(await c.cmd(`MAIL FROM:<${ALICE}>`)).toEqual(['250 2.1.0 Accepted']);
    c.close();
  });

  it('address syntax: 501 5.1.7 for the sender, 5.1.3 for a recipient; the null recipient refused', async () => {
    const { authed } = await start();
    const c = await authed();
    expect(await c.cmd('MAIL FROM:<a..b@example.com>')).toEqual([
      '501 5.1.7 Error: Bad sender address syntax',
    ]);
    expect(await c.cmd(`MAIL FROM:<${ALICE}> SIZE=1 SIZE=2`)).toEqual([
      '501 5.5.4 Error: duplicate SIZE parameter',
    ]);
    expect(await c.cmd(`MAIL FROM:<${ALICE}> BODY`)).toEqual([
      '501 5.5.4 Error: BODY parameter requires a value',
    ]);
    expect(await c.cmd(`MAIL FROM:<${ALICE}>`)).toEqual(['250 2.1.0 Accepted']);
    expect(await c.cmd('RCPT TO:<a@b@example.net>')).toEqual([
      '501 5.1.3 Error: Bad recipient address syntax',
    ]);
    expect(await c.cmd('RCPT TO:<>')).toEqual(['501 5.1.3 Error: Bad recipient address syntax']);
    expect(await c.cmd('RCPT TO:<r@example.net> NOTIFY')).toEqual([
      '501 5.5.4 Error: NOTIFY parameter requires a value',
    ]);
    expect(await c.cmd('RCPT TO:<postmaster>')).toEqual(['250 2.1.5 Accepted']);
    c.close();
  });

  it('a repeated recipient (any case) is accepted and counts once against maxRecipients', async () => {
    const { authed, deliverer } = await start({ maxRecipients: 2 });
    const c = await authed();
    await c.cmd(`MAIL FROM:<${ALICE}>`);
    expect(await c.cmd('RCPT TO:<r1@example.net>')).toEqual(['250 2.1.5 Accepted']);
    expect(await c.cmd('RCPT TO:<R1@Example.NET>')).toEqual(['250 2.1.5 Accepted']);
    expect(await c.cmd('RCPT TO:<r2@example.net>')).toEqual(['250 2.1.5 Accepted']);
    expect(await c.cmd('RCPT TO:<r1@example.net>')).toEqual(['250 2.1.5 Accepted']);
    expect(await c.cmd('RCPT TO:<r3@example.net>')).toEqual(['452 4.5.3 Error: too many recipients']);
    expect(await c.cmd('DATA')).toEqual(['354 End data with <CR><LF>.<CR><LF>']);
    expect(await c.cmd('hi\r\n.')).toEqual(['250 2.0.0 upstream: OK id=1']);
    expect(deliverer.deliveries[0]!.envelope.to).toEqual(['r1@example.net', 'r2@example.net']);
    c.close();
  });

  it('MAIL SIZE= over smtp.maxMessageSize: 552 5.3.4; bad syntax: 501 5.5.4; at the limit: 250', async () => {
    const { authed } = await start({ maxMessageSize: 1000 });
    const c = await authed();
    expect(await c.cmd(`MAIL FROM:<${ALICE}> SIZE=1001`)).toEqual([
      '552 5.3.4 Error: message exceeds fixed maximum message size 1000',
    ]);
    for (const bad of ['SIZE=abc', 'SIZE=-1', 'SIZE=1e3', `SIZE=${'9'.repeat(21)}`])
      expect(await c.cmd(`MAIL FROM:<${ALICE}> ${bad}`), bad).toEqual([
        '501 5.5.4 Error: Bad message size syntax',
      ]);
    expect(await c.cmd(`MAIL FROM:<${ALICE}> SIZE=1000`)).toEqual(['250 2.1.0 Accepted']);
    c.close();
  });

  it('BODY=, SMTPUTF8 and REQUIRETLS checked; BODY=8BITMIME and SMTPUTF8 reach the relay envelope', async () => {
    const { authed, deliverer } = await start();
    const c = await authed();
    expect(await c.cmd(`MAIL FROM:<${ALICE}> BODY=BINARYMIME`)).toEqual([
      '501 5.5.4 Invalid BODY parameter value. Must be 7BIT or 8BITMIME',
    ]);
    expect(await c.cmd(`MAIL FROM:<${ALICE}> SMTPUTF8=yes`)).toEqual([
      '501 5.5.4 Invalid SMTPUTF8 parameter. This flag does not accept a value',
    ]);
    expect(await c.cmd(`MAIL FROM:<${ALICE}> REQUIRETLS`)).toEqual(['555 5.5.4 REQUIRETLS is not supported']);
    expect(await c.cmd(`MAIL FROM:<${ALICE}> body=8bitmime SMTPUTF8`)).toEqual(['250 2.1.0 Accepted']);
    expect(await c.cmd('RCPT TO:<jörg@bücher.example>')).toEqual(['250 2.1.5 Accepted']);
    await c.cmd('DATA');
    expect(await c.cmd('Subject: ü\r\n\r\nä\r\n.')).toEqual(['250 2.0.0 upstream: OK id=1']);
    await c.cmd(`MAIL FROM:<${ALICE}> BODY=7BIT`);
    await c.cmd('RCPT TO:<r@example.net>');
    await c.cmd('DATA');
    expect(await c.cmd('plain\r\n.')).toEqual(['250 2.0.0 upstream: OK id=1']);
    const [first, second] = deliverer.deliveries;
    expect(first!.envelope).toMatchObject({ to: ['jörg@bücher.example'], body8bit: true, smtputf8: true });
    expect(first!.bytes.toString('utf8')).toBe('Subject: ü\r\n\r\nä\r\n');
    expect(second!.envelope).toMatchObject({ body8bit: false, smtputf8: false });
    c.close();
  });

  it('"\\n.\\n" in the body does not end DATA: a smuggled MAIL is message content', async () => {
    const { authed, deliverer } = await start();
    const c = await authed();
    await c.cmd(`MAIL FROM:<${ALICE}>`);
    await c.cmd('RCPT TO:<r@example.net>');
    await c.cmd('DATA');
    const from = c.chunks.length;
    c.write(
      `Subject: x\r\n\r\nhi\n.\nMAIL FROM:<${ALICE}>\r\nRCPT TO:<evil@example.org>\r\nDATA\r\nsmuggled\r\n`,
    );
    await sleep(100);
    expect(chunksSince(c, from)).toEqual([]);
    expect(await c.cmd('.')).toEqual(['250 2.0.0 upstream: OK id=1']);
    expect(deliverer.deliveries).toHaveLength(1);
    expect(deliverer.deliveries[0]!.envelope.to).toEqual(['r@example.net']);
    expect(deliverer.deliveries[0]!.bytes.toString()).toContain('RCPT TO:<evil@example.org>');
    c.close();
  });
});

/** A line reader over any socket (plain, or TLS after STARTTLS). */
class Lines {
  private buf = '';
  readonly received: string[] = [];
  private waiter: (() => void) | undefined;
  constructor(readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (s: string) => {
      this.received.push(s);
      this.buf += s;
      this.waiter?.();
    });
    socket.on('error', () => undefined);
  }

  /** the next complete reply line that ends a reply (code + space) */
  async reply(): Promise<string[]> {
    for (;;) {
      const lines: string[] = [];
      let rest = this.buf;
      let nl: number;
      while ((nl = rest.indexOf('\r\n')) >= 0) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 2);
        lines.push(line);
        if (/^\d{3} /.test(line)) {
          this.buf = rest;
          return lines;
        }
      }
      await new Promise<void>((r) => (this.waiter = r));
    }
  }

  async cmd(line: string): Promise<string[]> {
    this.socket.write(line + '\r\n');
    return this.reply();
  }
}

describe('STARTTLS', () => {
  it('commands pipelined after STARTTLS are dropped; after the handshake the session starts over', async () => {
    const { port, deliverer } = await start({}, { tls: true });
    const socket = net.connect({ host: '127.0.0.1', port });
    const plainText = new Lines(socket);
    expect((await plainText.reply())[0]).toMatch(/^220 /);
    const ehlo = await plainText.cmd('EHLO client.test');
    expect(ehlo).toContain('250-STARTTLS');
    expect(ehlo).toContain('250-AUTH PLAIN LOGIN'); // loopback listener: requireTls defaults to false
    const before = plainText.received.length;
    socket.write(
      `STARTTLS\r\nNOOP\r\nEHLO client.test\r\nAUTH PLAIN ${plain(ALICE, PASSWORD)}\r\nMAIL FROM:<${ALICE}>\r\n`,
    );
    expect(await plainText.reply()).toEqual(['220 2.0.0 Ready to start TLS']);
    socket.removeAllListeners('data');
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ socket, rejectUnauthorized: false, servername: 'localhost' }, () => resolve(s));
      s.once('error', reject);
    });
    expect(plainText.received.slice(before)).toEqual(['220 2.0.0 Ready to start TLS\r\n']);
    const t = new Lines(secure);
    await sleep(100);
    expect(t.received).toEqual([]); // nothing answered the pipelined NOOP, EHLO, AUTH or MAIL
    expect(await t.cmd(`MAIL FROM:<${ALICE}>`)).toEqual(['503 5.5.1 Error: send HELO/EHLO first']);
    const again = await t.cmd('EHLO client.test');
    expect(again).not.toContain('250-STARTTLS');
    expect(again).toContain('250-AUTH PLAIN LOGIN');
    expect(await t.cmd('STARTTLS')).toEqual(['503 5.5.1 Error: TLS already active']);
    expect(await t.cmd(`MAIL FROM:<${ALICE}>`)).toEqual(['530 5.7.0 Authentication required']);
    expect(await t.cmd(`AUTH PLAIN ${plain(ALICE, PASSWORD)}`)).toEqual([
      '235 2.7.0 Authentication successful',
    ]);
    expect(await t.cmd(`MAIL FROM:<${ALICE}>`)).toEqual(['250 2.1.0 Accepted']);
    expect(await t.cmd('RCPT TO:<r@example.net>')).toEqual(['250 2.1.5 Accepted']);
    expect(await t.cmd('DATA')).toEqual(['354 End data with <CR><LF>.<CR><LF>']);
    expect(await t.cmd('hi\r\n.')).toEqual(['250 2.0.0 upstream: OK id=1']);
    expect(deliverer.deliveries).toHaveLength(1);
    secure.destroy();
  });

  it('a login before STARTTLS does not survive it (RFC 3207 4.2)', async () => {
    const { port } = await start({}, { tls: true });
    const socket = net.connect({ host: '127.0.0.1', port });
    const p = new Lines(socket);
    await p.reply();
    await p.cmd('EHLO client.test');
    expect(await p.cmd(`AUTH PLAIN ${plain(ALICE, PASSWORD)}`)).toEqual([
      '235 2.7.0 Authentication successful',
    ]);
    expect(await p.cmd('STARTTLS')).toEqual(['220 2.0.0 Ready to start TLS']);
    socket.removeAllListeners('data');
    const secure = tls.connect({ socket, rejectUnauthorized: false });
    const t = new Lines(secure);
    await new Promise((r) => secure.once('secureConnect', r));
    await t.cmd('EHLO client.test');
    expect(await t.cmd(`MAIL FROM:<${ALICE}>`)).toEqual(['530 5.7.0 Authentication required']);
    secure.destroy();
  });

  it('requireTls: AUTH is neither offered nor accepted before STARTTLS (538)', async () => {
    const { connect } = await start({ requireTls: true }, { tls: true });
    const c = await connect();
    const ehlo = await c.cmd('EHLO client.test');
    expect(ehlo).toContain('250-STARTTLS');
    expect(ehlo.join('\n')).not.toMatch(/AUTH/);
    expect(await c.cmd(`AUTH PLAIN ${plain(ALICE, PASSWORD)}`)).toEqual([
      '538 5.7.0 Error: Must issue a STARTTLS command first',
    ]);
    c.close();
  });

  it('requireTls on an implicit-TLS listener: AUTH is offered and accepted at once', async () => {
    const { tlsPort } = await start({ requireTls: true, tlsListen: ['127.0.0.1:0'] }, { tls: true });
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: tlsPort, rejectUnauthorized: false }, () =>
        resolve(s),
      );
      s.once('error', reject);
    });
    const t = new Lines(secure);
    await t.reply();
    expect(await t.cmd('EHLO client.test')).toContain('250-AUTH PLAIN LOGIN');
    expect(await t.cmd(`AUTH PLAIN ${plain(ALICE, PASSWORD)}`)).toEqual([
      '235 2.7.0 Authentication successful',
    ]);
    secure.destroy();
  });

  it('without smtp.tls: STARTTLS is not offered and gets 502; with an argument: 501', async () => {
    const { connect } = await start();
    const c = await connect();
    expect((await c.cmd('EHLO client.test')).join('\n')).not.toMatch(/STARTTLS/);
    expect(await c.cmd('STARTTLS now')).toEqual(['501 5.5.4 Error: syntax: STARTTLS']);
    expect(await c.cmd('STARTTLS')).toEqual(['502 5.5.1 Error: STARTTLS not available']);
    c.close();
  });
});

describe('the server: maxClients, PROXY header, implicit TLS', () => {
  it('the connection past maxClients gets 421 and is closed; once one leaves, a new one is accepted', async () => {
    const { connect, raw, listeners } = await start({ maxClients: 2 });
    const a = await connect();
    const b = await connect();
    const c = await raw();
    expect(await c.read()).toEqual([`421 ${HOST} Too many connected clients, try again in a moment`]);
    await c.closedPromise;
    expect(await a.cmd('NOOP')).toEqual(['250 2.0.0 OK']);
    a.close();
    await until(() => listeners.connectionCount === 1);
    const d = await connect();
    expect(await d.cmd('NOOP')).toEqual(['250 2.0.0 OK']);
    b.close();
    d.close();
  });

  it('a PROXY header with EHLO pipelined in the same write: the session has the header address', async () => {
    const { raw } = await start({ proxyProtocol: true });
    const c = await raw();
    c.write('PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\nEHLO client.test\r\nNOOP\r\n');
    expect(await c.read()).toEqual([`220 ${HOST} ESMTP xoauth2-proxy ESMTP ready`]);
    expect((await c.read())[0]).toBe(`250-${HOST} Nice to meet you, [192.0.2.7]`);
    expect(await c.read()).toEqual(['250 2.0.0 OK']);
    c.close();
  });

  it('a PROXY header split over writes, TCP6 and UNKNOWN', async () => {
    const { raw } = await start({ proxyProtocol: true });
    const c = await raw();
    c.write('PROXY TCP6 2001:db8::7 ');
    await sleep(30);
    c.write('2001:db8::1 40000 25\r\n');
    await c.read();
    expect((await c.cmd('EHLO client.test'))[0]).toBe(`250-${HOST} Nice to meet you, [2001:db8::7]`);
    c.close();
    const u = await raw();
    u.write('PROXY UNKNOWN\r\n');
    await u.read();
    expect((await u.cmd('EHLO client.test'))[0]).toBe(`250-${HOST} Nice to meet you, [127.0.0.1]`);
    u.close();
  });

  it('a bad or missing PROXY header: 421 and close, no session', async () => {
    const { raw } = await start({ proxyProtocol: true });
    const c = await raw();
    c.write('EHLO client.test\r\n');
    expect(await c.read()).toEqual([
      '421 4.3.0 Expected a valid PROXY protocol header (smtp.proxyProtocol): not a PROXY header',
    ]);
    await c.closedPromise;
    const d = await raw();
    d.write('PROXY TCP4 evil.example 198.51.100.1 1 25\r\n');
    expect((await d.read())[0]).toMatch(/^421 4\.3\.0 .*invalid PROXY source address$/);
    await d.closedPromise;
    const e = await raw();
    e.write('PROXY TCP4 ' + '1'.repeat(200));
    expect((await e.read())[0]).toMatch(/^421 4\.3\.0 .*header line too long$/);
    await e.closedPromise;
  });

  it('proxyProtocol as a list: a peer not on it is served without a header', async () => {
    const { connect } = await start({ proxyProtocol: ['192.0.2.99'] });
    const c = await connect();
    expect((await c.cmd('EHLO client.test'))[0]).toBe(`250-${HOST} Nice to meet you, [127.0.0.1]`);
    c.close();
  });

  it('implicit TLS with proxyProtocol: the ClientHello in the same write as the header', async () => {
    const { tlsPort } = await start({ proxyProtocol: true, tlsListen: ['127.0.0.1:0'] }, { tls: true });
    const header = Buffer.from('PROXY TCP4 192.0.2.8 198.51.100.1 40000 465\r\n');
    const socket = net.connect({ host: '127.0.0.1', port: tlsPort });
    await new Promise((r) => socket.once('connect', r));
    const writes: number[] = [];
    let first = true;
    // the TLS client writes through this duplex; its first write (the ClientHello) gets the header
    const through = new Duplex({
      write(chunk: Buffer, _enc, cb) {
        const out = first ? Buffer.concat([header, chunk]) : chunk;
        if (first) writes.push(out.length);
        first = false;
        socket.write(out, cb);
      },
      read() {},
    });
    socket.on('data', (d) => through.push(d));
    socket.on('end', () => through.push(null));
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ socket: through, rejectUnauthorized: false }, () => resolve(s));
      s.once('error', reject);
    });
    expect(writes[0]).toBeGreaterThan(header.length); // header and ClientHello went in one write
    const t = new Lines(secure);
    expect(await t.reply()).toEqual([`220 ${HOST} ESMTP xoauth2-proxy ESMTP ready`]);
    const ehlo = await t.cmd('EHLO client.test');
    expect(ehlo[0]).toBe(`250-${HOST} Nice to meet you, [192.0.2.8]`);
    expect(ehlo).not.toContain('250-STARTTLS');
    expect(await t.cmd(`AUTH PLAIN ${plain(ALICE, PASSWORD)}`)).toEqual([
      '235 2.7.0 Authentication successful',
    ]);
    secure.destroy();
    socket.destroy();
  });

  it('implicit TLS without a header: the greeting comes after the handshake', async () => {
    const { tlsPort } = await start({ tlsListen: ['127.0.0.1:0'] }, { tls: true });
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: tlsPort, rejectUnauthorized: false }, () =>
        resolve(s),
      );
      s.once('error', reject);
    });
    const t = new Lines(secure);
    expect(await t.reply()).toEqual([`220 ${HOST} ESMTP xoauth2-proxy ESMTP ready`]);
    expect(await t.cmd('STARTTLS')).toEqual(['503 5.5.1 Error: TLS already active']);
    secure.destroy();
  });
});
