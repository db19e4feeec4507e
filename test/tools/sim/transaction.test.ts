import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simRefreshToken, startSimulator, type Simulator } from '../../../src/tools/sim/index.js';
import {
  accessToken,
  authedClient,
  ephemeral,
  getStats,
  message,
  nodemailerLogin,
  RawSmtp,
} from './helpers.js';

describe('mail transactions', () => {
  let sim: Simulator;
  let token: string;
  const user = 'sender@example.com';
  beforeAll(async () => {
    sim = await startSimulator({ ...ephemeral, maxConnectionsPerUser: 0 });
    token = await accessToken(sim, simRefreshToken(user));
  });
  afterAll(() => sim.close());

  it('answers a pipelined batch in order, in one write', async () => {
    sim.reset();
    const c = await authedClient(sim, user, token);
    c.chunks.length = 0;
    c.write(
      'MAIL FROM:<sender@example.com> SIZE=100 BODY=8BITMIME SMTPUTF8\r\n' +
        'RCPT TO:<ok1@example.com>\r\n' +
        'RCPT TO:<reject.me@example.com>\r\n' +
        'RCPT TO:<tempfail7@example.com>\r\n' +
        'RCPT TO:<ok2@example.com>\r\n' +
        'DATA\r\n',
    );
    const replies = await c.readN(6);
    expect(replies.map((r) => r[0]!.slice(0, 9))).toEqual([
      '250 2.1.0',
      '250 2.1.5',
      '550 5.1.1',
      '450 4.2.1',
      '250 2.1.5',
      '354 Go ah',
    ]);
    expect(replies[2]![0]).toMatch(/^550 5\.1\.1 The email account that you tried to reach does not exist/);
    expect(replies[3]![0]).toMatch(
      /^450 4\.2\.1 The user you are trying to contact is receiving mail too quickly/,
    );
    expect(c.chunks).toHaveLength(1);
    // Body and the next transaction pipelined behind the dot (RFC 2920) are both handled.
    c.write(
      message('<pipe-1@test>') + '.\r\nMAIL FROM:<sender@example.com>\r\nRCPT TO:<x@example.com>\r\nDATA\r\n',
    );
    const [stored, mail, rcpt, data] = await c.readN(4);
    expect(stored![0]).toMatch(/^250 2\.0\.0 OK \S+ - gsmtp$/);
    expect([mail![0]!.slice(0, 3), rcpt![0]!.slice(0, 3), data![0]!.slice(0, 3)]).toEqual([
      '250',
      '250',
      '354',
    ]);
    c.write(message('<pipe-2@test>') + '.\r\nQUIT\r\n');
    expect((await c.read())[0]).toMatch(/^250 2\.0\.0 OK/);
    expect((await c.read())[0]).toMatch(/^221 /);
    await c.closedPromise;
    const stats = await getStats(sim);
    expect(stats.messageIds).toEqual(['<pipe-1@test>', '<pipe-2@test>']);
    expect(stats.recipients).toEqual({ accepted: 3, rejected: 1, tempfailed: 1 });
  });

  it('refuses DATA without a valid recipient and DATA/RCPT without MAIL', async () => {
    const c = await authedClient(sim, user, token);
    expect((await c.cmd('RCPT TO:<a@example.com>'))[0]).toMatch(/^503 5\.5\.1/);
    expect((await c.cmd('DATA'))[0]).toMatch(/^503 5\.5\.1/);
    await c.cmd('MAIL FROM:<sender@example.com>');
    await c.cmd('RCPT TO:<reject@example.com>');
    expect(await c.cmd('DATA')).toEqual(['554 5.5.1 No valid recipients']);
    expect((await c.cmd('RSET'))[0]).toMatch(/^250 /);
    expect((await c.cmd('MAIL FROM:<sender@example.com> SIZE=99999999'))[0]).toMatch(/^552 5\.3\.4/);
    expect((await c.cmd('MAIL FROM:sender@example.com'))[0]).toMatch(/^555 5\.5\.2/);
    c.close();
  });

  it('finds the terminator and Message-ID across arbitrary chunk splits, with dot-stuffing', async () => {
    sim.reset();
    const c = await authedClient(sim, user, token);
    await c.cmd('MAIL FROM:<sender@example.com>');
    await c.cmd('RCPT TO:<r@example.com>');
    expect((await c.cmd('DATA'))[0]).toMatch(/^354 /);
    // A folded Message-ID, and body lines that look like the terminator once stuffed.
    const text =
      'Subject: split\r\nMessage-ID:\r\n <split-1@test>\r\nX-Other: y\r\n\r\n' +
      'line\r\n..\r\n.. not the end\r\n...\r\nlast\r\n.\r\n';
    for (const ch of text) {
      c.write(ch);
      await new Promise((r) => setImmediate(r));
    }
    expect((await c.read())[0]).toMatch(/^250 2\.0\.0 OK/);
    // An empty message: the dot right after the DATA line.
    await c.cmd('MAIL FROM:<sender@example.com>');
    await c.cmd('RCPT TO:<r@example.com>');
    await c.cmd('DATA');
    expect((await c.cmd('.'))[0]).toMatch(/^250 2\.0\.0 OK/);
    // No Message-ID header; the word in the body must not be taken for one.
    await c.cmd('MAIL FROM:<sender@example.com>');
    await c.cmd('RCPT TO:<r@example.com>');
    await c.cmd('DATA');
    c.write('Subject: none\r\n\r\nMessage-ID: <in-body@test>\r\n.\r\n');
    expect((await c.read())[0]).toMatch(/^250 /);
    const stats = await getStats(sim);
    expect(stats.messageIds).toEqual(['<split-1@test>']);
    expect(stats.messages).toBe(3);
    expect(stats.messagesWithoutId).toBe(2);
    expect(stats.perUser).toEqual({ [user]: 3 });
    c.close();
  });

  it('records exactly the ids a real client sent, in order (GET /stats)', async () => {
    sim.reset();
    const conn = await nodemailerLogin(
      { host: sim.smtp.host, port: sim.smtp.port, ignoreTLS: true },
      user,
      token,
    );
    const ids = Array.from({ length: 25 }, (_, i) => `<nm-${i}.${Date.now()}@test>`);
    for (const id of ids) {
      await new Promise<void>((resolve, reject) =>
        conn.send(
          { from: user, to: ['to@example.com'] },
          message(id, 'x'.repeat(3000) + '\r\n.leading dot\r\n'),
          (err) => (err ? reject(err) : resolve()),
        ),
      );
    }
    conn.quit();
    const stats = await getStats(sim);
    expect(stats.messageIds).toEqual(ids);
    expect(stats.messages).toBe(25);
    expect(stats.messageIdsCapped).toBe(false);
  });

  it('closes idle connections with 421 4.4.2', async () => {
    const quick = await startSimulator({ ...ephemeral, idleTimeoutMs: 200 });
    try {
      const c = await RawSmtp.connect(quick.smtp);
      await c.read();
      expect((await c.read())[0]).toMatch(/^421 4\.4\.2 /);
      await c.closedPromise;
    } finally {
      await quick.close();
    }
  });
});

