import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type SMTPConnection from 'nodemailer/lib/smtp-connection';
import { simRefreshToken, startSimulator, type Simulator } from '../../../src/tools/sim/index.js';
import {
  accessToken,
  authedClient,
  ephemeral,
  getStats,
  message,
  nodemailerLogin,
  RawSmtp,
  xoauth2,
} from './helpers.js';
import { sleep, until } from '../../helpers/wait.js';

const GOOGLE_535 = [
  '535-5.7.8 Username and Password not accepted. For more information, go to',
  expect.stringMatching(
    /^535 5\.7\.8 {2}https:\/\/support\.google\.com\/mail\/\?p=BadCredentials \S+ - gsmtp$/,
  ),
];

/** Send one message with nodemailer's SMTPConnection, authenticating with XOAUTH2. */
async function sendWithNodemailer(
  opts: ConstructorParameters<typeof SMTPConnection>[0],
  user: string,
  token: string,
  id: string,
): Promise<string> {
  const conn = await nodemailerLogin(opts, user, token);
  try {
    const info = await new Promise<any>((resolve, reject) =>
      conn.send({ from: user, to: ['rcpt@example.com'] }, message(id), (err, i) =>
        err ? reject(err) : resolve(i),
      ),
    );
    return info.response as string;
  } finally {
    conn.quit();
  }
}

describe.each(['google', 'microsoft'] as const)('%s style: valid tokens over TLS', (style) => {
  let sim: Simulator;
  beforeAll(async () => {
    sim = await startSimulator({
      ...ephemeral,
      smtpTls: { host: '127.0.0.1', port: 0 },
      style,
      requireTls: true,
    });
  });
  afterAll(() => sim.close());

  it('accepts a valid token after STARTTLS and stores the message', async () => {
    const token = await accessToken(sim, simRefreshToken('Alice@Example.com'));
    const response = await sendWithNodemailer(
      {
        host: sim.smtp.host,
        port: sim.smtp.port,
        requireTLS: true,
        tls: { ca: sim.caPem, servername: 'localhost' },
      },
      'alice@example.com', // case differs from the refresh token: emails compare case-insensitively
      token,
      `<starttls-${style}@test>`,
    );
    expect(response).toMatch(
      style === 'google' ? /^250 2\.0\.0 OK \S+ - gsmtp$/ : /^250 2\.0\.0 OK <starttls-microsoft@test>/,
    );
    expect((await getStats(sim)).messageIds).toContain(`<starttls-${style}@test>`);
  });

  it('accepts a valid token over implicit TLS, verified against caPem', async () => {
    const token = await accessToken(sim, simRefreshToken('bob@example.com'));
    const response = await sendWithNodemailer(
      { host: sim.smtpTls!.host, port: sim.smtpTls!.port, secure: true, tls: { ca: sim.caPem } },
      'bob@example.com',
      token,
      `<tls-${style}@test>`,
    );
    expect(response).toMatch(/^250 2\.0\.0 OK/);
    const stats = await getStats(sim);
    expect(stats.messageIds).toContain(`<tls-${style}@test>`);
    expect(stats.perUser['bob@example.com']).toBe(1);
  });

  it('does not offer or accept AUTH before STARTTLS when requireTls is set', async () => {
    const c = await RawSmtp.connect(sim.smtp);
    expect((await c.read())[0]).toMatch(/^220 /);
    const ehlo = await c.cmd('EHLO client.test');
    expect(ehlo).toContain('250-STARTTLS');
    expect(ehlo.some((l) => l.includes('AUTH'))).toBe(false);
    expect(await c.cmd('AUTH XOAUTH2 ' + xoauth2('x@example.com', 'simat.x'))).toEqual([
      '530 5.7.0 Must issue a STARTTLS command first.',
    ]);
    await c.starttls(sim.caPem);
    const ehlo2 = await c.cmd('EHLO client.test');
    expect(ehlo2).not.toContain('250-STARTTLS');
    expect(ehlo2).toContain(
      style === 'google'
        ? '250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH'
        : '250-AUTH LOGIN XOAUTH2',
    );
    c.close();
  });
});

