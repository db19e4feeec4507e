// Refreshes across a Redis that restarts empty (or a lock holder that never releases), on a real
// redis-server, against a strict provider: every grant rotates the refresh token and presenting a
// retired one revokes the grant (RFC 9700 4.14.2). What is counted is what the provider sees: one
// refresh per mailbox per token lifetime, and no retired token presented.
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { refreshOnce, type RefreshOutcome } from '../../src/coordination/refresh-flight.js';
import { RedisCoordinator } from '../../src/coordination/redis.js';
import { silentLogger } from '../../src/shared/log.js';
import type { StateStore } from '../../src/state/store.js';
import { startTokenServer, type Handler, type TokenServer } from '../helpers/token-server.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { Harness, SECRET, account, provider } from '../oauth/helpers.js';
import { NO_REDIS_MESSAGE, REDIS_SERVER, startRedis, type RedisServer } from './redis-server.js';

if (!REDIS_SERVER) console.warn(NO_REDIS_MESSAGE);

const MB = 'a@x.com';

/** rotates on every grant; a retired token revokes its family */
function strictProvider(lifetimeSec: number) {
  const live = new Map<string, string>();
  const retired = new Set<string>();
  const revoked = new Set<string>();
  const p = { refreshes: 0, reuses: 0, revoked };
  let n = 0;
  const grant = (rt: string): RefreshOutcome & { refreshToken: string } => {
    const family = rt.split('~')[0]!;
    if (revoked.has(family)) throw new Error('invalid_grant: revoked');
    if (retired.has(rt)) {
      p.reuses++;
      revoked.add(family);
      throw new Error('invalid_grant: reuse detected');
    }
    if ((live.get(family) ?? family) !== rt) throw new Error('invalid_grant: unknown');
    retired.add(rt);
    const next = `${family}~${++n}`;
    live.set(family, next);
    p.refreshes++;
    return { accessToken: `at-${n}`, expiresAt: Date.now() + lifetimeSec * 1000, refreshToken: next };
  };
  const handler: Handler = async (req) => {
    await sleep(20);
    try {
      const g = grant(req.params.get('refresh_token') ?? '');
      return {
        body: { access_token: g.accessToken, expires_in: lifetimeSec, refresh_token: g.refreshToken },
      };
    } catch (err) {
      return { status: 400, body: { error: 'invalid_grant', error_description: (err as Error).message } };
    }
  };
  return Object.assign(p, { grant, handler });
}

