// Two proxy processes sharing one Redis (state.redis) in front of a Microsoft-style simulator that
// allows 2 connections per user and rotates refresh tokens: the limit holds across the two and each
// mailbox's token is refreshed once (without state.redis: 432 from the simulator, 451 to clients).
import { afterAll, describe, expect, it } from 'vitest';
import {
  NO_REDIS_MESSAGE,
  REDIS_SERVER,
  startRedis,
  type RedisServer,
} from '../coordination/redis-server.js';
import { simProvider, type ProxyProc } from '../helpers/procs.js';
import { TEST_PASSWORD, simAccounts } from '../helpers/sim-accounts.js';
import { loginAndSend } from '../helpers/smtp-client.js';
import { useProcs } from '../helpers/use-procs.js';

const run = REDIS_SERVER ? describe : describe.skip;
if (!REDIS_SERVER) console.warn(NO_REDIS_MESSAGE);

run('two instances on one Redis', () => {
  const procs = useProcs('all');
  let redis: RedisServer | undefined;
  afterAll(async () => redis?.stop());

  it('hold each mailbox to its connection limit and refresh each token once', async () => {
    redis = await startRedis();
    const sim = await procs.sim([
      '--style',
      'microsoft',
      '--max-connections-per-user',
      '2',
      '--rotate-refresh-tokens',
    ]);
    const emails = Array.from({ length: 4 }, (_, i) => `user${i}@example.com`);
    const config = (admin: string) => ({
      providers: { sim: { ...simProvider(sim), maxConnectionsPerAccount: 2 } },
      state: { redis: redis!.url, instances: 2 },
      http: { adminToken: admin },
      accounts: simAccounts(emails),
    });
    const a: ProxyProc = await procs.proxy(config('admin-token-for-tests-a'));
    const b: ProxyProc = await procs.proxy(config('admin-token-for-tests-b'));
    for (const p of [a, b])
      expect(await (await fetch(`http://127.0.0.1:${p.httpPort}/readyz`)).text()).toBe('ready\n');

    // 80 messages, 10 at a time per instance, on 4 mailboxes: 4 x 2 connections at most in all
    const sends: Promise<unknown>[] = [];
    const replies: number[] = [];
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 20; i++) {
        const p = i % 2 ? a : b;
        sends.push(
          loginAndSend(p.smtpPort, emails[i % 4]!, TEST_PASSWORD).then((m) =>
            replies.push(m.reply.code ?? 0),
          ),
        );
      }
      await Promise.all(sends.splice(0));
    }
    expect(replies.filter((c) => c !== 250)).toEqual([]);
    const stats = await sim.stats();
    expect(stats.messages).toBe(80);
    expect(stats.limitRejections.connections).toBe(0);
    for (const e of emails) expect(stats.connections.peakPerUser[e]).toBeLessThanOrEqual(2);
    // one refresh per mailbox across the two instances
    for (const e of emails) expect(stats.tokenRequestsPerUser[e]).toBe(1);
  }, 60_000);

  it('SIGTERM exits promptly even while Redis does not answer (paused, or gone)', async () => {
    const sim = await procs.sim([]);
    const p = await procs.proxy({
      providers: { sim: simProvider(sim) },
      state: { redis: redis!.url, instances: 2 },
      accounts: simAccounts(['paused@example.com']),
    });
    expect((await loginAndSend(p.smtpPort, 'paused@example.com', TEST_PASSWORD)).reply.code).toBe(250);
    redis!.pause();
    try {
      const started = Date.now();
      expect(await p.stop()).toBe(0);
      expect(Date.now() - started).toBeLessThan(8_000);
    } finally {
      redis!.resume();
    }
    const q = await procs.proxy({
      providers: { sim: simProvider(sim) },
      state: { redis: redis!.url, instances: 2 },
      accounts: simAccounts(['gone@example.com']),
    });
    expect((await loginAndSend(q.smtpPort, 'gone@example.com', TEST_PASSWORD)).reply.code).toBe(250);
    await redis!.stop();
    redis = undefined;
    const started = Date.now();
    expect(await q.stop()).toBe(0);
    expect(Date.now() - started).toBeLessThan(8_000);
  }, 60_000);
});
