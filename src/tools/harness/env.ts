// The system under test for `bench`: the simulator and a proxy, each a `node dist/cli.js` child
// process on loopback, with a generated config of N accounts `bench<i>@example.com` on a provider
// `sim`. Children are killed on close(), on process exit, and on SIGINT/SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { binNodeFlags } from './bin-flags.js';
import { freePort } from './ports.js';

/** dist/cli.js next to this file's dist/bench/ */
export const CLI_PATH = fileURLToPath(new URL('../../cli.js', import.meta.url));

export const STYLES = ['google', 'microsoft'] as const;
export type Style = (typeof STYLES)[number];

/** The upstream a tool's report ran against, e.g. "microsoft-style provider, upstream over STARTTLS". */
export function describeUpstream(style: Style | undefined, tls: boolean | undefined): string {
  return `${style ?? 'google'}-style provider, upstream ${tls ? 'over STARTTLS' : 'plain'}`;
}

export interface EnvOptions {
  mailboxes: number;
  connections: number;
  /** proxy -> simulator over STARTTLS with the simulator's certificate */
  tls: boolean;
  userPrefix: string;
  userDomain: string;
  recipients: number;
  /** default: CLI_PATH */
  cli?: string;
  /** ms to wait for each child to be ready (default 60 s) */
  startTimeoutMs?: number;
  /** extra `simulate` flags, e.g. ['--token-lifetime', '60'] */
  simArgs?: string[];
  /**
   * the provider the simulator plays (default google); microsoft also rotates refresh tokens on
   * every refresh, as Azure AD does, so the proxy must keep each new one
   */
  style?: Style;
  /** log level of the proxy (default warn) */
  proxyLogLevel?: string;
  /**
   * the proxy logs as `serve` does for a user (the config's defaults: info, one line per message),
   * as `bench` measures it; proxyLogLevel is then ignored. Default: warn, no message lines.
   */
  logAsServed?: boolean;
  /** merged into the proxy's `smtp:` config section (e.g. a short idleTimeout, a small maxClients) */
  smtpOverrides?: Record<string, unknown>;
  /** extra `serve` arguments after `-c FILE`, e.g. ['--workers', '2'] */
  proxyArgs?: string[];
  /** run the proxy under `taskset -c LIST` (a CPU list such as "0" or "0-1"); its workers inherit it */
  proxyCpus?: string;
  /** run the simulator under `taskset -c LIST` */
  simCpus?: string;
}

/** `node ARGS`, or `taskset -c CPUS node ARGS` (taskset execs node: the pid is node's). */
function spawnNode(args: string[], cpus: string | undefined): ChildProcess {
  const [cmd, argv] = cpus ? ['taskset', ['-c', cpus, process.execPath, ...args]] : [process.execPath, args];
  return spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
}

export interface SimInfo {
  smtp: string;
  smtpTls: string | null;
  http: string;
  tokenUrl: string;
}

export interface BenchEnv {
  sim: SimInfo;
  simPid: number;
  simHost: string;
  simPort: number;
  /** the simulator's certificate (PEM), for TLS clients */
  caPem: string;
  proxyPid: number;
  /** resolves with the proxy's exit code (null if killed by a signal) when it exits */
  proxyExit: Promise<number | null>;
  proxyHost: string;
  proxySmtpPort: number;
  proxyHttpPort: number;
  /** client password of every account */
  password: string;
  users: string[];
  /** provider maxConnectionsPerAccount written to the config */
  upstreamConnectionsPerAccount: number;
  /** the simulator's --max-connections-per-user */
  simConnectionsPerUser: number;
  /** how the proxy was started: what it inherited beyond `serve -c FILE`, and its log settings */
  proxyRun: { glibcTunables: string | null; nodeArgs: string | null; log: string };
  configFile: string;
  /** GET the simulator's /stats */
  simStats(ids?: boolean): Promise<SimStatsLike>;
  /** POST /control/reset: clear the simulator's counters and ids */
  simReset(): Promise<void>;
  /** POST a JSON body to the simulator's /control/<what> (faults, revoke, reset) */
  simControl(what: string, body: unknown): Promise<void>;
  close(): Promise<void>;
}

export interface SimStatsLike {
  messages: number;
  messageIds?: string[];
  messageIdsCapped?: boolean;
  [k: string]: unknown;
}

// ---- child process bookkeeping ------------------------------------------------------------------

const children = new Set<ChildProcess>();
let hooked = false;
function track(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const c of children) c.kill('SIGKILL');
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      for (const c of children) c.kill('SIGKILL');
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
}

/** Keep the last `max` characters a child printed, for error messages. */
function tail(child: ChildProcess, max = 16_384): () => string {
  let out = '';
  const add = (d: Buffer) => {
    out += d.toString('utf8');
    if (out.length > max * 2) out = out.slice(-max);
  };
  child.stdout?.on('data', add);
  child.stderr?.on('data', add);
  return () => out.slice(-max);
}