describe.skipIf(!REDIS_SERVER)('refreshes across a Redis restarted empty', () => {
  let redis: RedisServer;
  const h = new Harness();
  const coords: RedisCoordinator[] = [];
  const servers: TokenServer[] = [];

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterEach(async () => {
    h.cleanup();
    await Promise.all(servers.splice(0).map((s) => s.close()));
    await Promise.all(coords.splice(0).map((c) => c.close()));
    await redis.start(); // a test that failed while it was down
  });
  afterAll(async () => {
    await redis?.stop();
  });

  async function coordinator(prefix: string, local?: StateStore): Promise<RedisCoordinator> {
    const c = new RedisCoordinator({
      url: redis.url,
      secretKey: SECRET,
      instances: 3,
      log: silentLogger,
      keyPrefix: prefix,
      heartbeatMs: 150,
      probeMs: 100,
      commandTimeoutMs: 2000,
      ...(local ? { local } : {}),
    });
    coords.push(c);
    await c.start();
    return c;
  }

  const newPrefix = () => `r${randomBytes(4).toString('hex')}:`;

  /** resolves once `c` has been degraded (or is now) and is ok again: an ok from before does not count */
  function throughOutage(c: RedisCoordinator): Promise<void> {
    return new Promise((resolve) => {
      let down = c.health().state === 'degraded';
      const off = c.onHealth((hl) => {
        if (hl.state === 'degraded') down = true;
        else if (down) {
          off();
          resolve();
        }
      });
    });
  }

  /** three hosts (each its own local store) running token managers on one Redis */
  async function hosts(prefix: string, url: string) {
    return Promise.all(
      [0, 1, 2].map(async () => {
        const store = h.store();
        const coord = await coordinator(prefix, store);
        // requestTimeout 1 s: the refresh lock lives 7 s, longer than the tokens below
        const { tm } = h.manager({ store, shared: coord, requestTimeoutMs: 1000, refreshAheadMs: 1000 });
        tm.setAccounts([account(MB, provider(url), { refreshToken: 'rt' })]);
        return { tm, coord };
      }),
    );
  }

  /** refreshOnce's options for MB: a cached token valid for 1 s more will do; grants from `p` */
  const flight = (p: ReturnType<typeof strictProvider>) => ({
    mailbox: MB,
    configured: 'rt',
    lockTtlMs: 5000,
    waitMs: 8000,
    minValidityMs: 1000,
    refresh: async (rt: string) => p.grant(rt),
  });

  it('a lock whose holder died: the waiters refresh once, and the token they get is not already expired', async () => {
    const p = strictProvider(4);
    const srv = await startTokenServer(p.handler);
    servers.push(srv);
    const prefix = newPrefix();
    const all = await hosts(prefix, srv.url);
    // an instance killed while it held the lock: it is never released, it runs out after 6 s
    const ghost = await coordinator(prefix);
    expect(await ghost.acquireRefreshLock(MB, 6000)).toBeDefined();
    const tokens = await Promise.all(all.map(({ tm }) => tm.getToken(MB)));
    expect(p.refreshes).toBe(1);
    expect(p.reuses).toBe(0);
    expect(new Set(tokens).size).toBe(1);
    // counted from the token request, not from when the wait for the lock began
    for (const { tm } of all) expect(tm.status(MB).expiresAt!).toBeGreaterThan(Date.now() + 3000);
  }, 30_000);

  it('waiting on a lock that vanished with a Redis restart: the waiters look again once Redis is back', async () => {
    const p = strictProvider(3600);
    const srv = await startTokenServer(p.handler);
    servers.push(srv);
    const prefix = newPrefix();
    const all = await hosts(prefix, srv.url);
    // taken before the restart; its holder's release goes to an empty Redis and announces nothing
    const ghost = await coordinator(prefix);
    expect(await ghost.acquireRefreshLock(MB, 7000)).toBeDefined();
    const asked = Promise.all(all.map(({ tm }) => tm.getToken(MB)));
    await sleep(300); // every host is waiting for the lock
    const recovered = Promise.all(all.map((x) => throughOutage(x.coord)));
    await redis.restart();
    await recovered;
    const back = Date.now();
    const tokens = await asked;
    expect(Date.now() - back).toBeLessThan(3000); // not the ~7 s the lock had left
    expect(new Set(tokens).size).toBe(1);
    expect(p.refreshes).toBe(1);
  }, 40_000);

  it('Redis restarted empty between the grant and its compare-and-set: the rotation is stored, no second grant', async () => {
    const p = strictProvider(3600);
    const prefix = newPrefix();
    const [a, b] = [await coordinator(prefix, h.store()), await coordinator(prefix, h.store())];
    const opts = flight(p);
    await refreshOnce(a, opts);
    // the next refresh (the cached token is not good enough) loses Redis after the provider answered
    const second = await refreshOnce(a, {
      ...opts,
      minValidityMs: 7_200_000,
      refresh: async (rt) => {
        const out = p.grant(rt);
        const back = Promise.all([throughOutage(a), throughOutage(b)]);
        await redis.restart();
        await back;
        return out;
      },
    });
    expect(second.refreshed).toBe(true);
    expect(await b.getRefreshToken(MB, 'rt')).toBe('rt~2');
    const third = await refreshOnce(b, opts);
    expect(third.accessToken).toBe(second.accessToken);
    expect({ refreshes: p.refreshes, reuses: p.reuses }).toEqual({ refreshes: 2, reuses: 0 });
  }, 30_000);

  it('Redis down at the compare-and-set, back empty: the rotation and the token are kept and shared before anyone refreshes again', async () => {
    const p = strictProvider(3600);
    const prefix = newPrefix();
    const [a, b] = [await coordinator(prefix, h.store()), await coordinator(prefix, h.store())];
    const opts = flight(p);
    await refreshOnce(a, opts);
    expect(await b.getRefreshToken(MB, 'rt')).toBe('rt~1'); // b follows: it keeps rt~1 locally
    const second = await refreshOnce(a, {
      ...opts,
      minValidityMs: 7_200_000,
      refresh: async (rt) => {
        const out = p.grant(rt);
        await redis.kill();
        await waitFor(
          'a degraded',
          () => a.health().state,
          (s) => s === 'degraded',
        );
        return out;
      },
    });
    // the provider retired rt~1: its answer is used, not thrown away
    expect(second.refreshed).toBe(true);
    const back = Promise.all([throughOutage(a), throughOutage(b)]);
    await redis.start();
    await back;
    // b's own copy is the retired rt~1: what Redis holds now is a's rt~2, and a's token
    expect(await b.getRefreshToken(MB, 'rt')).toBe('rt~2');
    const third = await refreshOnce(b, opts);
    expect(third).toMatchObject({ refreshed: false, accessToken: second.accessToken });
    // a refresh after that presents rt~2, not the retired rt~1
    await refreshOnce(b, { ...opts, minValidityMs: 7_200_000 });
    expect({ refreshes: p.refreshes, reuses: p.reuses }).toEqual({ refreshes: 3, reuses: 0 });
  }, 30_000);
});
