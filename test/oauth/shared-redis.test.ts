// Shared mode on a real redis-server, each instance with its own local store (hosts): a new
// authorization made on one host reaches the others through Redis, and is the one refreshed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisCoordinator } from '../../src/coordination/redis.js';
import { silentLogger } from '../../src/shared/log.js';
import {
  NO_REDIS_MESSAGE,
  REDIS_SERVER,
  startRedis,
  type RedisServer,
} from '../coordination/redis-server.js';
import { expectSmtpError } from '../helpers/expect-rejection.js';
import { useTokenServer } from '../helpers/token-server.js';
import { until } from '../helpers/wait.js';
import type { TokenAccount } from '../../src/oauth/token-manager.js';
import { Harness, SECRET, account, provider, rotatingProvider } from './helpers.js';

const run = REDIS_SERVER ? describe : describe.skip;
if (!REDIS_SERVER) console.warn(NO_REDIS_MESSAGE);

const startTokenServer = useTokenServer();
const h = new Harness();

run('token manager, shared mode on Redis', () => {
  let redis: RedisServer;
  const coords: RedisCoordinator[] = [];
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    h.cleanup();
    await Promise.all(coords.map((c) => c.close()));
    await redis?.stop();
  });

  async function host(
    url: string,
    over: Partial<TokenAccount> = { refreshToken: undefined },
    email = 'a@x.com',
  ) {
    const store = h.store();
    const coord = new RedisCoordinator({
      url: redis.url,
      secretKey: SECRET,
      instances: 2,
      log: silentLogger,
      keyPrefix: 'shared-redis-test:',
      local: store,
      commandTimeoutMs: 2000,
    });
    coords.push(coord);
    await coord.start();
    const { tm } = h.manager({ store, shared: coord });
    // default: no refreshToken in the config, the one an authorization stores (source "store")
    tm.setAccounts([account(email, provider(url), over)]);
    return { tm, store };
  }

  it("another host's refresh is followed at once: its rotation kept locally, its token adopted", async () => {
    const srv = await startTokenServer(rotatingProvider(new Set(['rt-follow'])));
    const a = await host(srv.url, { refreshToken: 'rt-follow' }, 'follow@x.com');
    const b = await host(srv.url, { refreshToken: 'rt-follow' }, 'follow@x.com');
    const first = await a.tm.getToken('follow@x.com');
    // b learns of it from the refresh-done event, without asking for a token
    await until(() => b.store.getRotatedRefreshToken('follow@x.com', 'rt-follow') !== undefined);
    expect(b.store.getRotatedRefreshToken('follow@x.com', 'rt-follow')).toBe(
      a.store.getRotatedRefreshToken('follow@x.com', 'rt-follow'),
    );
    await until(() => b.tm.status('follow@x.com').state === 'ok');
    expect(await b.tm.getToken('follow@x.com')).toBe(first);
    expect(srv.requests).toHaveLength(1);
  });

  it('an authorization on one host is what every host refreshes with', async () => {
    const srv = await startTokenServer(rotatingProvider(new Set(['rt-new'])));
    const a = await host(srv.url);
    const b = await host(srv.url);
    await expectSmtpError(b.tm.getToken('a@x.com')); // needs_authorization everywhere
    // `accounts authorize` (or the web onboarding) on host A
    a.store.putAuthorizedRefreshToken('a@x.com', 'rt-new');
    expect(a.tm.syncAuthorizations()).toEqual(['a@x.com']);
    const token = await a.tm.getToken('a@x.com');
    expect(srv.requests.map((r) => r.params.get('refresh_token'))).toEqual(['rt-new']);
    // host B hears "accounts changed" and reloads: it finds the authorization in Redis
    b.tm.syncAuthorizations();
    await until(() => b.tm.status('a@x.com').state !== 'needs_authorization');
    expect(await b.tm.getToken('a@x.com')).toBe(token);
    expect(srv.requests).toHaveLength(1);

    // re-authorized on host B (a new grant): B refreshes with it, not with the old grant's rotation
    srv.handler = rotatingProvider(new Set(['rt-second']));
    b.store.putAuthorizedRefreshToken('a@x.com', 'rt-second');
    expect(b.tm.syncAuthorizations()).toEqual(['a@x.com']);
    await b.tm.getToken('a@x.com');
    expect(srv.requests.map((r) => r.params.get('refresh_token'))).toEqual(['rt-new', 'rt-second']);
  });
});
