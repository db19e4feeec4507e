// The coordinator's connection to Redis: a command client, a subscriber client for the events
// channel, and the health they imply. Any command that cannot reach Redis (connection down, timed
// out, Redis loading or read-only) turns health to degraded at once; commands never queue while the
// connection is down (they fail fast, and the caller falls back to its local answer). The
// coordinator's heartbeat decides when it is ok again.
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import type { Logger } from '../shared/log.js';
import { HealthState } from './health.js';
import { SCRIPTS, type ScriptName } from './redis-scripts.js';
import { SHARED_STATE_UNREACHABLE, SharedStateUnavailable } from './types.js';

export interface RedisLinkOptions {
  url: string;
  commandTimeoutMs: number;
  connectTimeoutMs: number;
  /** the events channel to subscribe to */
  channel: string;
  log: Logger;
  onMessage: (message: string) => void;
  /** the command connection is (again) ready */
  onReady: () => void;
}

type IoRedis = typeof import('ioredis');
let ioredis: IoRedis | undefined;

/**
 * ioredis, loaded the first time a link is made: a proxy without `state.redis` never loads it
 * (~5 MB less RSS at load: its source and code stay out of the heap; docs/performance.md, memory).
 * It is CommonJS, so it loads synchronously.
 */
function lib(): IoRedis {
  return (ioredis ??= createRequire(import.meta.url)('ioredis') as IoRedis);
}

/** Replies that say "Redis is there but cannot serve now", as opposed to a bug in a command. */
const UNAVAILABLE_REPLY = /^(LOADING|BUSY|MASTERDOWN|READONLY|CLUSTERDOWN|TRYAGAIN|NOAUTH)\b/;

/** Retry connecting every 50 ms at first, backing off to 2 s: reconnection without a restart. */
function retryStrategy(times: number): number {
  return Math.min(50 * 2 ** Math.min(times, 6), 2_000);
}

export class RedisLink {
  readonly cmd: Redis;
  private readonly sub: Redis;
  readonly health: HealthState;
  private closed = false;

  constructor(private readonly opts: RedisLinkOptions) {
    const log = opts.log;
    this.health = new HealthState((err) =>
      log.warn({ err: (err as Error)?.message }, 'coordination: a health listener threw'),
    );
    const common = {
      lazyConnect: true,
      connectTimeout: opts.connectTimeoutMs,
      retryStrategy,
      maxRetriesPerRequest: 0,
    };
    this.cmd = new (lib().Redis)(opts.url, {
      ...common,
      commandTimeout: opts.commandTimeoutMs,
      enableOfflineQueue: false,
      // concurrent calls share one write and one round trip
      enableAutoPipelining: true,
    });
    for (const [name, def] of Object.entries(SCRIPTS)) {
      this.cmd.defineCommand(name, { numberOfKeys: def.numberOfKeys, lua: def.lua });
    }
    // The subscriber subscribes on every ready itself. ioredis's autoResubscribe sends its SUBSCRIBE
    // with nobody listening: a connection lost before the reply was an unhandled rejection (which
    // ends the process), and the subscription was then gone for good
    // (test/coordination/redis-resubscribe.test.ts).
    this.sub = this.cmd.duplicate({
      enableOfflineQueue: false,
      autoResubscribe: false,
      commandTimeout: undefined,
    });
    this.sub.on('ready', () => {
      if (this.closed) return;
      this.sub.subscribe(this.opts.channel).catch((err: Error) => {
        // the next ready subscribes again; meanwhile the heartbeat keeps the state right
        if (!this.closed)
          log.warn({ err: err.message }, 'shared state (Redis): subscribing to events failed');
      });
    });

    let lastError = '';
    const onError = (err: Error) => {
      // ioredis reports every failed reconnect attempt; log a cause once per change
      if (err.message === lastError) return;
      lastError = err.message;
      log.warn({ err: err.message }, 'shared state (Redis) connection error');
    };
    this.cmd.on('error', onError);
    this.sub.on('error', onError);
    this.cmd.on('close', () => {
      if (!this.closed) this.unreachable('connection closed');
    });
    this.cmd.on('ready', () => {
      lastError = '';
      if (!this.closed) opts.onReady();
    });
    this.sub.on('message', (_channel: string, message: string) => opts.onMessage(message));
  }

  /** connect both clients; false (and degraded) when Redis cannot be reached now: it keeps trying */
  async connect(): Promise<boolean> {
    void this.sub.connect().catch(() => undefined);
    try {
      await this.cmd.connect();
      return true;
    } catch (err) {
      this.unreachable((err as Error).message);
      return false;
    }
  }

  /** run a command; a failure to reach Redis degrades health and rejects SharedStateUnavailable */
  async run<T>(what: string, fn: (r: Redis) => Promise<T>): Promise<T> {
    if (this.closed) throw new SharedStateUnavailable(what);
    try {
      return await fn(this.cmd);
    } catch (err) {
      if (err instanceof lib().ReplyError && !UNAVAILABLE_REPLY.test((err as Error).message)) throw err;
      this.unreachable(`${what}: ${(err as Error).message}`);
      throw new SharedStateUnavailable(what);
    }
  }

  /** run one of SCRIPTS */
  script<T>(name: ScriptName, keys: string[], args: (string | number | Buffer)[]): Promise<T> {
    return this.run(name, (r) => {
      const fn = (r as unknown as Record<string, (...a: unknown[]) => Promise<T>>)[name]!;
      return fn.call(r, ...keys, ...args);
    });
  }

  /** degraded from now on, until the coordinator's heartbeat succeeds again */
  unreachable(cause: string): void {
    if (this.health.degrade(SHARED_STATE_UNREACHABLE))
      this.opts.log.warn({ cause }, 'shared state unreachable: degraded (local shares, cached tokens)');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // a polite QUIT when Redis answers; never wait longer than a command may take
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise((r) => (timer = setTimeout(r, this.opts.commandTimeoutMs)));
    await Promise.race([this.cmd.quit().catch(() => undefined), late]);
    clearTimeout(timer);
    this.cmd.disconnect();
    this.sub.disconnect();
  }
}
