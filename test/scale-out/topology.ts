// The multi-host topology of issue 13 on loopback, all real processes: one redis-server, one
// simulator, N proxy instances sharing the Redis (state.redis) and one accounts file, and Debian's
// haproxy in front of them with send-proxy. Used by three-instances.test.ts and chaos.test.ts.
import { randomBytes, scryptSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { formatPasswordHash } from '../../src/config/password-hash.js';
import {
  runGenerator,
  type GeneratorOptions,
  type GeneratorResult,
} from '../../src/tools/harness/generator.js';
import { startRedis, type RedisServer } from '../coordination/redis-server.js';
import { startHaproxy, type Haproxy } from '../helpers/haproxy.js';
import {
  runProxy,
  simProvider,
  startProxy,
  startSim,
  type ProxyProc,
  type SimProc,
} from '../helpers/procs.js';
import { simAccount, simAccounts, TEST_PASSWORD } from '../helpers/sim-accounts.js';

/** HAProxy's source address towards the instances: the only one allowed to send a PROXY header */
export const BALANCER = '127.0.0.9';
export const ADMIN_TOKEN = 'admin-token-for-tests-only-0123456789';
export const PREFIX = 'xoauth2-proxy:';
const HASH = cheapPasswordHash();

export interface TopologyOptions {
  instances: number;
  mailboxes: number;
  /** simulator flags (style, limits, token lifetime, rotation...) */
  simArgs: string[];
  /** state.leaseTtl (default the proxy's) */
  leaseTtl?: string;
  /** oauth.refreshAhead (a 10-second token needs less than the default 5 minutes) */
  refreshAhead?: string;
  /** provider fields besides tokenUrl/smtp (maxConnectionsPerAccount...) */
  provider?: Record<string, unknown>;
}

export interface Topology {
  redis: RedisServer;
  sim: SimProc;
  proxies: ProxyProc[];
  lb: Haproxy;
  users: string[];
  accountsFile: string;
  /** when each mailbox's refreshes happened (polled from the simulator) */
  refreshes: RefreshWatch;
  /** every instance ever started here, killed ones included (their output stays readable) */
  history: ProxyProc[];
  /** the log lines of all instances that mention one of these words (for failure messages) */
  logsAbout(words: readonly string[], o?: { since?: number; max?: number }): string[];
  /** every live instance's /readyz body */
  readyz(): Promise<string[]>;
  /** kill -9 instance i (no drain, its leases left to expire) */
  kill(i: number): Promise<void>;
  /** start instance i again on its files (same ports, state dir) */
  restart(i: number): Promise<ProxyProc>;
  /** the load generator through the balancer, as these mailboxes with their password */
  load(
    o: Partial<GeneratorOptions> & { durationSec: number; rate: number; connections: number },
  ): Promise<GeneratorResult>;
  stop(): Promise<void>;
}

/**
 * TEST_PASSWORD hashed with a tiny scrypt cost (N = 16): every instance verifies each mailbox's
 * password once, 300 full-cost KDFs (tens of ms each, one at a time) would take most of a run
 */
export function cheapPasswordHash(pw = TEST_PASSWORD): string {
  const salt = randomBytes(16);
  const hash = scryptSync(pw, salt, 32, { N: 16, r: 8, p: 1 });
  return formatPasswordHash({ ln: 4, r: 8, p: 1, salt, hash });
}

export const mailboxes = (n: number) =>
  Array.from({ length: n }, (_, i) => `mb${String(i).padStart(3, '0')}@example.com`);

export async function startTopology(o: TopologyOptions): Promise<Topology> {
  const started: { stop(): Promise<unknown> }[] = [];
  const stopAll = async () => {
    for (const p of started.splice(0).reverse()) await p.stop().catch(() => undefined);
  };
  try {
    const redis = await startRedis();
    started.push(redis);
    const sim = await startSim(o.simArgs);
    started.push(sim);
    // from before the first instance starts, so the warm-up's refreshes are seen when they happen
    const refreshes = watchRefreshes(sim);
    started.push({ stop: async () => refreshes.stop() });
    const users = mailboxes(o.mailboxes);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-scaleout-'));
    // one accounts file for all instances (on several hosts: the same file deployed to each); an
    // admin change on one instance rewrites it and the others reload it when it is announced
    const accountsFile = path.join(dir, 'accounts.yaml');
    fs.writeFileSync(accountsFile, YAML.stringify({ accounts: simAccounts(users, { passwordHash: HASH }) }));
    const config = {
      smtp: { proxyProtocol: [BALANCER] },
      http: { adminToken: ADMIN_TOKEN },
      // XO_SCALEOUT_CONTROL=uncoordinated: the same topology without state.redis, to see the
      // tests fail as issue 13 says independent instances do (432s, a refresh per instance, reuse)
      state:
        process.env.XO_SCALEOUT_CONTROL === 'uncoordinated'
          ? {}
          : { redis: redis.url, instances: o.instances, ...(o.leaseTtl ? { leaseTtl: o.leaseTtl } : {}) },
      oauth: { ...(o.refreshAhead ? { refreshAhead: o.refreshAhead } : {}) },
      providers: { sim: simProvider(sim, o.provider ?? {}) },
      accountsFile,
      log: { level: process.env.XO_SCALEOUT_LOG ?? 'info', messages: false },
    };
    // one after another: three at once on a loaded 2-core machine can miss the 20 s readiness
    // deadline; their proactive refreshes still race for the same locks all run long
    const live = new Set<ProxyProc>();
    started.push({ stop: async () => Promise.all([...live].map((p) => p.stop())) });
    const proxies: ProxyProc[] = [];
    for (let i = 0; i < o.instances; i++) {
      const p = await startProxy(config);
      live.add(p);
      proxies.push(p);
    }
    const lb = await startHaproxy({
      backends: proxies.map((p) => ({ smtpPort: p.smtpPort, httpPort: p.httpPort })),
      proxyProtocol: 'v1',
      sourceAddress: BALANCER,
    });
    started.push(lb);
    const t: Topology = {
      redis,
      sim,
      proxies,
      lb,
      users,
      accountsFile,
      refreshes,
      history: [...proxies],
      logsAbout(words, { since = 0, max = 60 } = {}) {
        const time = (l: string) => Number(/"time":(\d+)/.exec(l)?.[1] ?? 0);
        return t.history
          .flatMap((p, i) =>
            p
              .output()
              .split('\n')
              .filter((l) => time(l) >= since && words.some((w) => l.includes(w)))
              .map((l) => `[${i}:${p.child.pid}] ${l}`),
          )
          .slice(0, max);
      },
      async readyz() {
        return Promise.all(
          [...live].map(async (p) => {
            const r = await p.http('/readyz');
            return `${r.status} ${(await r.text()).trim()}`;
          }),
        );
      },
      async kill(i) {
        const p = t.proxies[i]!;
        live.delete(p);
        await p.stop('SIGKILL');
      },
      async restart(i) {
        const old = t.proxies[i]!;
        const p = await runProxy(old.dir, old.configFile, old.smtpPort, old.httpPort);
        t.proxies[i] = p;
        t.history.push(p);
        live.add(p);
        return p;
      },
      load(g) {
        return runGenerator({
          host: lb.host,
          port: lb.port,
          auth: { mechanism: 'PLAIN', password: TEST_PASSWORD },
          users,
          size: 1024,
          recipients: 1,
          runId: `so${Date.now().toString(36)}`,
          quiet: true,
          progress: () => undefined,
          ...g,
        });
      },
      stop: stopAll,
    };
    return t;
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** POST an account to one instance's admin API (verified with a real refresh by default) */
export async function addAccount(p: ProxyProc, email: string): Promise<Response> {
  return p.http('/admin/accounts', {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(simAccount(email, { passwordHash: HASH })),
  });
}

export async function deleteAccount(p: ProxyProc, email: string): Promise<Response> {
  return p.http(`/admin/accounts/${encodeURIComponent(email)}`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
}

export interface RefreshWatch {
  /**
   * each mailbox's successful refreshes, as the window each happened in (ms since the epoch):
   * after the previous poll was sent, no later than this poll's answer
   */
  times: Map<string, { after: number; by: number }[]>;
  /**
   * refreshes that certainly came sooner than `minGapMs` after the same mailbox's previous one
   * (even the widest reading of the two windows is shorter; a stalled poll makes windows wide,
   * never a false alarm), by in [from, to): two instances refreshing the same token, or a refetch
   */
  early(minGapMs: number, from?: number, to?: number): { user: string; by: number; maxGapMs: number }[];
  stop(): void;
}

/**
 * Polls the simulator's per-user refresh counts (every `everyMs`) and keeps when each refresh
 * happened, so "one refresh per mailbox per token lifetime" is checked per refresh, not only in total.
 */
export function watchRefreshes(sim: SimProc, everyMs = 200): RefreshWatch {
  const times = new Map<string, { after: number; by: number }[]>();
  const last = new Map<string, number>();
  let stopped = false;
  let previousSent = 0;
  const poll = async () => {
    while (!stopped) {
      const sent = Date.now();
      try {
        const s = (await (await fetch(`http://127.0.0.1:${sim.httpPort}/stats?ids=0`)).json()) as {
          refreshesPerUser: Record<string, number>;
        };
        const by = Date.now();
        for (const [u, n] of Object.entries(s.refreshesPerUser)) {
          const seen = last.get(u) ?? 0;
          if (n > seen) {
            const list = times.get(u) ?? [];
            for (let k = seen; k < n; k++) list.push({ after: previousSent, by });
            times.set(u, list);
            last.set(u, n);
          }
        }
        previousSent = sent;
      } catch {}
      await new Promise((r) => setTimeout(r, everyMs));
    }
  };
  void poll();
  return {
    times,
    early(minGapMs, from = 0, to = Infinity) {
      const out: { user: string; by: number; maxGapMs: number }[] = [];
      for (const [user, ts] of times)
        for (let i = 1; i < ts.length; i++) {
          const maxGapMs = ts[i]!.by - ts[i - 1]!.after;
          if (ts[i]!.by >= from && ts[i]!.by < to && maxGapMs < minGapMs)
            out.push({ user, by: ts[i]!.by, maxGapMs });
        }
      return out;
    },
    stop: () => void (stopped = true),
  };
}

/** every Message-ID the client got 250 for that the simulator did not store */
export function missing(accepted: readonly string[], stored: readonly string[]): string[] {
  const have = new Set(stored);
  return accepted.filter((id) => !have.has(id));
}

/** Redis lease members (unexpired) of the instance with this pid, over all mailboxes */
export async function liveLeasesOf(
  redis: RedisServer,
  users: readonly string[],
  pid: number,
): Promise<number> {
  const raw = redis.raw();
  try {
    const [sec, usec] = await raw.time();
    const nowMs = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
    let n = 0;
    for (const u of users) {
      const members = await raw.zrangebyscore(`${PREFIX}{${u}}:leases`, nowMs, '+inf');
      n += members.filter((m) => m.split(':')[1] === String(pid)).length;
    }
    return n;
  } finally {
    raw.disconnect();
  }
}