async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

// ---- start -------------------------------------------------------------------------------------

async function startSimulator(
  cli: string,
  dir: string,
  o: EnvOptions,
  perUser: number,
  timeoutMs: number,
): Promise<{ child: ChildProcess; info: SimInfo; caPem: string; output: () => string }> {
  const caFile = path.join(dir, 'sim-ca.pem');
  const args = [
    cli,
    'simulate',
    '--smtp',
    '127.0.0.1:0',
    '--http',
    '127.0.0.1:0',
    '--ca-out',
    caFile,
    '--max-connections-per-user',
    String(perUser),
    ...(o.style === 'microsoft' ? ['--style', 'microsoft', '--rotate-refresh-tokens'] : []),
    ...(o.simArgs ?? []),
  ];
  const child = spawnNode(args, o.simCpus);
  track(child);
  const output = tail(child);
  const rl = readline.createInterface({ input: child.stdout! });
  const info = await new Promise<SimInfo>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`simulator did not report listening within ${timeoutMs} ms:\n${output()}`));
    }, timeoutMs);
    rl.on('line', (line) => {
      if (!line.startsWith('{')) return;
      try {
        const j = JSON.parse(line) as SimInfo & { event?: string };
        if (j.event === 'listening') {
          clearTimeout(timer);
          resolve(j);
        }
      } catch {}
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`simulator exited (${code}) before listening:\n${output()}`));
    });
  });
  rl.close();
  const caPem = fs.readFileSync(caFile, 'utf8'); // tiny file, start-up only
  return { child, info, caPem, output };
}

function splitHostPort(hp: string): { host: string; port: number } {
  const i = hp.lastIndexOf(':');
  return { host: hp.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(hp.slice(i + 1)) };
}

/** The proxy could not bind a port picked for it (taken in between). */
class PortTaken extends Error {}

interface StartedProxy {
  proxy: ChildProcess;
  proxyExit: Promise<number | null>;
  smtpPort: number;
  httpPort: number;
}

