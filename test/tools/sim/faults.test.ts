import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { simRefreshToken, startSimulator, type Simulator } from '../../../src/tools/sim/index.js';
import {
  accessToken,
  authedClient,
  ephemeral,
  getStats,
  message,
  postJson,
  type RawSmtp,
} from './helpers.js';
import { sleep } from '../../helpers/wait.js';

describe('faults', () => {
  let sim: Simulator;
  let token: string;
  const user = 'faulty@example.com';
  beforeAll(async () => {
    sim = await startSimulator({ ...ephemeral, maxConnectionsPerUser: 0 });
    token = await accessToken(sim, simRefreshToken(user));
  });
  afterAll(() => sim.close());
  beforeEach(() => {
    sim.setFaults({ latencyMs: 0, fail4xxRate: 0, fail5xxRate: 0, dropRate: 0 });
    sim.reset();
  });

  async function send(c: RawSmtp, id: string): Promise<void> {
    c.write(`MAIL FROM:<${user}>\r\nRCPT TO:<to@example.com>\r\nDATA\r\n`);
    const replies = await c.readN(3);
    expect(replies[2]![0]).toMatch(/^354 /);
    c.write(message(id) + '.\r\n');
  }

  it('fail4xxRate=1: 451 4.3.0 at end of DATA, nothing stored, session usable', async () => {
    sim.setFaults({ fail4xxRate: 1 });
    const c = await authedClient(sim, user, token);
    await send(c, '<f4@test>');
    expect((await c.read())[0]).toMatch(/^451 4\.3\.0 /);
    sim.setFaults({ fail4xxRate: 0 });
    await send(c, '<ok-after-4xx@test>');
    expect((await c.read())[0]).toMatch(/^250 2\.0\.0 /);
    const stats = await getStats(sim);
    expect(stats.messageIds).toEqual(['<ok-after-4xx@test>']);
    expect(stats.faults.fail4xx).toBe(1);
    c.close();
  });

  it('fail5xxRate=1: 550 5.7.1 at end of DATA, nothing stored', async () => {
    sim.setFaults({ fail5xxRate: 1 });
    const c = await authedClient(sim, user, token);
    await send(c, '<f5@test>');
    expect((await c.read())[0]).toMatch(/^550 5\.7\.1 /);
    expect((await getStats(sim)).messages).toBe(0);
    c.close();
  });

  it('dropRate=1: the socket closes after the terminator with no reply, id not stored', async () => {
    sim.setFaults({ dropRate: 1 });
    const c = await authedClient(sim, user, token);
    await send(c, '<dropped@test>');
    c.chunks.length = 0;
    await c.closedPromise;
    expect(c.chunks).toEqual([]);
    const stats = await getStats(sim);
    expect(stats.messageIds).not.toContain('<dropped@test>');
    expect(stats.messages).toBe(0);
    expect(stats.faults.drops).toBe(1);
  });

  it('latencyMs delays the final reply to DATA only, and input pipelined meanwhile is answered after it', async () => {
    sim.setFaults({ latencyMs: 300 });
    const c = await authedClient(sim, user, token);
    let t0 = Date.now();
    await send(c, '<slow@test>');
    expect(Date.now() - t0).toBeLessThan(250); // MAIL/RCPT/DATA are not delayed
    t0 = Date.now();
    c.write('NOOP\r\n');
    const stored = await c.read();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(stored[0]).toMatch(/^250 2\.0\.0 OK/);
    expect((await c.read())[0]).toMatch(/^250 2\.0\.0 OK/); // the NOOP, after the delayed reply
    expect((await getStats(sim)).messageIds).toEqual(['<slow@test>']);
    c.close();
  });

  it('is switched through POST /control/faults, which validates fields', async () => {
    const base = `http://${sim.http.host}:${sim.http.port}`;
    const ok = await postJson(`${base}/control/faults`, { fail5xxRate: 1 });
    expect(ok.status).toBe(200);
    expect(ok.body.fail5xxRate).toBe(1);
    const c = await authedClient(sim, user, token);
    await send(c, '<ctl@test>');
    expect((await c.read())[0]).toMatch(/^550 5\.7\.1 /);
    c.close();
    const bad = await postJson(`${base}/control/faults`, { dropRate: 2 });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/^dropRate: /);
    const unknown = await postJson(`${base}/control/faults`, { explode: 1 });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error).toMatch(/unknown fault "explode"/);
    expect(() => sim.setFaults({ latencyMs: -1 })).toThrow(/latencyMs/);
  });

  it('applies rates as probabilities', async () => {
    sim.setFaults({ fail4xxRate: 0.5 });
    const c = await authedClient(sim, user, token);
    let failed = 0;
    for (let i = 0; i < 200; i++) {
      await send(c, `<p${i}@test>`);
      if ((await c.read())[0]!.startsWith('451')) failed++;
    }
    expect(failed).toBeGreaterThan(60);
    expect(failed).toBeLessThan(140);
    expect((await getStats(sim)).messages).toBe(200 - failed);
    c.close();
  });
});

