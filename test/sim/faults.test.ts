import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { simRefreshToken, startSimulator, type Simulator } from '../../src/sim/index.js';
import {
  accessToken,
  authedClient,
  ephemeral,
  getStats,
  message,
  postJson,
  type RawSmtp,
} from './helpers.js';

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
