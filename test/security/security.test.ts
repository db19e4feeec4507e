// Security properties as tests against the real proxy process: no open relay, PROXY protocol
// (client addresses stay real behind a load balancer, and the brake and trustedNetworks use them),
// no enumeration by timing, AUTH only after TLS when required, TLS 1.2+ on both legs, state files
// private, failed logins logged without the password.
import { beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { hashPassword } from '../../src/accounts/password.js';
import { freePort } from '../../src/tools/harness/ports.js';
import { simProvider, type ProxyProc, type SimProc } from '../helpers/procs.js';
import { simAccount } from '../helpers/sim-accounts.js';
import { TestClient, loginAndSend, makeMessage } from '../helpers/smtp-client.js';
import { useProcs, type Procs } from '../helpers/use-procs.js';
import { sleep, until } from '../helpers/wait.js';
import { RawSmtp, rawInData } from '../tools/sim/helpers.js';

const PW = 'client-password-for-tests-only';
const WRONG = 'wrong-password-for-tests-only';
const ALICE = 'alice@example.com';
const account = (hash: string) =>
  simAccount(ALICE, { clientId: 'sec-client', tag: 'sec', passwordHash: hash });
const b64 = (s: string) => Buffer.from(s).toString('base64');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

async function selfSigned(): Promise<{ cert: string; key: string }> {
  const { generate } = await import('selfsigned');
  const p = await generate([{ name: 'commonName', value: 'localhost' }], { keySize: 2048 } as never);
  return { cert: p.cert, key: p.private };
}

/** A proxy with STARTTLS and an implicit-TLS listener on a self-signed certificate; `smtp` is merged. */
async function startTlsProxy(
  procs: Procs,
  smtp: Record<string, unknown>,
): Promise<{ proxy: ProxyProc; cert: { cert: string; key: string }; tlsPort: number }> {
  const cert = await selfSigned();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-sec-tls-'));
  fs.writeFileSync(path.join(dir, 'cert.pem'), cert.cert);
  fs.writeFileSync(path.join(dir, 'key.pem'), cert.key);
  const tlsPort = await freePort();
  const proxy = await procs.proxy(
    {
      smtp: { tls: { cert: './cert.pem', key: './key.pem' }, tlsListen: [`127.0.0.1:${tlsPort}`], ...smtp },
      providers: { sim: simProvider(sim) },
      accounts: [account(hash)],
    },
    { dir },
  );
  return { proxy, cert, tlsPort };
}

/** A raw connection that first sends a PROXY v1 header claiming `from` as the client address. */
async function viaBalancer(port: number, from: string): Promise<RawSmtp> {
  const c = await RawSmtp.connect({ host: '127.0.0.1', port });
  c.write(`PROXY TCP4 ${from} 127.0.0.1 40000 ${port}\r\n`);
  expect((await c.read())[0]).toMatch(/^220 /);
  expect((await c.cmd('EHLO balanced.test'))[0]).toMatch(/^250/);
  return c;
}

const simProcs = useProcs('all');
let sim: SimProc;
let hash: string;
beforeAll(async () => {
  sim = await simProcs.sim();
  hash = await hashPassword(PW);
});

describe('behind a load balancer (smtp.proxyProtocol: true)', () => {
  const procs = useProcs('all');
  let proxy: ProxyProc;
  beforeAll(async () => {
    proxy = await procs.proxy({
      smtp: { proxyProtocol: true, trustedNetworks: ['203.0.113.0/24'] },
      providers: { sim: simProvider(sim) },
      accounts: [account(hash)],
      log: { level: 'info' },
    });
  });

  it('trusts the network the header names, and only that: others must AUTH (530), as before', async () => {
    const trusted = await viaBalancer(proxy.smtpPort, '203.0.113.7');
    expect((await trusted.cmd(`MAIL FROM:<${ALICE}>`))[0]).toMatch(/^250/);
    expect((await trusted.cmd('RCPT TO:<someone@example.net>'))[0]).toMatch(/^250/);
    expect((await trusted.cmd('DATA'))[0]).toMatch(/^354/);
    const m = makeMessage(ALICE, 'someone@example.net');
    expect((await trusted.cmd(m.raw.replace(/\r\n$/, '') + '\r\n.'))[0]).toMatch(/^250/);
    expect((await sim.stats()).messageIds).toContain(m.id);
    // trusted, but not a configured mailbox: no relaying for strangers
    expect((await trusted.cmd('RSET'))[0]).toMatch(/^250/);
    expect((await trusted.cmd('MAIL FROM:<stranger@example.org>'))[0]).toMatch(/^5\d\d /);
    trusted.close();

    // the TCP peer is 127.0.0.1 either way; the header decides
    const outside = await viaBalancer(proxy.smtpPort, '198.51.100.9');
    expect((await outside.cmd(`MAIL FROM:<${ALICE}>`))[0]).toMatch(/^530 5\.7\.0 /);
    outside.close();
  });

  it('refuses a connection that does not start with a PROXY header', async () => {
    const c = await RawSmtp.connect({ host: '127.0.0.1', port: proxy.smtpPort });
    c.write('EHLO sneaky.test\r\n');
    await c.closedPromise;
    expect(c.chunks.join('')).not.toMatch(/^2\d\d/m);
  });

  it('slows failed logins per client address from the header, and logs each without the password', async () => {
    const attempt = async (from: string) => {
      const c = await viaBalancer(proxy.smtpPort, from);
      const t0 = Date.now();
      const r = await c.cmd(`AUTH PLAIN ${b64(`\0${ALICE}\0${WRONG}`)}`);
      const ms = Date.now() - t0;
      c.close();
      expect(r[0]).toBe('535 5.7.8 Authentication credentials invalid');
      return ms;
    };
    const times: number[] = [];
    for (let i = 0; i < 4; i++) times.push(await attempt('198.51.100.20'));
    expect(times[3]).toBeGreaterThanOrEqual(450); // past 3 free failures: slowed
    expect(await attempt('198.51.100.21')).toBeLessThan(400); // another client is not
    const lines = proxy
      .output()
      .split('\n')
      .filter((l) => l.includes('"auth_failed"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.filter((l) => l.remoteAddress === '198.51.100.20')).toHaveLength(4);
    expect(lines[0]).toMatchObject({
      username: ALICE,
      mechanism: 'PLAIN',
      msg: 'client authentication failed',
    });
    expect(proxy.output()).not.toContain(WRONG);
  });

  it('gives unknown mailboxes and wrong passwords the same reply in the same time', async () => {
    const unknown: number[] = [];
    const wrong: number[] = [];
    // a fresh client address per attempt keeps the brake out of the measurement
    for (let i = 0; i < 16; i++) {
      const user = i % 2 ? ALICE : `nobody${i}@example.com`;
      const c = await viaBalancer(proxy.smtpPort, `198.51.100.${100 + i}`);
      const t0 = process.hrtime.bigint();
      const r = await c.cmd(`AUTH PLAIN ${b64(`\0${user}\0${WRONG}`)}`);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      c.close();
      expect(r).toEqual(['535 5.7.8 Authentication credentials invalid']);
      (i % 2 ? wrong : unknown).push(ms);
    }
    const [mu, mw] = [median(unknown), median(wrong)];
    // both pay for one password KDF (tens of ms); a skipped KDF for unknown mailboxes would show
    // as a gap of that size
    expect(Math.abs(mu - mw)).toBeLessThan(Math.max(15, 0.35 * Math.max(mu, mw)));
  });
});

describe('without proxyProtocol', () => {
  const procs = useProcs('all');
  let proxy: ProxyProc;
  beforeAll(async () => {
    proxy = await procs.proxy({
      smtp: { trustedNetworks: ['203.0.113.0/24'] },
      providers: { sim: simProvider(sim) },
      accounts: [account(hash)],
    });
  });

  it('treats a PROXY line as an unknown command and trusts nothing it claims', async () => {
    const c = await RawSmtp.connect({ host: '127.0.0.1', port: proxy.smtpPort });
    expect((await c.read())[0]).toMatch(/^220 /);
    expect((await c.cmd(`PROXY TCP4 203.0.113.7 127.0.0.1 40000 ${proxy.smtpPort}`))[0]).toMatch(/^5\d\d /);
    expect((await c.cmd('EHLO x.test'))[0]).toMatch(/^250/);
    expect((await c.cmd(`MAIL FROM:<${ALICE}>`))[0]).toMatch(/^530 5\.7\.0 /);
    c.close();
  });
});

describe('TLS', () => {
  const procs = useProcs('all');
  let proxy: ProxyProc;
  let cert: { cert: string; key: string };
  let tlsPort: number;
  const OLD = { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' } as const;
  beforeAll(async () => {
    ({ proxy, cert, tlsPort } = await startTlsProxy(procs, { requireTls: true }));
  });

  it('with requireTls: no AUTH offered or accepted before STARTTLS; after it, login works', async () => {
    const c = await RawSmtp.connect({ host: '127.0.0.1', port: proxy.smtpPort });
    await c.read();
    const ehlo = await c.cmd('EHLO x.test');
    expect(ehlo.join('\n')).toContain('STARTTLS');
    expect(ehlo.join('\n')).not.toMatch(/AUTH/);
    expect((await c.cmd(`AUTH PLAIN ${b64(`\0${ALICE}\0${PW}`)}`))[0]).toMatch(/^5\d\d /);
    c.close();
    const s = new TestClient({ port: proxy.smtpPort, starttls: true });
    await s.connect();
    expect((await s.login(ALICE, PW)).ok).toBe(true);
    s.close();
  });

  /** a TLS 1.0/1.1 handshake over `socket` (or a new connection to `port`): the protocol, or the error */
  const oldHandshake = (opts: { port?: number; socket?: net.Socket }) =>
    new Promise<string>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', ...opts, rejectUnauthorized: false, ...OLD }, () =>
        resolve(`ok ${s.getProtocol()}`),
      );
      s.on('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code}`));
    });

  it('refuses TLS 1.0/1.1 clients on implicit TLS and on STARTTLS (and such a client does work elsewhere)', async () => {
    // control: this OpenSSL can speak TLS 1.1, so a refusal below is the proxy's doing
    const old = tls.createServer({ ...cert, minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' }, (s) =>
      s.end(),
    );
    await new Promise<void>((r) => old.listen(0, '127.0.0.1', r));
    expect(await oldHandshake({ port: (old.address() as net.AddressInfo).port })).toBe('ok TLSv1.1');
    old.close();

    expect(await oldHandshake({ port: tlsPort })).toMatch(/^error /);
    const raw = net.connect({ host: '127.0.0.1', port: proxy.smtpPort });
    await new Promise((r) => raw.once('connect', r));
    let seen = '';
    raw.on('data', (d) => (seen += d.toString()));
    const seenMatch = (re: RegExp) => until(() => re.test(seen), 5000, `${re} in ${JSON.stringify(seen)}`);
    await seenMatch(/^220 /); // talking before the greeting gets a client dropped
    raw.write('EHLO x.test\r\nSTARTTLS\r\n');
    await seenMatch(/\r\n220 /);
    raw.removeAllListeners('data');
    expect(await oldHandshake({ socket: raw })).toMatch(/^error /);
    raw.destroy();
  });
});

describe('upstream TLS', () => {
  const procs = useProcs();
  it('refuses an upstream that only speaks TLS 1.1: the client gets 451 4.4.x, never 250', async () => {
    const cert = await selfSigned();
    let handshakes = 0;
    let failures = 0;
    const upstream = tls.createServer(
      { ...cert, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' },
      (s) => {
        handshakes++;
        s.write('220 old.test ESMTP\r\n');
      },
    );
    upstream.on('tlsClientError', () => failures++);
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-sec-up-'));
    fs.writeFileSync(path.join(dir, 'old-ca.pem'), cert.cert);
    const port = (upstream.address() as net.AddressInfo).port;
    const proxy = await procs.proxy(
      {
        providers: {
          sim: simProvider(sim, { smtp: { host: '127.0.0.1', port, security: 'tls', ca: './old-ca.pem' } }),
        },
        accounts: [account(hash)],
      },
      { dir },
    );
    try {
      const { login, reply: r } = await loginAndSend(proxy.smtpPort, ALICE, PW, {
        to: 'someone@example.net',
      });
      expect(login.ok).toBe(true);
      expect(r.ok).toBe(false);
      expect(r.response).toMatch(/^451 4\.4\.\d /);
      expect(handshakes).toBe(0);
      expect(failures).toBeGreaterThan(0);
    } finally {
      upstream.close();
    }
  });
});

describe('state at rest', () => {
  const procs = useProcs();
  it('keeps the state directory 0700 and every file in it 0600', async () => {
    const proxy = await procs.proxy({ providers: { sim: simProvider(sim) }, accounts: [account(hash)] });
    const sent = (await loginAndSend(proxy.smtpPort, ALICE, PW, { to: 'someone@example.net' })).reply;
    expect(sent.ok).toBe(true);
    const data = path.join(proxy.dir, 'data');
    expect(fs.statSync(data).mode & 0o777).toBe(0o700);
    const files = fs.readdirSync(data);
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect([f, fs.statSync(path.join(data, f)).mode & 0o777]).toEqual([f, 0o600]);
  });
});

describe('slowloris', () => {
  const procs = useProcs();
  it('cuts off a client that trickles a command a byte at a time (421 4.4.2), and keeps serving', async () => {
    const proxy = await procs.proxy({
      smtp: { idleTimeout: '2s' },
      providers: { sim: simProvider(sim) },
      accounts: [account(hash)],
    });
    const c = await RawSmtp.connect({ host: '127.0.0.1', port: proxy.smtpPort });
    expect((await c.read())[0]).toMatch(/^220 /);
    const t0 = Date.now();
    // each byte re-arms the socket's idle timer, so only a per-command deadline stops this
    const line = 'EHLO trickle.example.com\r\n'.repeat(20);
    for (let i = 0; i < line.length && !c.closed && Date.now() - t0 < 12_000; i++) {
      c.write(line[i]!);
      await sleep(250);
    }
    expect(c.closed).toBe(true);
    expect(Date.now() - t0).toBeLessThan(6000);
    expect(c.chunks.join('')).toMatch(/\r\n421 4\.4\.2 /);
    const ok = new TestClient({ port: proxy.smtpPort });
    await ok.connect();
    expect((await ok.login(ALICE, PW)).ok).toBe(true);
    ok.close();
  });
});

describe('slowloris in DATA (smtp.minDataRate)', () => {
  const procs = useProcs('all');
  let proxy: ProxyProc;
  beforeAll(async () => {
    proxy = await procs.proxy({
      smtp: { idleTimeout: '2s', minDataRate: 100 },
      providers: { sim: simProvider(sim) },
      accounts: [account(hash)],
    });
  });

  const inData = () => rawInData(proxy.smtpPort, ALICE, PW, 'someone@example.net');

  it('cuts off a client that trickles its message a byte at a time (421 4.4.2); nothing is relayed', async () => {
    const c = await inData();
    const m = makeMessage(ALICE, 'someone@example.net');
    const t0 = Date.now();
    // each byte re-arms the socket idle timer; the deadline is idleTimeout + bytes / minDataRate
    for (let i = 0; i < m.raw.length && !c.closed && Date.now() - t0 < 12_000; i++) {
      c.write(m.raw[i]!);
      await sleep(250);
    }
    expect(c.closed).toBe(true);
    expect(Date.now() - t0).toBeLessThan(6000);
    expect(c.chunks.join('')).toMatch(/\r\n421 4\.4\.2 .*message data too slow/);
    expect((await sim.stats()).messageIds).not.toContain(m.id);
  });

  it('never cuts off a client waiting longer than idleTimeout for the upstream to answer', async () => {
    await sim.control('/control/faults', { latencyMs: 4000 }); // twice idleTimeout before the reply to DATA
    try {
      const c = await inData();
      const m = makeMessage(ALICE, 'someone@example.net');
      c.write(m.raw + '.\r\n');
      const t0 = Date.now();
      expect((await c.read())[0]).toMatch(/^250 /);
      expect(Date.now() - t0).toBeGreaterThan(3500);
      expect((await sim.stats()).messageIds).toContain(m.id);
      c.close();
    } finally {
      await sim.control('/control/faults', { latencyMs: 0 });
    }
  });

  it('gives an honest slow client the time its bytes justify, past idleTimeout', async () => {
    const c = await inData();
    const m = makeMessage(ALICE, 'someone@example.net', { body: ('y'.repeat(48) + '\r\n').repeat(40) });
    // about 2 KB at 500 bytes/s: 4 s, twice idleTimeout, well inside 2 s + 2,000 / 100 s
    const t0 = Date.now();
    for (let i = 0; i < m.raw.length; i += 125) {
      c.write(m.raw.slice(i, i + 125));
      await sleep(250);
    }
    expect(Date.now() - t0).toBeGreaterThan(3000);
    c.write('.\r\n');
    expect((await c.read())[0]).toMatch(/^250 /);
    expect((await sim.stats()).messageIds).toContain(m.id);
    c.close();
  });
});

describe('slowloris before the session (PROXY header, implicit-TLS handshake)', () => {
  const procs = useProcs('all');
  let proxy: ProxyProc;
  let tlsPort: number;
  beforeAll(async () => {
    // 127.0.0.2 is the balancer; direct clients talk TLS at once
    ({ proxy, tlsPort } = await startTlsProxy(procs, { idleTimeout: '2s', proxyProtocol: ['127.0.0.2'] }));
  });

  /** Send `bytes` one at a time, 4 a second, until the proxy closes the connection or 12 s pass. */
  async function trickle(
    port: number,
    bytes: Buffer,
    localAddress = '127.0.0.1',
  ): Promise<{ closedAfterMs: number | null; got: string }> {
    const sock = net.connect({ host: '127.0.0.1', port, localAddress });
    let got = '';
    let closed = false;
    sock.on('data', (d) => (got += d.toString('latin1')));
    sock.on('error', () => undefined);
    sock.on('close', () => (closed = true));
    await new Promise((r) => sock.once('connect', r));
    const t0 = Date.now();
    // each byte re-arms the socket idle timer, so only a deadline on the whole stage stops this
    for (let i = 0; !closed && Date.now() - t0 < 12_000; i++) {
      if (i < bytes.length) sock.write(bytes.subarray(i, i + 1));
      await sleep(250);
    }
    sock.destroy();
    return { closedAfterMs: closed ? Date.now() - t0 : null, got };
  }

  it('closes a connection that trickles its PROXY header', async () => {
    const header = Buffer.from(`PROXY TCP4 203.0.113.9 127.0.0.1 40000 ${proxy.smtpPort}\r\n`);
    const r = await trickle(proxy.smtpPort, header, '127.0.0.2');
    expect(r.closedAfterMs).not.toBeNull();
    expect(r.closedAfterMs!).toBeLessThan(6000);
    expect(r.got, JSON.stringify(r)).not.toMatch(/^220/);
  });

  // (the TLS case was already bounded: the TLS socket's timer sees no activity until a record is complete)
  it('closes a connection that trickles its TLS ClientHello on the implicit-TLS listener', async () => {
    // a real ClientHello, captured from Node's TLS client
    const hello = await new Promise<Buffer>((resolve) => {
      const catcher = net.createServer((s) =>
        s.once('data', (d) => {
          resolve(d);
          s.destroy();
          catcher.close();
        }),
      );
      catcher.listen(0, '127.0.0.1', () => {
        const port = (catcher.address() as net.AddressInfo).port;
        tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }).on('error', () => undefined);
      });
    });
    expect(hello[0]).toBe(0x16); // a TLS handshake record
    const r = await trickle(tlsPort, hello);
    expect(r.closedAfterMs).not.toBeNull();
    expect(r.closedAfterMs!).toBeLessThan(6000);
    // and the listener still serves
    const ok = new TestClient({ port: tlsPort, secure: true });
    await ok.connect();
    expect((await ok.login(ALICE, PW)).ok).toBe(true);
    ok.close();
  });
});

describe('proxyProtocol limited to listed load balancers', () => {
  const procs = useProcs();
  it('expects the header only from the listed address; others connect directly with their own address', async () => {
    const proxy = await procs.proxy({
      smtp: { proxyProtocol: ['127.0.0.2'], trustedNetworks: ['203.0.113.0/24'] },
      providers: { sim: simProvider(sim) },
      accounts: [account(hash)],
    });
    // from the balancer (127.0.0.2): the header is read and its client address counts
    const lb = net.connect({ host: '127.0.0.1', port: proxy.smtpPort, localAddress: '127.0.0.2' });
    let seen = '';
    lb.on('data', (d) => (seen += d.toString()));
    await new Promise((r) => lb.once('connect', r));
    const seenMatch = (re: RegExp) => until(() => re.test(seen), 4000, `${re} in ${JSON.stringify(seen)}`);
    lb.write(`PROXY TCP4 203.0.113.9 127.0.0.1 40000 ${proxy.smtpPort}\r\n`);
    await seenMatch(/^220 /); // the greeting comes after the header; talking before it is refused
    lb.write('EHLO lb.test\r\n');
    await seenMatch(/\r\n250 /);
    lb.write(`MAIL FROM:<${ALICE}>\r\n`);
    await seenMatch(/\r\n250 2\.1\.0/); // trusted network, from the header
    lb.destroy();

    // a direct client (127.0.0.1, not listed): no header expected, its own address is not trusted
    const direct = await RawSmtp.connect({ host: '127.0.0.1', port: proxy.smtpPort });
    expect((await direct.read())[0]).toMatch(/^220 /);
    expect((await direct.cmd('EHLO direct.test'))[0]).toMatch(/^250/);
    expect((await direct.cmd(`MAIL FROM:<${ALICE}>`))[0]).toMatch(/^530 5\.7\.0 /);
    direct.close();
    const c = new TestClient({ port: proxy.smtpPort });
    await c.connect();
    expect((await c.login(ALICE, PW)).ok).toBe(true);
    c.close();
  });
});
