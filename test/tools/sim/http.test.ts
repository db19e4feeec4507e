import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simRefreshToken, startSimulator, type Simulator } from '../../../src/tools/sim/index.js';
import { accessToken, authedClient, ephemeral, getStats, postJson } from './helpers.js';

describe('HTTP /stats and /control', () => {
  let sim: Simulator;
  let base: string;
  beforeAll(async () => {
    sim = await startSimulator(ephemeral);
    base = `http://${sim.http.host}:${sim.http.port}`;
  });
  afterAll(() => sim.close());

  it('reports the documented shape and /control/reset clears counters', async () => {
    const token = await accessToken(sim, simRefreshToken('stat@example.com'));
    const c = await authedClient(sim, 'stat@example.com', token);
    await c.cmd('MAIL FROM:<stat@example.com>');
    await c.cmd('RCPT TO:<r@example.com>');
    await c.cmd('DATA');
    await c.cmd('Message-ID: <s1@test>\r\n\r\nhi\r\n.');
    const stats = await getStats(sim);
    expect(stats).toMatchObject({
      messages: 1,
      perUser: { 'stat@example.com': 1 },
      messageIds: ['<s1@test>'],
      messageIdsCapped: false,
      tokenRequests: 1,
      tokenRequestsPerUser: { 'stat@example.com': 1 },
      authFailures: 0,
      connections: { open: 1, peakPerUser: { 'stat@example.com': 1 } },
      limitRejections: { connections: 0, rate: 0 },
    });
    expect(sim.stats()).toEqual(stats);
    const noIds = (await (await fetch(`${base}/stats?ids=0`)).json()) as any;
    expect(noIds.messageIds).toEqual([]);
    expect(noIds.messages).toBe(1);
    expect((await postJson(`${base}/control/reset`, {})).status).toBe(200);
    const after = await getStats(sim);
    expect(after).toMatchObject({ messages: 0, messageIds: [], perUser: {}, tokenRequests: 0 });
    expect(after.connections.open).toBe(1); // open connections are facts, not counters
    c.close();
  });

  it('answers 404 for unknown paths and 405 for wrong methods', async () => {
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    expect((await fetch(`${base}/token`)).status).toBe(405);
    expect((await fetch(`${base}/control/reset`)).status).toBe(405);
  });
});
