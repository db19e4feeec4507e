// Debian's haproxy for the scale-out tests: a TCP frontend on loopback in front of N proxy
// instances, each reached with a PROXY protocol header (`send-proxy`) and health-checked on its
// HTTP /readyz, as in deploy/haproxy.cfg. Started in the foreground on a generated config; a
// stats page (CSV) says which backends HAProxy currently sees as UP.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { freePort } from '../../src/tools/harness/ports.js';
import { sleep, waitFor } from './wait.js';

/** the haproxy binary, or undefined (the tests that need it are skipped) */
export function findHaproxy(): string | undefined {
  const dirs = [
    '/usr/sbin',
    '/usr/bin',
    '/usr/local/sbin',
    '/usr/local/bin',
    ...(process.env.PATH ?? '').split(':'),
  ];
  for (const d of dirs) {
    const p = path.join(d, 'haproxy');
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {}
  }
  return undefined;
}

export const HAPROXY = findHaproxy();
export const NO_HAPROXY_MESSAGE =
  'haproxy is not installed: the scale-out tests are skipped (apt-get install haproxy; .ci/run installs it)';

export interface HaproxyBackend {
  /** the proxy's SMTP listener */
  host?: string;
  smtpPort: number;
  /** the proxy's HTTP port: the health check asks GET /readyz there */
  httpPort: number;
  name?: string;
}

export interface HaproxyOptions {
  backends: HaproxyBackend[];
  /** the frontend's address (default 127.0.0.1; the port is free) */
  bindHost?: string;
  /** 'v1' = `send-proxy` (what smtp.proxyProtocol reads), 'v2' = `send-proxy-v2`, 'none' */
  proxyProtocol?: 'v1' | 'v2' | 'none';
  /** HAProxy's own source address towards the proxies (`source`), e.g. to name it in smtp.proxyProtocol */
  sourceAddress?: string;
  /** health check interval (default 300 ms; two failures mark a backend down, one success up) */
  checkIntervalMs?: number;
}

export interface BackendStatus {
  name: string;
  /** UP, DOWN, 'UP 1/2' ... as HAProxy reports it */
  status: string;
  /** sessions open now */
  current: number;
  /** sessions in all */
  total: number;
}

export interface Haproxy {
  host: string;
  port: number;
  configFile: string;
  /** the backends as HAProxy sees them now */
  backends(): Promise<BackendStatus[]>;
  /** until every backend is UP (or `names` are) */
  waitUp(names?: string[], ms?: number): Promise<void>;
  output(): string;
  stop(): Promise<void>;
}

const backendName = (b: HaproxyBackend, i: number) => b.name ?? `p${i + 1}`;

/** The generated configuration (also what deploy/haproxy.cfg shows, on loopback and with short timers). */
export function haproxyConfig(o: HaproxyOptions & { port: number; statsPort: number }): string {
  const inter = o.checkIntervalMs ?? 300;
  const send = o.proxyProtocol === 'none' ? '' : o.proxyProtocol === 'v2' ? ' send-proxy-v2' : ' send-proxy';
  const source = o.sourceAddress ? ` source ${o.sourceAddress}` : '';
  return [
    'global',
    '  maxconn 4096',
    '  nbthread 1',
    'defaults',
    '  mode tcp',
    '  timeout connect 2s',
    // SMTP sessions idle between messages; the proxy's own idleTimeout is what ends them
    '  timeout client 10m',
    '  timeout server 10m',
    '  timeout check 1s',
    'frontend smtp',
    `  bind ${o.bindHost ?? '127.0.0.1'}:${o.port}`,
    '  default_backend proxies',
    'backend proxies',
    // SMTP sessions are long: the instance with the fewest open ones gets the next
    '  balance leastconn',
    // a connection to a dead instance is tried again elsewhere; sessions on a backend marked down
    // are left alone (no on-marked-down shutdown-sessions): a draining proxy finishes them itself
    '  retries 2',
    '  option redispatch',
    '  option httpchk GET /readyz',
    '  http-check expect status 200',
    `  default-server inter ${inter}ms fall 2 rise 1`,
    ...o.backends.map(
      (b, i) =>
        `  server ${backendName(b, i)} ${b.host ?? '127.0.0.1'}:${b.smtpPort}${send}${source} check port ${b.httpPort}`,
    ),
    'listen stats',
    '  mode http',
    `  bind 127.0.0.1:${o.statsPort}`,
    '  timeout client 5s',
    '  stats enable',
    '  stats uri /',
    '',
  ].join('\n');
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

async function listening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Start haproxy and wait until its frontend accepts connections and every backend is UP. */
export async function startHaproxy(o: HaproxyOptions): Promise<Haproxy> {
  const bin = HAPROXY;
  if (!bin) throw new Error(NO_HAPROXY_MESSAGE);
  const host = o.bindHost ?? '127.0.0.1';
  const port = await freePort(host);
  const statsPort = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-haproxy-'));
  const configFile = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(configFile, haproxyConfig({ ...o, port, statsPort }));
  // -db: foreground, no daemon; -W not needed (no reloads)
  const child = spawn(bin, ['-db', '-f', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const deadline = Date.now() + 10_000;
  while (!(await listening(host, port))) {
    if (child.exitCode !== null) throw new Error(`haproxy exited: ${out}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`haproxy did not listen on ${host}:${port}: ${out}`);
    }
    await sleep(50);
  }
  const names = o.backends.map(backendName);
  const h: Haproxy = {
    host,
    port,
    configFile,
    async backends() {
      const csv = await (await fetch(`http://127.0.0.1:${statsPort}/;csv`)).text();
      const lines = csv.split('\n').filter((l) => l.trim());
      const header = lines[0]!.replace(/^# /, '').split(',');
      const col = (n: string) => header.indexOf(n);
      return lines
        .slice(1)
        .map((l) => l.split(','))
        .filter((f) => f[col('pxname')] === 'proxies' && names.includes(f[col('svname')]!))
        .map((f) => ({
          name: f[col('svname')]!,
          status: f[col('status')]!,
          current: Number(f[col('scur')]),
          total: Number(f[col('stot')]),
        }));
    },
    async waitUp(want = names, ms = 10_000) {
      await waitFor(
        `haproxy backends ${want.join(', ')} UP`,
        () => h.backends(),
        (bs) => want.every((n) => bs.find((b) => b.name === n)?.status === 'UP'),
        ms,
        50,
      );
    },
    output: () => out,
    async stop() {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited(child);
      clearTimeout(t);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await h.waitUp();
  } catch (err) {
    await h.stop();
    throw new Error(`${(err as Error).message}\nhaproxy output: ${out}`);
  }
  return h;
}