export async function startBenchEnv(o: EnvOptions): Promise<BenchEnv> {
  const cli = o.cli ?? CLI_PATH;
  if (!fs.existsSync(cli)) throw new Error(`${cli} not found: build first (npx tsc -p tsconfig.json)`);
  const timeoutMs = o.startTimeoutMs ?? 60_000;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xoauth2-bench-'));
  const started: ChildProcess[] = [];
  const cleanup = async () => {
    await Promise.all(started.map((c) => stopChild(c)));
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    // Connections per mailbox: the direct run opens ceil(C/N) per user; the proxy keeps up to
    // `upstream` per account, and its idle ones may still be open during the next direct run.
    const clientPerUser = Math.ceil(o.connections / o.mailboxes);
    const upstream = Math.max(3, clientPerUser);
    const simPerUser = upstream + clientPerUser;
    const sim = await startSimulator(cli, dir, o, simPerUser, timeoutMs);
    started.push(sim.child);
    const simSmtp = splitHostPort(sim.info.smtp);
    const simHttp = `http://${sim.info.http}`;
    const simControl = async (what: string, body: unknown) => {
      const r = await fetch(`${simHttp}/control/${what}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const text = await r.text();
      if (!r.ok) throw new Error(`simulator /control/${what}: HTTP ${r.status} ${text}`);
    };

    const password = randomBytes(12).toString('base64url');
    // one key for every start: a start that failed may already have sealed state with it
    const secretKey = randomBytes(32).toString('base64url');
    const users = Array.from({ length: o.mailboxes }, (_, i) => `${o.userPrefix}${i}@${o.userDomain}`);
    const startProxy = async (smtpPort: number, httpPort: number): Promise<StartedProxy> => {
      const config = {
        smtp: {
          listen: [`127.0.0.1:${smtpPort}`],
          hostname: 'bench.localhost',
          maxClients: Math.max(1000, o.connections * 2),
          maxRecipients: Math.max(100, o.recipients),
          ...o.smtpOverrides,
        },
        http: { listen: `127.0.0.1:${httpPort}` },
        state: { dir: path.join(dir, 'data'), secretKey },
        ...(o.logAsServed ? {} : { log: { level: o.proxyLogLevel ?? 'warn', messages: false } }),
        providers: {
          sim: {
            tokenUrl: sim.info.tokenUrl,
            scope:
              o.style === 'microsoft'
                ? 'https://outlook.office.com/SMTP.Send offline_access'
                : 'https://mail.google.com/',
            smtp: o.tls
              ? {
                  host: simSmtp.host,
                  port: simSmtp.port,
                  security: 'starttls',
                  ca: path.join(dir, 'sim-ca.pem'),
                }
              : { host: simSmtp.host, port: simSmtp.port, security: 'none' },
            maxConnectionsPerAccount: upstream,
          },
        },
        accounts: users.map((email) => ({
          email,
          provider: 'sim',
          clientId: 'bench-client',
          refreshToken: `simrt.${email}.bench`,
          password,
        })),
      };
      fs.writeFileSync(configFile, YAML.stringify(config), { mode: 0o600 });
      // As a user starts it: nothing added to the environment (a GLIBC_TUNABLES of the caller's is
      // inherited, and reported, so the two can be compared)
      const proxy = spawnNode(
        [...nodeArgs, cli, 'serve', '-c', configFile, ...(o.proxyArgs ?? [])],
        o.proxyCpus,
      );
      track(proxy);
      started.push(proxy);
      const proxyExit = new Promise<number | null>((resolve) => proxy.once('exit', (code) => resolve(code)));
      const proxyOutput = tail(proxy);
      // XO_BENCH_PROXY_OUTPUT: also append the proxy's stdout/stderr to this file (e.g. with --trace-gc)
      const outFile = process.env.XO_BENCH_PROXY_OUTPUT;
      if (outFile) {
        const out = fs.createWriteStream(outFile, { flags: 'a' });
        proxy.stdout?.pipe(out);
        proxy.stderr?.pipe(out);
      }
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (proxy.exitCode !== null) {
          const out = proxyOutput();
          started.splice(started.indexOf(proxy), 1);
          if (/EADDRINUSE/.test(out)) throw new PortTaken(out);
          throw new Error(`proxy exited (${proxy.exitCode}):\n${out}`);
        }
        try {
          const r = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
          await r.arrayBuffer();
          if (r.status === 200) break;
        } catch {}
        if (Date.now() > deadline)
          throw new Error(`proxy not ready within ${timeoutMs} ms:\n${proxyOutput()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      return { proxy, proxyExit, smtpPort, httpPort };
    };
    const configFile = path.join(dir, 'xoauth2-proxy.yaml');
    // XO_BENCH_PROXY_NODE_ARGS: extra node flags for the proxy, e.g. `--cpu-prof` (docs/performance.md)
    // As `xoauth2-proxy serve` starts it: the executable's own node flags (its shebang line) first
    const nodeArgs = [
      ...binNodeFlags(cli),
      ...(process.env.XO_BENCH_PROXY_NODE_ARGS ?? '').split(/\s+/).filter(Boolean),
    ];
    // The ports are free when picked but bound only when the proxy starts: another process (a test
    // running beside this one) can take one in between. A start refused with EADDRINUSE is retried
    // on fresh ports; any other failure is reported at once.
    let started_: StartedProxy | undefined;
    for (let attempt = 1; !started_; attempt++) {
      try {
        started_ = await startProxy(await freePort(), await freePort());
      } catch (err) {
        if (!(err instanceof PortTaken) || attempt >= 3) throw err;
      }
    }
    const { proxy, proxyExit, smtpPort, httpPort } = started_;
    return {
      sim: sim.info,
      simPid: sim.child.pid!,
      simHost: simSmtp.host,
      simPort: simSmtp.port,
      caPem: sim.caPem,
      proxyPid: proxy.pid!,
      proxyExit,
      proxyHost: '127.0.0.1',
      proxySmtpPort: smtpPort,
      proxyHttpPort: httpPort,
      password,
      users,
      upstreamConnectionsPerAccount: upstream,
      simConnectionsPerUser: simPerUser,
      proxyRun: {
        glibcTunables: process.env.GLIBC_TUNABLES || null,
        nodeArgs: nodeArgs.length ? nodeArgs.join(' ') : null,
        log: o.logAsServed
          ? 'as served (info, a line per message)'
          : `${o.proxyLogLevel ?? 'warn'}, no message lines`,
      },
      configFile,
      async simStats(ids = true) {
        const r = await fetch(`${simHttp}/stats${ids ? '' : '?ids=0'}`);
        if (!r.ok) throw new Error(`simulator /stats: HTTP ${r.status}`);
        return (await r.json()) as SimStatsLike;
      },
      simReset: () => simControl('reset', {}),
      simControl,
      close: cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Fetch an access token per user from the simulator's token endpoint (refresh_token grant). */
export async function fetchTokens(
  tokenUrl: string,
  users: readonly string[],
  concurrency = 16,
): Promise<Map<string, string>> {
  const tokens = new Map<string, string>();
  let next = 0;
  const worker = async () => {
    while (next < users.length) {
      const user = users[next++]!;
      const body = new URLSearchParams({
        grant_type: 'refresh_token',
        client_id: 'bench-client',
        refresh_token: `simrt.${user}.bench`,
      });
      const r = await fetch(tokenUrl, { method: 'POST', body });
      const j = (await r.json()) as { access_token?: string; error?: string; error_description?: string };
      if (!r.ok || !j.access_token)
        throw new Error(
          `token for ${user}: HTTP ${r.status} ${j.error ?? ''} ${j.error_description ?? ''}`.trim(),
        );
      tokens.set(user, j.access_token);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, users.length) }, worker));
  return tokens;
}