describe('per-user rate limit', () => {
  it('answers MAIL FROM over messagesPerMinutePerUser with 451 4.7.0', async () => {
    const sim = await startSimulator({ ...ephemeral, messagesPerMinutePerUser: 3 });
    try {
      const token = await accessToken(sim, simRefreshToken('rate@example.com'));
      const c = await authedClient(sim, 'rate@example.com', token);
      for (let i = 0; i < 3; i++) {
        expect((await c.cmd('MAIL FROM:<rate@example.com>'))[0]).toMatch(/^250 /);
        await c.cmd('RCPT TO:<r@example.com>');
        await c.cmd('DATA');
        expect((await c.cmd(`Message-ID: <rate-${i}@test>\r\n\r\nx\r\n.`))[0]).toMatch(/^250 /);
      }
      expect((await c.cmd('MAIL FROM:<rate@example.com>'))[0]).toMatch(
        /^451 4\.7\.0 Temporary rate limit exceeded/,
      );
      // another user has a window of its own
      const other = await authedClient(
        sim,
        'free@example.com',
        await accessToken(sim, simRefreshToken('free@example.com')),
      );
      expect((await other.cmd('MAIL FROM:<free@example.com>'))[0]).toMatch(/^250 /);
      const stats = await getStats(sim);
      expect(stats.limitRejections.rate).toBe(1);
      expect(stats.perUser).toEqual({ 'rate@example.com': 3 });
      c.close();
      other.close();
    } finally {
      await sim.close();
    }
  });
});
