// The upstream client with BDAT (CHUNKING, RFC 3030) over real sockets: one write for envelope and
// body, the verdicts exactly as the DATA path gives them, the octets exactly as DATA delivers them,
// and DATA whenever CHUNKING (with PIPELINING) is not offered or smtp.chunking is false.
import { afterEach, describe, expect, it } from 'vitest';
import { reply } from '../../src/shared/smtp-reply.js';
import { startSimulator, simRefreshToken } from '../../src/tools/sim/index.js';
import type { Envelope, UpstreamAccount } from '../../src/upstream/types.js';
import { expectSmtpError } from '../helpers/expect-rejection.js';
import type { FakeSmtpOptions } from '../helpers/fake-smtp-server.js';
import { accessToken, ephemeral, getStats } from '../tools/sim/helpers.js';
import { FakeTokens, USER, account, env, fakeWithPools, makePools, msg } from './helpers.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const CHUNKING = ['PIPELINING', 'SIZE 10485760', '8BITMIME', 'SMTPUTF8', 'CHUNKING', 'AUTH PLAIN XOAUTH2'];
const setup = (opts: FakeSmtpOptions = {}, over: Partial<UpstreamAccount> = {}) =>
  fakeWithPools(cleanup, { caps: CHUNKING, ...opts }, over);
const noChunking = (port: number): Partial<UpstreamAccount> => ({
  smtp: { host: '127.0.0.1', port, security: 'none', rejectUnauthorized: true, chunking: false },
});
/** the commands after AUTH of every connection */
const txCommands = (commands: string[]) => commands.filter((c) => !/^(EHLO|AUTH|QUIT)/.test(c));

// dot lines of every kind, the DATA terminator inside the message, 8-bit bytes, no final CRLF
const TRICKY = Buffer.concat([
  Buffer.from('Subject: dots\r\nMessage-ID: <tricky@test>\r\n\r\n.\r\n..two\r\n.three\r\n\r\n.\r\nend '),
  Buffer.from([0xc3, 0xa9, 0x00, 0xff, 0x80]),
  Buffer.from('\r\nno final newline'),
]);