describe('greeting and EHLO', () => {
  it.each(['google', 'microsoft'] as const)('%s advertises the extensions', async (style) => {
    const sim = await startSimulator({ ...ephemeral, style, hostname: 'sim.test' });
    try {
      const c = await RawSmtp.connect(sim.smtp);
      const greeting = (await c.read())[0];
      expect(greeting).toMatch(
        style === 'google'
          ? /^220 sim\.test ESMTP \S+ - gsmtp$/
          : /^220 sim\.test Microsoft ESMTP MAIL Service ready at /,
      );
      const ehlo = await c.cmd('EHLO client.test');
      expect(ehlo.slice(1)).toEqual([
        '250-SIZE 35882577',
        '250-8BITMIME',
        '250-STARTTLS',
        style === 'google'
          ? '250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH'
          : '250-AUTH LOGIN XOAUTH2',
        '250-ENHANCEDSTATUSCODES',
        '250-PIPELINING',
        '250-CHUNKING',
        '250 SMTPUTF8',
      ]);
      expect(await c.cmd('VRFY x')).toEqual([expect.stringMatching(/^502 5\.5\.1 /)]);
      expect(await c.cmd('NOOP')).toEqual([expect.stringMatching(/^250 2\.0\.0 OK/)]);
      expect(await c.cmd('QUIT')).toEqual([expect.stringMatching(/^221 2\.0\.0 /)]);
      await c.closedPromise;
    } finally {
      await sim.close();
    }
  });
});

describe('google style: rejected tokens', () => {
  let sim: Simulator;
  beforeAll(async () => {
    sim = await startSimulator({ ...ephemeral, tokenLifetimeSec: 1 });
  });
  afterAll(() => sim.close());

  /** The exact Gmail exchange: 334 + base64 JSON, the client's empty line, then 535 5.7.8. */
  async function expectGoogleRejection(user: string, token: string): Promise<void> {
    const c = await RawSmtp.connect(sim.smtp);
    await c.read();
    await c.cmd('EHLO client.test');
    const challenge = await c.cmd(`AUTH XOAUTH2 ${xoauth2(user, token)}`);
    expect(challenge).toHaveLength(1);
    expect(challenge[0]).toMatch(/^334 /);
    expect(JSON.parse(Buffer.from(challenge[0]!.slice(4), 'base64').toString())).toEqual({
      status: '400',
      schemes: 'Bearer',
      scope: 'https://mail.google.com/',
    });
    expect(await c.cmd('')).toEqual(GOOGLE_535);
    // still not authenticated
    expect(await c.cmd('MAIL FROM:<a@example.com>')).toEqual([
      expect.stringMatching(/^530 5\.7\.0 Authentication Required/),
    ]);
    c.close();
  }

  it('rejects an unknown token', async () => {
    await expectGoogleRejection('alice@example.com', 'simat.never-issued');
  });

  it("rejects another user's token", async () => {
    const token = await accessToken(sim, simRefreshToken('carol@example.com'));
    await expectGoogleRejection('dave@example.com', token);
    // the same token is fine for its own user
    (await authedClient(sim, 'carol@example.com', token)).close();
  });

  it('rejects a token after its lifetime', async () => {
    const token = await accessToken(sim, simRefreshToken('erin@example.com'));
    (await authedClient(sim, 'erin@example.com', token)).close();
    await sleep(1100);
    await expectGoogleRejection('erin@example.com', token);
  });

  it('rejects a token early when expireEarlySec is set, whatever expires_in said', async () => {
    sim.setFaults({ expireEarlySec: 0.2 });
    try {
      const token = await accessToken(sim, simRefreshToken('frank@example.com'));
      (await authedClient(sim, 'frank@example.com', token)).close();
      await sleep(300);
      await expectGoogleRejection('frank@example.com', token);
    } finally {
      sim.setFaults({ expireEarlySec: 0 });
    }
  });

  it('counts auth failures', async () => {
    sim.reset();
    await expectGoogleRejection('x@example.com', 'simat.bogus');
    expect((await getStats(sim)).authFailures).toBe(1);
  });

  it('runs XOAUTH2 without an initial response (334, then the client line)', async () => {
    const token = await accessToken(sim, simRefreshToken('gina@example.com'));
    const c = await RawSmtp.connect(sim.smtp);
    await c.read();
    await c.cmd('EHLO client.test');
    expect(await c.cmd('AUTH XOAUTH2')).toEqual(['334 ']);
    expect(await c.cmd(xoauth2('gina@example.com', token))).toEqual(['235 2.7.0 Accepted']);
    c.close();
  });

  it('accepts OAUTHBEARER and rejects a bad one with the JSON challenge', async () => {
    const token = await accessToken(sim, simRefreshToken('hal@example.com'));
    const bearer = (t: string) =>
      Buffer.from(`n,a=hal@example.com,\x01host=localhost\x01port=587\x01auth=Bearer ${t}\x01\x01`).toString(
        'base64',
      );
    const c = await RawSmtp.connect(sim.smtp);
    await c.read();
    await c.cmd('EHLO client.test');
    const challenge = await c.cmd(`AUTH OAUTHBEARER ${bearer('simat.bad')}`);
    expect(JSON.parse(Buffer.from(challenge[0]!.slice(4), 'base64').toString()).status).toBe('invalid_token');
    expect(await c.cmd('AQ==')).toEqual(GOOGLE_535);
    expect(await c.cmd(`AUTH OAUTHBEARER ${bearer(token)}`)).toEqual(['235 2.7.0 Accepted']);
    c.close();
  });

  it('fails password AUTH LOGIN the way Gmail does', async () => {
    const c = await RawSmtp.connect(sim.smtp);
    await c.read();
    await c.cmd('EHLO client.test');
    expect(await c.cmd('AUTH LOGIN')).toEqual(['334 VXNlcm5hbWU6']);
    expect(await c.cmd(Buffer.from('a@example.com').toString('base64'))).toEqual(['334 UGFzc3dvcmQ6']);
    expect(await c.cmd(Buffer.from('secret').toString('base64'))).toEqual(GOOGLE_535);
    c.close();
  });

  it('answers MAIL before AUTH with 530 5.7.0', async () => {
    const c = await RawSmtp.connect(sim.smtp);
    await c.read();
    await c.cmd('EHLO client.test');
    const r = await c.cmd('MAIL FROM:<a@example.com>');
    expect(r[0]).toMatch(/^530 5\.7\.0 Authentication Required/);
    c.close();
  });
});

