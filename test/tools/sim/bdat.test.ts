// BDAT (CHUNKING, RFC 3030) at the simulator: the chunks' octets are the message (no dot-stuffing,
// no terminator), refused chunks are still read to their end, and the faults hit BDAT LAST as they
// hit the end of DATA.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simRefreshToken, startSimulator, type Simulator } from '../../../src/tools/sim/index.js';
import { MAX_MESSAGE_SIZE } from '../../../src/tools/sim/types.js';
import { accessToken, authedClient, ephemeral, getStats, message, RawSmtp, xoauth2 } from './helpers.js';

const user = 'sender@example.com';
const envelope = (rcpt = 'ok@example.com') => `MAIL FROM:<${user}>\r\nRCPT TO:<${rcpt}>\r\n`;
const bdat = (body: string | Buffer, last = true) => {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  return Buffer.concat([Buffer.from(`BDAT ${b.length}${last ? ' LAST' : ''}\r\n`), b]);
};
const codes = (rs: string[][]) => rs.map((r) => r.at(-1)!.slice(0, 9));

describe('BDAT', () => {
  let sim: Simulator;
  let token: string;
  beforeAll(async () => {
    sim = await startSimulator({ ...ephemeral, maxConnectionsPerUser: 0 });
    token = await accessToken(sim, simRefreshToken(user));
  });
  afterAll(() => sim.close());

  it('advertises CHUNKING where smtp.gmail.com does, and not with chunking: false', async () => {
    const c = await RawSmtp.connect(sim.smtp);
    await c.read();
    const ehlo = await c.cmd('EHLO client.test');
    expect(ehlo.slice(-4)).toEqual([
      '250-ENHANCEDSTATUSCODES',
      '250-PIPELINING',
      '250-CHUNKING',
      '250 SMTPUTF8',
    ]);
    expect(ehlo).not.toContain('250-BINARYMIME');
    c.close();
    const off = await startSimulator({ ...ephemeral, chunking: false });
    try {
      const o = await RawSmtp.connect(off.smtp);
      await o.read();
      expect((await o.cmd('EHLO client.test')).join('\n')).not.toMatch(/CHUNKING/);
      expect(
        (await o.cmd(`AUTH XOAUTH2 ${xoauth2(user, await accessToken(off, simRefreshToken(user)))}`))[0],
      ).toMatch(/^235/);
      await o.cmd(`MAIL FROM:<${user}>`);
      await o.cmd('RCPT TO:<ok@example.com>');
      expect((await o.cmd('BDAT 0 LAST'))[0]).toMatch(/^502 5\.5\.1 Unrecognized command/);
      o.close();
    } finally {
      await off.close();
    }
  });

  it('stores the chunks of a pipelined transaction as sent: dot lines, bare LF, binary, exact size', async () => {
    sim.reset();
    const c = await authedClient(sim, user, token);
    c.chunks.length = 0;
    // a line that is just ".", a "." line start, the DATA terminator inside the message, a bare LF
    const part1 = message('<bdat-1@test>', '.\r\n..two\r\n\r\n.\r\n');
    const part2 = Buffer.from([0x00, 0xff, 0x0a, 0x2e, 0x0d, 0x0a]);
    c.write(
      Buffer.concat([Buffer.from(envelope()), bdat(part1, false), bdat(part2), Buffer.from('NOOP\r\n')]),
    );
    const rs = await c.readN(5);
    expect(codes(rs)).toEqual(['250 2.1.0', '250 2.1.5', '250 2.0.0', '250 2.0.0', '250 2.0.0']);
    expect(rs[2]![0]).toMatch(new RegExp(`^250 2\\.0\\.0 OK ${Buffer.byteLength(part1)} octets received`));
    expect(rs[3]![0]).toMatch(/^250 2\.0\.0 OK \S+ - gsmtp$/);
    expect(c.chunks).toHaveLength(1); // one write of replies for the pipelined batch
    // a 0-size LAST ends a chunked message; the next transaction works on the same connection
    c.write(Buffer.concat([Buffer.from(envelope()), bdat(message('<bdat-2@test>'), false), bdat('')]));
    expect(codes(await c.readN(4))).toEqual(['250 2.1.0', '250 2.1.5', '250 2.0.0', '250 2.0.0']);
    const stats = await getStats(sim);
    expect(stats.messageIds).toEqual(['<bdat-1@test>', '<bdat-2@test>']);
    expect(stats.messages).toBe(2);
    expect(stats.bytes).toBe(
      Buffer.byteLength(part1) + part2.length + Buffer.byteLength(message('<bdat-2@test>')),
    );
    c.close();
  });

  it('reads a refused chunk to its end: no MAIL (503), no valid recipient (554), not logged in (530)', async () => {
    sim.reset();
    const evil = 'RSET\r\nQUIT\r\n'; // would be commands if the chunk were not consumed
    const c = await authedClient(sim, user, token);
    c.write(Buffer.concat([bdat(evil), Buffer.from('NOOP\r\n')]));
    expect((await c.read())[0]).toBe('503 5.5.1 MAIL first.');
    expect((await c.read())[0]).toMatch(/^250 2\.0\.0 OK/); // NOOP, not RSET/QUIT
    c.write(
      Buffer.concat([
        Buffer.from(envelope('reject@example.com')),
        bdat(evil, false),
        bdat(evil),
        Buffer.from('NOOP\r\n'),
      ]),
    );
    const rs = await c.readN(5);
    expect(codes(rs)).toEqual(['250 2.1.0', '550 5.1.1', '554 5.5.1', '503 5.5.1', '250 2.0.0']);
    expect(rs[2]![0]).toBe('554 5.5.1 No valid recipients');
    // the failed chunk ended the transaction: a new MAIL is not nested
    expect((await c.cmd(`MAIL FROM:<${user}>`))[0]).toMatch(/^250 2\.1\.0/);
    c.close();
    const anon = await RawSmtp.connect(sim.smtp);
    await anon.read();
    await anon.cmd('EHLO client.test');
    anon.write(Buffer.concat([bdat(evil), Buffer.from('NOOP\r\n')]));
    expect((await anon.read())[0]).toMatch(/^530 5\.7\.0 Authentication Required/);
    expect((await anon.read())[0]).toMatch(/^250 2\.0\.0 OK/);
    anon.close();
    expect((await getStats(sim)).messages).toBe(0);
  });

  it('refuses DATA and RCPT after BDAT in one transaction (503, the transaction stands); RSET discards the chunks', async () => {
    sim.reset();
    const c = await authedClient(sim, user, token);
    c.write(
      Buffer.concat([
        Buffer.from(envelope()),
        bdat(message('<mixed@test>'), false),
        Buffer.from('DATA\r\nRCPT TO:<b@example.com>\r\n'),
      ]),
    );
    const rs = await c.readN(5);
    expect(codes(rs)).toEqual(['250 2.1.0', '250 2.1.5', '250 2.0.0', '503 5.5.1', '503 5.5.1']);
    expect(rs[3]![0]).toBe('503 5.5.1 DATA after BDAT.');
    // still the same transaction: LAST completes it
    c.write(bdat('more\r\n'));
    expect((await c.read())[0]).toMatch(/^250 2\.0\.0 OK \S+ - gsmtp$/);
    expect((await getStats(sim)).messageIds).toEqual(['<mixed@test>']);
    // RSET after a chunk: nothing stored, and BDAT needs a new MAIL
    c.write(
      Buffer.concat([
        Buffer.from(envelope()),
        bdat(message('<reset@test>'), false),
        Buffer.from('RSET\r\n'),
        bdat('x\r\n'),
      ]),
    );
    expect(codes(await c.readN(5))).toEqual([
      '250 2.1.0',
      '250 2.1.5',
      '250 2.0.0',
      '250 2.1.5',
      '503 5.5.1',
    ]);
    expect((await getStats(sim)).messageIds).toEqual(['<mixed@test>']);
    c.close();
  });

  it('refuses a chunk that takes the message over the size limit (552) and reads it all', async () => {
    const c = await authedClient(sim, user, token);
    c.write(envelope() + `BDAT ${MAX_MESSAGE_SIZE + 1} LAST\r\n`);
    expect(codes(await c.readN(2))).toEqual(['250 2.1.0', '250 2.1.5']);
    const mb = Buffer.alloc(1 << 20, 0x41);
    let left = MAX_MESSAGE_SIZE + 1;
    while (left > 0) {
      const n = Math.min(left, mb.length);
      c.write(n === mb.length ? mb : mb.subarray(0, n));
      left -= n;
    }
    c.write('NOOP\r\n');
    expect((await c.read())[0]).toMatch(/^552 5\.3\.4 Your message exceeded the message size limit/);
    expect((await c.read())[0]).toMatch(/^250 2\.0\.0 OK/);
    c.close();
  });

  it('closes on a BDAT without a size (the chunk end is unknown)', async () => {
    const c = await authedClient(sim, user, token);
    expect((await c.cmd('BDAT LAST'))[0]).toBe('501 5.5.4 Syntax error in BDAT parameters');
    await c.closedPromise;
  });

  it('applies the end-of-message faults to BDAT LAST only: 451, 550, latency, drop', async () => {
    const c = await authedClient(sim, user, token);
    try {
      sim.reset();
      sim.setFaults({ fail4xxRate: 1 });
      c.write(Buffer.concat([Buffer.from(envelope()), bdat(message('<f4@test>'), false), bdat('')]));
      expect(codes(await c.readN(4))).toEqual(['250 2.1.0', '250 2.1.5', '250 2.0.0', '451 4.3.0']);
      sim.setFaults({ fail4xxRate: 0, fail5xxRate: 1 });
      c.write(Buffer.concat([Buffer.from(envelope()), bdat(message('<f5@test>'))]));
      expect(codes(await c.readN(3))).toEqual(['250 2.1.0', '250 2.1.5', '550 5.7.1']);
      sim.setFaults({ fail5xxRate: 0, latencyMs: 150 });
      const t0 = performance.now();
      c.write(
        Buffer.concat([Buffer.from(envelope()), bdat(message('<slow@test>')), Buffer.from('NOOP\r\n')]),
      );
      expect(codes(await c.readN(4))).toEqual(['250 2.1.0', '250 2.1.5', '250 2.0.0', '250 2.0.0']);
      expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
      sim.setFaults({ latencyMs: 0, dropRate: 1 });
      c.write(Buffer.concat([Buffer.from(envelope()), bdat(message('<drop@test>'), false)]));
      expect(codes(await c.readN(3))).toEqual(['250 2.1.0', '250 2.1.5', '250 2.0.0']);
      c.write(bdat(''));
      await c.closedPromise;
      const stats = await getStats(sim);
      expect(stats.messageIds).toEqual(['<slow@test>']);
      expect(stats.faults).toMatchObject({ fail4xx: 1, fail5xx: 1, drops: 1 });
    } finally {
      sim.setFaults({ fail4xxRate: 0, fail5xxRate: 0, latencyMs: 0, dropRate: 0 });
      c.close();
    }
  });
});