describe('BDAT upstream', () => {
  it('sends MAIL, RCPT, BDAT LAST and the body in one write and delivers on the 250 to BDAT', async () => {
    const { fake, pools } = await setup();
    const body = 'Subject: hi\r\n\r\nhello\r\n';
    const r = await pools.deliver(USER, { ...env(), smtputf8: true, body8bit: true }, msg(body));
    expect(r).toEqual({ kind: 'delivered', reply: reply(250, '2.0.0', 'OK queued as 123') });
    const conn = fake.conns[0]!;
    expect(txCommands(conn.commands)).toEqual([
      `MAIL FROM:<${USER}> SIZE=100 BODY=8BITMIME SMTPUTF8`,
      'RCPT TO:<bob@example.net>',
      `BDAT ${body.length} LAST`,
    ]);
    // one chunk at the server carried the whole transaction, the body at its end
    const tx = conn.chunks.find((c) => c.includes('MAIL FROM'))!;
    expect(tx.toString('latin1')).toBe(
      `MAIL FROM:<${USER}> SIZE=100 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<bob@example.net>\r\nBDAT ${body.length} LAST\r\n${body}`,
    );
    expect(conn.batches.at(-1)).toEqual(['MAIL', 'RCPT', 'BDAT']);
    expect(fake.accepted.map((m) => m.data.toString())).toEqual([body]);
    // the connection stays in step: the next message on it
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    expect(fake.conns).toHaveLength(1);
  });

  it('delivers the octets DATA delivers: dot lines intact (no stuffing), 8-bit, a final CRLF added; the size counts them', async () => {
    const { fake, pools } = await setup();
    // the message in uneven slices, one ending in "\r" before the "\n"
    const parts = [
      TRICKY.subarray(0, 17),
      TRICKY.subarray(17, 18),
      TRICKY.subarray(18, 60),
      TRICKY.subarray(60),
    ];
    expect((await pools.deliver(USER, env(), parts)).kind).toBe('delivered');
    const expected = Buffer.concat([TRICKY, Buffer.from('\r\n')]);
    expect(fake.accepted[0]!.data.equals(expected)).toBe(true);
    expect(fake.commands()).toContain(`BDAT ${expected.length} LAST`);
    // the same message over DATA (the fake un-stuffs) arrives byte for byte the same
    const data = await fakeWithPools(cleanup, { caps: CHUNKING });
    data.pools.setAccounts([account(data.fake.port, noChunking(data.fake.port))]);
    expect((await data.pools.deliver(USER, env(), parts)).kind).toBe('delivered');
    expect(data.fake.commands()).toContain('DATA');
    expect(data.fake.accepted[0]!.data.equals(expected)).toBe(true);
    // an empty message: BDAT 0 LAST, as DATA's lone "."
    expect((await pools.deliver(USER, env(), [Buffer.alloc(0)])).kind).toBe('delivered');
    expect(fake.commands().at(-1)).toBe('BDAT 0 LAST');
    expect(fake.accepted[1]!.data.length).toBe(0);
  });

  it('one recipient refused: rejected with its reply and nothing delivered (the BDAT got 554), RSET, connection kept', async () => {
    const { fake, pools } = await setup({
      onCommand: (l) => (l.includes('<nobody@') ? '550 5.1.1 No such user' : undefined),
    });
    const r = await pools.deliver(USER, env(['nobody@example.net']), msg());
    const refusal = reply(550, '5.1.1', 'No such user');
    expect(r).toEqual({
      kind: 'rejected',
      reply: refusal,
      failedRecipients: [{ rcpt: 'nobody@example.net', reply: refusal }],
    });
    expect(fake.received).toHaveLength(0);
    expect(txCommands(fake.commands()).slice(-2)).toEqual([`BDAT ${msg()[0]!.length} LAST`, 'RSET']);
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    expect(fake.conns).toHaveLength(1);
  });

  it('MAIL refused: rejected with the MAIL reply, nothing delivered', async () => {
    const { fake, pools } = await setup({
      onCommand: (l) =>
        l.startsWith('MAIL')
          ? '553 5.7.1 Sender not allowed'
          : l.startsWith('RCPT')
            ? '503 5.5.1 MAIL first'
            : undefined,
    });
    const r = await pools.deliver(USER, env(), msg());
    expect(r).toEqual({
      kind: 'rejected',
      reply: reply(553, '5.7.1', 'Sender not allowed'),
      failedRecipients: [],
    });
    expect(fake.received).toHaveLength(0);
  });

  it('several recipients: the body only after every RCPT was accepted; a partial refusal sends no body', async () => {
    const { fake, pools } = await setup({
      onCommand: (l) => (l.includes('<bad@') ? '450 4.2.1 Try later' : undefined),
    });
    const to = ['a@example.net', 'b@example.net'];
    expect((await pools.deliver(USER, env(to), msg())).kind).toBe('delivered');
    const conn = fake.conns[0]!;
    expect(conn.batches.slice(-2)).toEqual([['MAIL', 'RCPT', 'RCPT'], ['BDAT']]);
    expect(fake.accepted[0]!.to).toEqual(to);
    const r = await pools.deliver(USER, env(['a@example.net', 'bad@example.net']), msg());
    const refusal = reply(450, '4.2.1', 'Try later');
    expect(r).toEqual({
      kind: 'rejected',
      reply: { ...refusal, text: '<bad@example.net> Try later' },
      failedRecipients: [{ rcpt: 'bad@example.net', reply: refusal }],
    });
    expect(fake.received).toHaveLength(1);
    expect(txCommands(conn.commands).slice(-4)).toEqual([
      `MAIL FROM:<${USER}> SIZE=100`,
      'RCPT TO:<a@example.net>',
      'RCPT TO:<bad@example.net>',
      'RSET',
    ]);
  });

  it('a 4xx or 5xx to BDAT LAST is the verdict (RSET after it); 421 spoils the connection', async () => {
    const verdicts = ['451 4.3.0 Try again later', '554 5.7.1 Message rejected', '421 4.7.0 Closing'];
    let k = 0;
    const { fake, pools } = await setup({ onMessage: () => verdicts[k++] });
    const r1 = await pools.deliver(USER, env(), msg());
    expect(r1).toEqual({
      kind: 'rejected',
      reply: reply(451, '4.3.0', 'Try again later'),
      failedRecipients: [],
    });
    const r2 = await pools.deliver(USER, env(), msg());
    expect(r2).toEqual({
      kind: 'rejected',
      reply: reply(554, '5.7.1', 'Message rejected'),
      failedRecipients: [],
    });
    expect(fake.conns).toHaveLength(1);
    expect(txCommands(fake.commands()).filter((c) => c === 'RSET')).toHaveLength(2);
    const r3 = await pools.deliver(USER, env(), msg());
    expect(r3.reply.code).toBe(421);
    expect(fake.accepted).toHaveLength(0);
    expect((await pools.deliver(USER, env(), msg())).kind).toBe('delivered');
    expect(fake.conns).toHaveLength(2);
  });

  it('a connection dropped before the reply to BDAT: retried once when reused, else 451 4.4.2; never delivered', async () => {
    let n = 0;
    const { fake, pools } = await setup({ onMessage: () => (n++ === 1 ? 'drop' : undefined) });
    expect((await pools.deliver(USER, env(), msg('Subject: one\r\n\r\n1\r\n'))).kind).toBe('delivered');
    expect((await pools.deliver(USER, env(), msg('Subject: two\r\n\r\n2\r\n'))).kind).toBe('delivered');
    expect(fake.conns).toHaveLength(2);
    expect(fake.received).toHaveLength(3);
    expect(fake.accepted.map((m) => m.data.toString())).toEqual([
      'Subject: one\r\n\r\n1\r\n',
      'Subject: two\r\n\r\n2\r\n',
    ]);
    const fresh = await setup({ onMessage: () => 'drop' });
    const err = await expectSmtpError(fresh.pools.deliver(USER, env(), msg()));
    expect(err.code).toBe('UPSTREAM_CONNECTION_LOST');
    expect(err.reply.code).toBe(451);
    expect(fresh.fake.received).toHaveLength(1);
    expect(fresh.fake.conns).toHaveLength(1);
  });

  it('uses DATA when smtp.chunking is false, when CHUNKING is not offered, or offered without PIPELINING', async () => {
    const cases: [string[], boolean][] = [
      [CHUNKING, false],
      [['PIPELINING', 'SIZE 10485760', 'AUTH PLAIN XOAUTH2'], true],
      [['CHUNKING', 'SIZE 10485760', 'AUTH PLAIN XOAUTH2'], true],
    ];
    for (const [caps, chunking] of cases) {
      const { fake, pools } = await fakeWithPools(cleanup, { caps });
      if (!chunking) pools.setAccounts([account(fake.port, noChunking(fake.port))]);
      const body = 'Subject: x\r\n\r\n.dot\r\n';
      expect((await pools.deliver(USER, env(), msg(body))).kind).toBe('delivered');
      expect(fake.commands()).toContain('DATA');
      expect(fake.commands().some((c) => c.startsWith('BDAT'))).toBe(false);
      expect(fake.accepted[0]!.data.toString()).toBe(body);
    }
  });
});

