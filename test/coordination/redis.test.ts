// The Redis coordinator against a real redis-server started here: the shared contract, then what
// only Redis can show (secrets at rest, a paused Redis, a Redis restarted empty, round trips).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { refreshOnce } from '../../src/coordination/refresh-flight.js';
import { RedisCoordinator, type RedisCoordinatorOptions } from '../../src/coordination/redis.js';
import {
  SHARED_STATE_UNREACHABLE,
  SharedStateUnavailable,
  type Lease,
} from '../../src/coordination/types.js';
import { freePort } from '../../src/tools/harness/ports.js';
import { silentLogger } from '../../src/shared/log.js';
import { openStateStore } from '../../src/state/store.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { LEASE_TTL_MS, RATE_VALIDITY_MS, coordinatorContract } from './contract.js';
import { NO_REDIS_MESSAGE, REDIS_SERVER, startRedis, type RedisServer } from './redis-server.js';

const SECRET = 'a-test-secret-key-that-is-long-enough';
const MB = 'mailbox@example.test';

if (!REDIS_SERVER) console.warn(NO_REDIS_MESSAGE);

describe.skipIf(!REDIS_SERVER)('redis coordinator', () => {
  let redis: RedisServer;
  const open: RedisCoordinator[] = [];

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  /** a coordinator on the test's Redis, with short timings; `prefix` separates the tests */
  function coordinator(prefix: string, extra: Partial<RedisCoordinatorOptions> = {}): RedisCoordinator {
    const c = new RedisCoordinator({
      url: redis.url,
      secretKey: SECRET,
      instances: 2,
      log: silentLogger,
      keyPrefix: prefix,
      leaseTtlMs: LEASE_TTL_MS,
      heartbeatMs: 150,
      probeMs: 100,
      // generous, so a loaded CI machine does not read as an outage; the pause tests set their own
      commandTimeoutMs: 2000,
      rateValidityMs: RATE_VALIDITY_MS,
      ...extra,
    });
    open.push(c);
    return c;
  }

  async function started(prefix: string, extra: Partial<RedisCoordinatorOptions> = {}) {
    const c = coordinator(prefix, extra);
    await c.start();
    return c;
  }

  /** the pause tests: an unanswered command must read as an outage quickly */
  const PAUSED = { commandTimeoutMs: 400 };

  const newPrefix = () => `t${randomBytes(4).toString('hex')}:`;

  afterEach(async () => {
    redis.resume();
    await Promise.all(open.splice(0).map((c) => c.close()));
  });

  coordinatorContract('redis', async () => {
    const prefix = newPrefix();
    return { make: () => started(prefix), close: async () => undefined };
  });

  it('keeps secrets sealed in Redis (not plain text) and opens them only with the same secretKey', async () => {
    const prefix = newPrefix();
    const a = await started(prefix);
    const lock = (await a.acquireRefreshLock(MB, 5000))!;
    await a.rotateRefreshToken(MB, {
      configured: 'configured-rt',
      used: 'configured-rt',
      next: 'rt-plain-secret',
      fence: lock.fence,
    });
    await a.putAccessToken(MB, 'access-plain-secret', Date.now() + 60_000, 'lineage');
    const raw = redis.raw();
    const keys = await raw.keys(`${prefix}*`);
    let bytes = Buffer.alloc(0);
    for (const k of keys) {
      const type = await raw.type(k);
      if (type === 'hash') {
        const h = await raw.hgetallBuffer(k);
        bytes = Buffer.concat([bytes, ...Object.values(h)]);
      } else if (type === 'string')
        bytes = Buffer.concat([bytes, (await raw.getBuffer(k)) ?? Buffer.alloc(0)]);
    }
    expect(keys).toContain(`${prefix}{${MB}}:token`);
    expect(keys).toContain(`${prefix}{${MB}}:refresh`);
    expect(bytes.includes('access-plain-secret')).toBe(false);
    expect(bytes.includes('rt-plain-secret')).toBe(false);
    const sealed = await raw.hgetBuffer(`${prefix}{${MB}}:token`, 'v');
    expect(sealed![0]).toBe(1); // the embedded store's layout: version | iv | tag | ciphertext
    // another instance with the same secret reads them; one with another secret refuses to start
    const b = await started(prefix);
    expect(await b.getAccessToken(MB, 'lineage')).toMatchObject({ token: 'access-plain-secret' });
    const wrong = coordinator(prefix, { secretKey: 'another-secret-key-that-is-long-enough' });
    await expect(wrong.start()).rejects.toThrow(/state\.secretKey differs/);
  });

  it('degrades to the local share while Redis is paused (SIGSTOP), then shares again after SIGCONT', async () => {
    const prefix = newPrefix();
    const [a, b] = [await started(prefix, PAUSED), await started(prefix, PAUSED)];
    const health: string[] = [];
    a.onHealth((h) => health.push(h.state === 'ok' ? 'ok' : `degraded: ${h.reason}`));
    await a.putAccessToken(MB, 'cached-access', Date.now() + 60_000);
    const held: Lease[] = [(await a.acquireLease(MB, 4))!];
    expect(held[0]).toBeDefined();

    redis.pause();
    await waitFor(
      'a degraded',
      () => a.health().state,
      (s) => s === 'degraded',
      5000,
    );
    expect(a.health()).toMatchObject({ state: 'degraded', reason: SHARED_STATE_UNREACHABLE });
    // mail keeps flowing on the cached token; refreshes wait for the shared state
    expect(await a.getAccessToken(MB)).toMatchObject({ token: 'cached-access' });
    await expect(a.acquireRefreshLock(MB, 1000)).rejects.toBeInstanceOf(SharedStateUnavailable);
    // max 4 over 2 instances: a share of 2, the lease it holds included
    const more = await Promise.all([a.acquireLease(MB, 4), a.acquireLease(MB, 4)]);
    expect(more.filter(Boolean)).toHaveLength(1);
    held.push(more.find(Boolean)!);
    // rate: limit 10 over 2 instances: 5 a minute locally
    const gate = a.rateGate('rate@example.test', 10);
    let ok = 0;
    for (let i = 0; i < 8; i++) if (await gate.take()) ok++;
    expect(ok).toBe(5);
    // an admin change made meanwhile is announced once Redis is back
    const heardB: string[] = [];
    b.onAccountsChanged(() => heardB.push('changed'));
    a.announceAccountsChanged();

    await sleep(1500); // a few seconds in all
    redis.resume();
    await waitFor(
      'a ok again',
      () => a.health().state,
      (s) => s === 'ok',
      5000,
    );
    await waitFor(
      'b ok again',
      () => b.health().state,
      (s) => s === 'ok',
      5000,
    );
    expect(health[0]).toBe(`degraded: ${SHARED_STATE_UNREACHABLE}`);
    expect(health.at(-1)).toBe('ok');
    await waitFor(
      'b hears the change',
      () => heardB,
      (h) => h.length > 0,
      3000,
    );
    // sharing resumed: a's two leases count in Redis again, so b gets the other two and no more
    await sleep(300);
    const raw = redis.raw();
    expect(await raw.zcard(`${prefix}{${MB}}:leases`)).toBe(2);
    const forB = await Promise.all([1, 2, 3].map(() => b.acquireLease(MB, 4)));
    expect(forB.filter(Boolean)).toHaveLength(2);
    expect(held.every((l) => l.state === 'held')).toBe(true);
    expect(await a.acquireRefreshLock(MB, 1000)).toBeDefined();
  });

  it('past the lease TTL of an outage, gives up the newest leases beyond its share (their connections retire)', async () => {
    const prefix = newPrefix();
    const a = await started(prefix, PAUSED);
    const lost: string[] = [];
    const held: Lease[] = [];
    for (let i = 0; i < 3; i++) held.push((await a.acquireLease(MB, 4, (l) => lost.push(l.id)))!);
    redis.pause();
    await waitFor(
      'a degraded',
      () => a.health().state,
      (s) => s === 'degraded',
      5000,
    );
    // within the TTL Redis still counts them for a: it keeps all three
    expect(held.every((l) => l.state === 'held')).toBe(true);
    await waitFor(
      'the newest lease lost',
      () => lost,
      (l) => l.length === 1,
      LEASE_TTL_MS + 3000,
    );
    expect(lost).toEqual([held[2]!.id]);
    expect(held.map((l) => l.state)).toEqual(['held', 'held', 'lost']);
    expect(await a.acquireLease(MB, 4)).toBeUndefined(); // at its share of 2
    // closing while Redis does not answer takes no longer than a command may
    const t0 = Date.now();
    await a.close();
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('after a Redis restarted empty: re-registers the leases held, reports a token miss, and one instance refreshes', async () => {
    const prefix = newPrefix();
    const cs = [await started(prefix), await started(prefix), await started(prefix)];
    const leases = [(await cs[0]!.acquireLease(MB, 3))!, (await cs[1]!.acquireLease(MB, 3))!];
    await cs[0]!.putAccessToken(MB, 'before-restart', Date.now() + 3_600_000, 'lineage');

    await redis.restart();
    for (const c of cs)
      await waitFor(
        'back to ok',
        () => c.health().state,
        (s) => s === 'ok',
        8000,
      );
    const raw = redis.raw();
    await waitFor(
      'leases re-established',
      () => raw.zcard(`${prefix}{${MB}}:leases`),
      (n) => n === 2,
      3000,
    );
    expect(leases.every((l) => l.state === 'held')).toBe(true);
    expect(await cs[2]!.getAccessToken(MB, 'lineage')).toBeUndefined();

    let refreshes = 0;
    const opts = {
      mailbox: MB,
      lineage: 'lineage',
      configured: 'configured-rt',
      minValidityMs: 30_000,
      lockTtlMs: 5000,
      waitMs: 5000,
      refresh: async () => {
        refreshes++;
        await sleep(100);
        return { accessToken: 'after-restart', expiresAt: Date.now() + 3_600_000 };
      },
    };
    const got = await Promise.all(cs.map((c) => refreshOnce(c, opts)));
    expect(refreshes).toBe(1);
    expect(got.map((g) => g.accessToken)).toEqual(['after-restart', 'after-restart', 'after-restart']);
    // a new instance still gets only the one free slot
    expect(await cs[2]!.acquireLease(MB, 3)).toBeDefined();
    expect(await cs[2]!.acquireLease(MB, 3)).toBeUndefined();
  });

  it('after a Redis restarted empty: restores the latest rotation from the instance that kept it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-coord-'));
    const local = openStateStore({ dir, secretKey: SECRET, log: silentLogger });
    try {
      const prefix = newPrefix();
      const [a, b] = [await started(prefix, { local }), await started(prefix)];
      const lock = (await a.acquireRefreshLock(MB, 5000))!;
      const w = { configured: 'configured-rt', used: 'configured-rt', next: 'rotated-1', fence: lock.fence };
      expect(await a.rotateRefreshToken(MB, w)).toBe('ok');
      await lock.release();
      await redis.restart();
      for (const c of [a, b])
        await waitFor(
          'back to ok',
          () => c.health().state,
          (s) => s === 'ok',
          8000,
        );
      expect(await b.getRefreshToken(MB, 'configured-rt')).toBeUndefined(); // b kept nothing
      expect(await a.getRefreshToken(MB, 'configured-rt')).toBe('rotated-1'); // a offers its copy...
      expect(await b.getRefreshToken(MB, 'configured-rt')).toBe('rotated-1'); // ...to everyone
    } finally {
      local.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an instance that read a rotation keeps it, so it seeds the current token after a restart even when the rotating one is gone', async () => {
    const dirs = [0, 1].map(() => fs.mkdtempSync(path.join(os.tmpdir(), 'xo-coord-')));
    const [localA, localB] = dirs.map((dir) => openStateStore({ dir, secretKey: SECRET, log: silentLogger }));
    try {
      const prefix = newPrefix();
      const a = await started(prefix, { local: localA });
      const b = await started(prefix, { local: localB });
      const lock = (await a.acquireRefreshLock(MB, 5000))!;
      const w = { configured: 'configured-rt', used: 'configured-rt', next: 'rotated-1', fence: lock.fence };
      expect(await a.rotateRefreshToken(MB, w)).toBe('ok');
      await lock.release();
      expect(await b.getRefreshToken(MB, 'configured-rt')).toBe('rotated-1');
      await a.close();
      await redis.restart();
      await waitFor(
        'back to ok',
        () => b.health().state,
        (s) => s === 'ok',
        8000,
      );
      // without b's copy the only candidate would be the configured token, which the provider retired
      expect(await b.getRefreshToken(MB, 'configured-rt')).toBe('rotated-1');
    } finally {
      localA!.close();
      localB!.close();
      for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
    }
  });

  it('a refused acquire asks the instance holding every slot to give one up (not a fair split)', async () => {
    const prefix = newPrefix();
    const a = await started(prefix);
    const b = await started(prefix);
    const asked: string[] = [];
    a.onLeaseWanted((m) => asked.push(m));
    const held = [await a.acquireLease(MB, 2), await a.acquireLease(MB, 2)];
    expect(held.every((l) => l !== undefined)).toBe(true);
    expect(await b.acquireLease(MB, 2)).toBeUndefined();
    await waitFor(
      'asked',
      () => asked.length,
      (n) => n === 1,
      3000,
    );
    expect(asked).toEqual([MB]);
    // a fair split (one each) is left alone
    held[0]!.release();
    const mine = await b.acquireLease(MB, 2);
    expect(mine).toBeDefined();
    const bAsked: string[] = [];
    b.onLeaseWanted((m) => bAsked.push(m));
    await new Promise((r) => setTimeout(r, 150)); // past the announcement interval
    expect(await a.acquireLease(MB, 2)).toBeUndefined();
    await new Promise((r) => setTimeout(r, 500));
    expect(bAsked).toEqual([]);
    expect(asked).toEqual([MB]);
  });

  it('starts degraded when Redis is not there, and joins without a restart when it appears', async () => {
    const port = await freePort();
    const c = coordinator(newPrefix(), { url: `redis://127.0.0.1:${port}`, connectTimeoutMs: 300 });
    await c.start();
    expect(c.health()).toMatchObject({ state: 'degraded', reason: SHARED_STATE_UNREACHABLE });
    expect(await c.acquireLease(MB, 2)).toBeDefined(); // its share of 2 over 2 instances
    expect(await c.acquireLease(MB, 2)).toBeUndefined();
    const { spawn } = await import('node:child_process');
    const late = spawn(
      REDIS_SERVER!,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      {
        stdio: 'ignore',
      },
    );
    try {
      await waitFor(
        'ok once Redis is up',
        () => c.health().state,
        (s) => s === 'ok',
        8000,
      );
      expect(await c.acquireRefreshLock(MB, 1000)).toBeDefined();
    } finally {
      await c.close();
      late.kill('SIGKILL');
    }
  });

  it('takes rate permits in batches: far fewer round trips than messages, and the limit holds', async () => {
    const prefix = newPrefix();
    const a = await started(prefix, { rateValidityMs: 1000 });
    const raw = redis.raw();
    const calls = async () => {
      const info = await raw.info('commandstats');
      const m = /cmdstat_(?:evalsha|eval):calls=(\d+)/g;
      let n = 0;
      for (const x of info.matchAll(m)) n += Number(x[1]);
      return n;
    };
    const gate = a.rateGate(MB, 100_000);
    const before = await calls();
    let sync = 0;
    let accepted = 0;
    const t0 = performance.now();
    // 2,000 messages at a steady pace of about 2 per ms
    for (let i = 0; i < 2000; i++) {
      const r = gate.take();
      if (r === true) sync++;
      if (r === true || (r !== false && (await r))) accepted++;
      if (i % 2 === 1) await sleep(1);
    }
    const elapsed = performance.now() - t0;
    const trips = (await calls()) - before;
    expect(accepted).toBe(2000);
    expect(trips).toBeLessThan(200);
    expect(sync).toBeGreaterThan(1800);
    console.log(
      `rate gate (redis): ${accepted} messages, ${trips} script calls (${(trips / accepted).toFixed(3)} per message), ` +
        `${sync} answered synchronously, ${elapsed.toFixed(0)} ms`,
    );
    // and at the limit: no more than `limit` however many ask at once
    const tight = a.rateGate('tight@example.test', 7);
    const b = await started(prefix);
    const other = b.rateGate('tight@example.test', 7);
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? tight : other).take()));
    expect(answers.filter(Boolean)).toHaveLength(7);
  });
});