describe('counted faults', () => {
  let sim: Simulator;
  let token: string;
  const user = 'counted@example.com';
  beforeAll(async () => {
    sim = await startSimulator({ ...ephemeral, maxConnectionsPerUser: 0 });
    token = await accessToken(sim, simRefreshToken(user));
  });
  afterAll(() => sim.close());
  beforeEach(() => {
    sim.setFaults({ dropEvery: 0, reject421Next: 0 });
    sim.reset();
  });

  /** one pipelined transaction on a fresh connection: the replies it got, and whether it closed */
  async function transaction(id: string): Promise<{ replies: string[]; closed: boolean }> {
    const c = await authedClient(sim, user, token);
    c.write(`MAIL FROM:<${user}>\r\nRCPT TO:<to@example.com>\r\nDATA\r\n`);
    const replies: string[] = [];
    let closed = false;
    c.closedPromise.then(() => (closed = true));
    const next = () => c.read().catch(() => undefined); // undefined: the connection closed
    for (let i = 0; i < 3 && !closed; i++) {
      const r = await next();
      if (!r) break;
      replies.push(r[0]!);
    }
    if (!closed && replies[2]?.startsWith('354')) {
      c.write(message(id) + '.\r\n');
      const r = await next();
      if (r) replies.push(r[0]!);
    }
    await Promise.race([c.closedPromise, sleep(200)]);
    c.close();
    return { replies, closed };
  }

  it('dropEvery=2 cuts every second transaction before its final reply, cycling MAIL, RCPT, DATA', async () => {
    sim.setFaults({ dropEvery: 2 });
    const runs = [];
    for (let i = 0; i < 6; i++) runs.push(await transaction(`<de${i}@test>`));
    // 1st, 3rd, 5th complete; 2nd dies at MAIL, 4th at RCPT (after MAIL's 250), 6th after the terminator
    for (const i of [0, 2, 4]) expect(runs[i]!.replies.at(-1)).toMatch(/^250 2\.0\.0 /);
    expect(runs[1]!.replies).toEqual([]);
    expect(runs[3]!.replies.length).toBe(1);
    expect(runs[3]!.replies[0]).toMatch(/^250 2\.1\.0/);
    expect(runs[5]!.replies.map((r) => r.slice(0, 3))).toEqual(['250', '250', '354']);
    for (const i of [1, 3, 5]) expect(runs[i]!.closed).toBe(true);
    const stats = await getStats(sim);
    expect(stats.messageIds).toEqual(['<de0@test>', '<de2@test>', '<de4@test>']);
    expect(stats.faults.drops).toBe(3);
  });

  it('reject421Next=2 answers the next two MAILs with 421 4.7.0 and closes, then works again', async () => {
    sim.setFaults({ reject421Next: 2 });
    const a = await transaction('<r1@test>');
    const b = await transaction('<r2@test>');
    const c = await transaction('<r3@test>');
    for (const r of [a, b]) {
      expect(r.replies[0]).toMatch(/^421 4\.7\.0 Try again later, closing connection/);
      expect(r.closed).toBe(true);
    }
    expect(c.replies.at(-1)).toMatch(/^250 2\.0\.0 /);
    expect(sim.faults().reject421Next).toBe(0);
    const stats = await getStats(sim);
    expect(stats.messageIds).toEqual(['<r3@test>']);
    expect(stats.faults.rejected421).toBe(2);
    expect(() => sim.setFaults({ dropEvery: 1.5 })).toThrow(/dropEvery: must be a whole number/);
  });
});