describe('BDAT upstream against the simulator', () => {
  async function simAndPools(opts: Parameters<typeof startSimulator>[0] = {}, chunking = true) {
    const sim = await startSimulator({ ...ephemeral, ...opts });
    const token = await accessToken(sim, simRefreshToken(USER));
    const pools = makePools(new FakeTokens([token]));
    const smtp = {
      host: sim.smtp.host,
      port: sim.smtp.port,
      security: 'none' as const,
      rejectUnauthorized: true,
      chunking,
    };
    pools.setAccounts([account(sim.smtp.port, { smtp })]);
    cleanup.push(
      () => sim.close(),
      () => pools.close(1000),
    );
    return { sim, pools };
  }
  const e: Envelope = { from: USER, to: ['bob@example.net'], size: TRICKY.length };

  it('stores the message with its exact octets (BDAT) where DATA stores the stuffed ones', async () => {
    const bdat = await simAndPools();
    const data = await simAndPools({}, false);
    for (const { pools } of [bdat, data])
      expect((await pools.deliver(USER, e, [TRICKY])).kind).toBe('delivered');
    const [sb, sd] = [await getStats(bdat.sim), await getStats(data.sim)];
    expect(sb.messageIds).toEqual(['<tricky@test>']);
    expect(sd.messageIds).toEqual(['<tricky@test>']);
    expect(sb.bytes).toBe(TRICKY.length + 2); // + the final CRLF
    expect(sd.bytes).toBe(TRICKY.length + 2 + 4); // + four stuffed dots
  });

  it('the simulator faults on BDAT LAST reach the client as they do with DATA', async () => {
    const { sim, pools } = await simAndPools();
    sim.setFaults({ fail4xxRate: 1 });
    const r = await pools.deliver(USER, e, [TRICKY]);
    expect(r.kind).toBe('rejected');
    expect(r.reply).toMatchObject({ code: 451, enhanced: '4.3.0' });
    sim.setFaults({ fail4xxRate: 0, dropRate: 1 });
    const err = await expectSmtpError(pools.deliver(USER, e, [TRICKY]));
    // reused connection: retried once on a fresh one, which the fault drops too
    expect(err.code).toBe('UPSTREAM_CONNECTION_LOST');
    sim.setFaults({ dropRate: 0 });
    expect((await pools.deliver(USER, e, [TRICKY])).kind).toBe('delivered');
    const stats = await getStats(sim);
    expect(stats.messages).toBe(1);
    expect(stats.faults).toMatchObject({ fail4xx: 1, drops: 2 });
  });
});
