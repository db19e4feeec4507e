// A real redis-server for the coordination tests: on a free loopback port, without persistence, so
// a restart comes back empty. The tests pause it (SIGSTOP), resume it and restart it.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from '../../src/tools/harness/ports.js';
import { sleep } from '../helpers/wait.js';

/** the redis-server binary, or undefined (the tests that need it are skipped) */
export function findRedisServer(): string | undefined {
  const dirs = ['/usr/bin', '/usr/local/bin', ...(process.env.PATH ?? '').split(':')];
  for (const d of dirs) {
    const p = path.join(d, 'redis-server');
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {}
  }
  return undefined;
}

export const REDIS_SERVER = findRedisServer();
export const NO_REDIS_MESSAGE =
  'redis-server is not installed: the Redis coordination tests are skipped (apt-get install redis-server; .ci/run installs it)';

export interface RedisServer {
  port: number;
  url: string;
  /** SIGSTOP: the socket stays open and nothing answers */
  pause(): void;
  resume(): void;
  /** kill it and start a fresh, empty one on the same port */
  restart(): Promise<void>;
  /** kill it and leave it down (start() brings a fresh, empty one back on the same port; no-op while up) */
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** a plain client for looking at the raw keys */
  raw(): Redis;
}

async function launch(bin: string, port: number): Promise<ChildProcess> {
  const child = spawn(
    bin,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--loglevel',
      'warning',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited: ${out}`);
    const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      await probe.ping();
      probe.disconnect();
      return child;
    } catch {
      probe.disconnect();
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`redis-server did not start on ${port}: ${out}`);
    }
    await sleep(50);
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

export async function startRedis(): Promise<RedisServer> {
  const bin = REDIS_SERVER;
  if (!bin) throw new Error(NO_REDIS_MESSAGE);
  const port = await freePort();
  let child = await launch(bin, port);
  const raws: Redis[] = [];
  const kill = async () => {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await exited(child);
  };
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pause: () => child.kill('SIGSTOP'),
    resume: () => child.kill('SIGCONT'),
    async restart() {
      await kill();
      child = await launch(bin, port);
    },
    kill,
    async start() {
      if (child.exitCode === null && child.signalCode === null) return; // still running
      child = await launch(bin, port);
    },
    async stop() {
      for (const r of raws) r.disconnect();
      await kill();
    },
    raw() {
      const r = new Redis({ port, host: '127.0.0.1' });
      r.on('error', () => undefined);
      raws.push(r);
      return r;
    },
  };
}
