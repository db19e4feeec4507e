// The whole path over real sockets: client -> proxy process -> simulator process.
import { beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hashPassword } from '../../src/accounts/password.js';
import { simProvider, type ProxyProc, type SimProc } from '../helpers/procs.js';
import { simAccount } from '../helpers/sim-accounts.js';
import { TestClient, makeMessage } from '../helpers/smtp-client.js';
import { useProcs } from '../helpers/use-procs.js';
import { sleep } from '../helpers/wait.js';
import { rawInData } from '../tools/sim/helpers.js';

const PW = 'correct horse battery staple';
const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';

describe('relay, google style, STARTTLS upstream', () => {
  const procs = useProcs('all');
  let sim: SimProc;
  let proxy: ProxyProc;
  let cert: { cert: string; key: string };

  beforeAll(async () => {
    sim = await procs.sim(['--style', 'google']);
    const sscert = await (
      await import('selfsigned')
    ).generate([{ name: 'commonName', value: 'localhost' }], { keySize: 2048 } as any);
    cert = { cert: sscert.cert, key: sscert.private };
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-basic-'));
    fs.writeFileSync(path.join(dir, 'cert.pem'), cert.cert);
    fs.writeFileSync(path.join(dir, 'key.pem'), cert.key);
    const hash = await hashPassword(PW);
    proxy = await procs.proxy(
      {
        smtp: {
          tls: { cert: './cert.pem', key: './key.pem' },
          trustedNetworks: ['127.0.0.2/32'],
          maxRecipients: 5,
          maxMessageSize: 20000,
        },
        providers: {
          sim: simProvider(sim, {
            smtp: { host: '127.0.0.1', port: sim.smtpPort, security: 'starttls', ca: sim.caFile },
          }),
        },
        accounts: [simAccount(ALICE, { passwordHash: hash }), simAccount(BOB, { passwordHash: hash })],
      },
      { dir },
    );
  });

  async function client(opts: { starttls?: boolean; localAddress?: string } = {}) {
    const c = new TestClient({
      port: proxy.smtpPort,
      starttls: opts.starttls,
      ca: cert.cert,
      localAddress: opts.localAddress,
    });
    await c.connect();
    return c;
  }

  it('delivers with AUTH PLAIN and LOGIN; 250 carries the upstream reply; the upstream has the message', async () => {
    for (const method of ['PLAIN', 'LOGIN'] as const) {
      const c = await client();
      expect((await c.login(ALICE, PW, method)).ok).toBe(true);
      const m = makeMessage(ALICE, 'someone@example.net');
      const r = await c.send(ALICE, 'someone@example.net', m.raw);
      expect(r).toMatchObject({ ok: true, code: 250 });
      expect(r.response).toMatch(/^250 2\.0\.0 upstream: /);
      c.close();
      expect((await sim.stats()).messageIds).toContain(m.id);
    }
  });

  it('delivers over a STARTTLS client connection', async () => {
    const c = await client({ starttls: true });
    expect((await c.login(BOB, PW)).ok).toBe(true);
    const m = makeMessage(BOB, 'x@example.net');
    expect((await c.send(BOB, 'x@example.net', m.raw)).ok).toBe(true);
    c.close();
    expect((await sim.stats()).perUser[BOB]).toBeGreaterThan(0);
  });

  it('gives unknown mailbox and wrong password the same reply', async () => {
    const a = await client();
    const wrong = await a.login(ALICE, 'wrong password');
    a.close();
    const b = await client();
    const unknown = await b.login('nobody@example.com', PW);
    b.close();
    expect(wrong.ok).toBe(false);
    expect(wrong.response).toBe('535 5.7.8 Authentication credentials invalid');
    expect(unknown.response).toBe(wrong.response);
  });

  it('answers MAIL before AUTH with 530 5.7.0', async () => {
    const c = await client();
    const r = await c.send(ALICE, 'x@example.net', makeMessage(ALICE, 'x@example.net').raw);
    c.close();
    expect(r.code).toBe(530);
    expect(r.response).toMatch(/^530 5\.7\.0 /);
  });

  it('lets trustedNetworks send without AUTH, as the mailbox of MAIL FROM', async () => {
    const c = await client({ localAddress: '127.0.0.2' });
    const m = makeMessage(ALICE, 'y@example.net');
    const r = await c.send(ALICE, 'y@example.net', m.raw);
    expect(r.ok).toBe(true);
    const stranger = await c.send(
      'stranger@example.org',
      'y@example.net',
      makeMessage('stranger@example.org', 'y@example.net').raw,
    );
    c.close();
    expect(stranger.ok).toBe(false);
    expect(stranger.code).toBe(550);
    expect((await sim.stats()).messageIds).toContain(m.id);
  });

  it('passes upstream 4xx and 5xx through, and delivers nothing when one recipient of three is refused', async () => {
    const c = await client();
    await c.login(ALICE, PW);
    const perm = await c.send(
      ALICE,
      'reject-me@example.net',
      makeMessage(ALICE, 'reject-me@example.net').raw,
    );
    expect(perm.code).toBe(550);
    expect(perm.response).toMatch(/^550 5\.1\.1 upstream: /);
    const temp = await c.send(ALICE, 'tempfail@example.net', makeMessage(ALICE, 'tempfail@example.net').raw);
    expect(temp.code).toBe(450);
    expect(temp.response).toMatch(/^450 4\.2\.1 upstream: /);
    const before = (await sim.stats()).messages;
    const m = makeMessage(ALICE, 'a@example.net');
    const mixed = await c.send(ALICE, ['a@example.net', 'reject-x@example.net', 'c@example.net'], m.raw);
    c.close();
    expect(mixed.ok).toBe(false);
    expect(mixed.response).toMatch(/reject-x@example\.net/);
    const after = await sim.stats();
    expect(after.messages).toBe(before);
    expect(after.messageIds).not.toContain(m.id);
  });

  it('enforces SIZE (552 5.3.4) and maxRecipients (452 4.5.3)', async () => {
    const c = await client();
    await c.login(ALICE, PW);
    const big = await c.send(
      ALICE,
      'x@example.net',
      makeMessage(ALICE, 'x@example.net', { body: 'x'.repeat(30000) + '\r\n' }).raw,
    );
    expect(big.code).toBe(552);
    expect(big.response).toMatch(/5\.3\.4/);
    const rcpts = Array.from({ length: 6 }, (_, i) => `r${i}@example.net`);
    const many = await c.send(ALICE, rcpts, makeMessage(ALICE, 'r0@example.net').raw);
    c.close();
    expect(many.ok).toBe(false);
    expect(many.response).toMatch(/452 4\.5\.3/);
  });

  it('a client that disconnects in the middle of its body: nothing reaches the upstream, the proxy carries on', async () => {
    const id = `<cut-${Date.now()}@test>`;
    const raw = await rawInData(proxy.smtpPort, ALICE, PW, 'cut@example.net');
    raw.write(`From: ${ALICE}\r\nMessage-ID: ${id}\r\n\r\nthe first half of a body`);
    await sleep(200);
    raw.close();
    await sleep(300);
    expect((await sim.stats()).messageIds).not.toContain(id);
    const c = await client();
    await c.login(ALICE, PW);
    const m = makeMessage(ALICE, 'after-cut@example.net');
    expect((await c.send(ALICE, 'after-cut@example.net', m.raw)).ok).toBe(true);
    c.close();
    expect((await sim.stats()).messageIds).toContain(m.id);
  });

  it('serves /metrics with message counters', async () => {
    const text = await (await proxy.http('/metrics')).text();
    expect(text).toMatch(/xoauth2_proxy_messages_total\{provider="sim",result="delivered"\} [1-9]/);
    expect(text).toMatch(/xoauth2_proxy_auth_attempts_total\{result="failure"\} [1-9]/);
  });
});

describe('relay, microsoft style, implicit TLS upstream', () => {
  const procs = useProcs('all');
  let sim: SimProc;
  let proxy: ProxyProc;
  beforeAll(async () => {
    sim = await procs.sim(['--style', 'microsoft'], true);
    proxy = await procs.proxy({
      providers: {
        sim: simProvider(sim, {
          smtp: { host: '127.0.0.1', port: sim.smtpTlsPort, security: 'tls', ca: sim.caFile },
        }),
      },
      accounts: [simAccount(ALICE, { password: PW })],
    });
  });

  it('delivers', async () => {
    const c = new TestClient({ port: proxy.smtpPort });
    await c.connect();
    expect((await c.login(ALICE, PW, 'LOGIN')).ok).toBe(true);
    const m = makeMessage(ALICE, 'z@example.net');
    expect((await c.send(ALICE, 'z@example.net', m.raw)).ok).toBe(true);
    c.close();
    expect((await sim.stats()).messageIds).toContain(m.id);
  });
});
