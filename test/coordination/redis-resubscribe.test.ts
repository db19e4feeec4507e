// The events subscriber across a connection that drops while it subscribes again: between a relay and
// a real redis-server, an interposer drops the subscriber's connection at its first SUBSCRIBE after a
// reconnect (a Redis restarted twice, a failover, a flapping network). Before the fix, ioredis's own
// re-subscribe rejected with nobody listening (an unhandled rejection: Node ends the process) and the
// subscription was then lost for good; now the link subscribes on every ready itself.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisLink } from '../../src/coordination/redis-link.js';
import { silentLogger } from '../../src/shared/log.js';
import { waitFor } from '../helpers/wait.js';
import { NO_REDIS_MESSAGE, REDIS_SERVER, startRedis, type RedisServer } from './redis-server.js';

if (!REDIS_SERVER) console.warn(NO_REDIS_MESSAGE);

/** a TCP relay to Redis that can cut every connection, and drop the next SUBSCRIBE's connection */
async function interposer(port: number) {
  const open = new Set<net.Socket>();
  const state = { dropNextSubscribe: false, dropped: 0 };
  const server = net.createServer((client) => {
    const up = net.connect(port, '127.0.0.1');
    open.add(client).add(up);
    const end = () => {
      client.destroy();
      up.destroy();
      open.delete(client);
      open.delete(up);
    };
    client.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
    client.on('data', (d) => {
      if (state.dropNextSubscribe && /subscribe/i.test(d.toString('latin1'))) {
        state.dropNextSubscribe = false;
        state.dropped++;
        return end();
      }
      up.write(d);
    });
    up.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `redis://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    state,
    cutAll: () => [...open].forEach((s) => s.destroy()),
    close: () => {
      [...open].forEach((s) => s.destroy());
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe.skipIf(!REDIS_SERVER)('the events subscriber', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('subscribes again after a reconnect whose first SUBSCRIBE was cut off, with no unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    const relay = await interposer(redis.port);
    const got: string[] = [];
    const link = new RedisLink({
      url: relay.url,
      commandTimeoutMs: 1000,
      connectTimeoutMs: 1000,
      channel: 'events',
      log: silentLogger,
      onMessage: (m) => got.push(m),
      onReady: () => undefined,
    });
    const pub = redis.raw();
    /** publish until the link hears it: it is subscribed */
    const hears = (what: string) =>
      waitFor(
        `the link to hear "${what}"`,
        async () => {
          await pub.publish('events', what);
          return got.includes(what);
        },
        Boolean,
        10_000,
        50,
      );
    try {
      expect(await link.connect()).toBe(true);
      await hears('before');

      relay.state.dropNextSubscribe = true;
      relay.cutAll();
      await hears('after');
      expect(relay.state.dropped).toBe(1);
      // a rejection is reported after the microtask queue drains: give it a turn
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled.map(String)).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await link.close();
      await relay.close();
    }
  }, 30_000);
});