describe('microsoft style: rejected tokens', () => {
  let sim: Simulator;
  beforeAll(async () => {
    sim = await startSimulator({ ...ephemeral, style: 'microsoft', tokenLifetimeSec: 1 });
  });
  afterAll(() => sim.close());

  async function expectMicrosoftRejection(user: string, token: string): Promise<void> {
    const c = await RawSmtp.connect(sim.smtp);
    await c.read();
    await c.cmd('EHLO client.test');
    expect(await c.cmd(`AUTH XOAUTH2 ${xoauth2(user, token)}`)).toEqual([
      expect.stringMatching(/^535 5\.7\.3 Authentication unsuccessful \[\S+\]$/),
    ]);
    c.close();
  }

  it('rejects an unknown token with 535 5.7.3', () =>
    expectMicrosoftRejection('a@example.com', 'simat.nope'));

  it("rejects another user's token", async () => {
    const token = await accessToken(sim, simRefreshToken('b@example.com'));
    await expectMicrosoftRejection('c@example.com', token);
  });

  it('rejects an expired token', async () => {
    const token = await accessToken(sim, simRefreshToken('d@example.com'));
    (await authedClient(sim, 'd@example.com', token)).close();
    await sleep(1100);
    await expectMicrosoftRejection('d@example.com', token);
  });

  it('uses a default of 3 connections per user', async () => {
    const token = await accessToken(sim, simRefreshToken('e@example.com'));
    const clients = [];
    for (let i = 0; i < 3; i++) clients.push(await authedClient(sim, 'e@example.com', token));
    const c = await RawSmtp.connect(sim.smtp);
    await c.read();
    await c.cmd('EHLO client.test');
    expect(await c.cmd(`AUTH XOAUTH2 ${xoauth2('e@example.com', token)}`)).toEqual([
      '432 4.3.2 Concurrent connections limit exceeded',
    ]);
    for (const x of [...clients, c]) x.close();
  });
});

describe('per-user connection limit', () => {
  it('answers AUTH over the limit with 432 4.3.2 and frees the slot when a connection closes', async () => {
    const sim = await startSimulator({ ...ephemeral, maxConnectionsPerUser: 2 });
    try {
      const token = await accessToken(sim, simRefreshToken('pat@example.com'));
      const a = await authedClient(sim, 'pat@example.com', token);
      const b = await authedClient(sim, 'pat@example.com', token);
      const c = await RawSmtp.connect(sim.smtp);
      await c.read();
      await c.cmd('EHLO client.test');
      const over = await c.cmd(`AUTH XOAUTH2 ${xoauth2('PAT@example.com', token)}`);
      expect(over).toEqual([expect.stringMatching(/^432 4\.3\.2 Concurrent connections limit exceeded/)]);
      // not authenticated after 432
      expect((await c.cmd('MAIL FROM:<pat@example.com>'))[0]).toMatch(/^530 /);
      // another user is not affected
      const other = await authedClient(
        sim,
        'quinn@example.com',
        await accessToken(sim, simRefreshToken('quinn@example.com')),
      );
      let stats = await getStats(sim);
      expect(stats.limitRejections.connections).toBe(1);
      expect(stats.connections.peakPerUser['pat@example.com']).toBe(2);
      a.close();
      await until(async () => (await getStats(sim)).connections.openPerUser['pat@example.com'] === 1);
      expect(await c.cmd(`AUTH XOAUTH2 ${xoauth2('pat@example.com', token)}`)).toEqual([
        '235 2.7.0 Accepted',
      ]);
      stats = await getStats(sim);
      expect(stats.connections.peakPerUser['pat@example.com']).toBe(2);
      for (const x of [b, c, other]) x.close();
    } finally {
      await sim.close();
    }
  });
});
