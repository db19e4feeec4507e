// Micro-benchmark of the relay's upstream glue (issue 14): Relay.send -> UpstreamPools ->
// AccountPool -> UpstreamConnection against a minimal SMTP sink in a child process, so that
// process.cpuUsage() of this process is the relay side alone (no smtp-server, no client side).
// Reports CPU µs per message for sequential and concurrent sends.
//
//   node dist/tools/bench/glue.js [--n 20000] [--warmup 2000] [--concurrency 1,10] [--size 2048]
//                                 [--chunking] [--max-messages 100] [--sink-cpu N]
//                                 [--builds DIR,DIR --rounds R]
//
// --builds: an A/B in one process, e.g. `--builds dist-before,dist-after --rounds 10`: each build
// (its relay, pools and connections, from its own dist directory) sends --n messages in turn, in
// ABBA order, so that the noise of a shared machine falls on both alike; the median of the rounds
// is reported per build. Pinning the bench and its sink to one CPU (`taskset -c 1 node ...
// --sink-cpu 1`) keeps the cost of a wake-up from depending on where the scheduler put them.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as metricsMod from '../../metrics/metrics.js';
import * as liveMod from '../../metrics/live.js';
import * as logMod from '../../shared/log.js';
import * as relayMod from '../../relay/relay.js';
import * as poolsMod from '../../upstream/pools.js';
import * as hubMod from '../../coordination/in-process.js';
import type { StateStore } from '../../state/store.js';
import type { Account } from '../../accounts/registry.js';
import type { UpstreamAccount } from '../../upstream/types.js';

// -- the sink (child process) ---------------------------------------------------------------------

function runSink(chunking: boolean): void {
  const caps = ['PIPELINING', '8BITMIME', 'SIZE 52428800', 'AUTH XOAUTH2', ...(chunking ? ['CHUNKING'] : [])];
  const ehlo =
    ['250-sink', ...caps.slice(0, -1).map((c) => `250-${c}`), `250 ${caps.at(-1)}`].join('\r\n') + '\r\n';
  const server = net.createServer((sock) => {
    sock.setNoDelay(true);
    let buf = '';
    let inData = false;
    let bdatLeft = 0;
    let tail = '';
    sock.write('220 sink ready\r\n');
    sock.on('data', (chunk: Buffer) => {
      let out = '';
      let s = chunk.toString('latin1');
      while (s.length > 0) {
        if (bdatLeft > 0) {
          const take = Math.min(bdatLeft, s.length);
          bdatLeft -= take;
          s = s.slice(take);
          if (bdatLeft === 0) out += '250 2.0.0 ok queued\r\n';
          continue;
        }
        if (inData) {
          const seen = tail + s;
          const end = seen.indexOf('\r\n.\r\n');
          if (end < 0) {
            tail = seen.slice(-4);
            s = '';
            continue;
          }
          inData = false;
          tail = '';
          s = seen.slice(end + 5);
          out += '250 2.0.0 ok queued\r\n';
          continue;
        }
        buf += s;
        s = '';
        let nl: number;
        while (!inData && bdatLeft === 0 && (nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, '');
          buf = buf.slice(nl + 1);
          const verb = line.slice(0, 4).toUpperCase();
          if (verb === 'EHLO') out += ehlo;
          else if (verb === 'AUTH') out += '235 2.7.0 ok\r\n';
          else if (verb === 'MAIL' || verb === 'RCPT' || verb === 'RSET') out += '250 2.1.0 ok\r\n';
          else if (verb === 'DATA') {
            out += '354 go ahead\r\n';
            inData = true;
            tail = '\r\n'; // the body's first line may be the terminator
          } else if (verb === 'BDAT') {
            bdatLeft = Number(line.split(' ')[1]);
            if (bdatLeft === 0) out += '250 2.0.0 ok queued\r\n';
          } else if (verb === 'QUIT') {
            out += '221 bye\r\n';
            sock.end(out);
            return;
          } else out += '500 5.5.1 what\r\n';
        }
        if (inData || bdatLeft > 0) {
          s = buf;
          buf = '';
        }
      }
      if (out) sock.write(out);
    });
    sock.on('error', () => {});
  });
  server.listen(0, '127.0.0.1', () => process.send!((server.address() as net.AddressInfo).port));
  process.on('disconnect', () => process.exit(0));
}

// -- the driver -----------------------------------------------------------------------------------

interface Opts {
  n: number;
  warmup: number;
  concurrency: number[];
  size: number;
  chunking: boolean;
  maxMessages: number;
  /** run the sink on this CPU (taskset) */
  sinkCpu: number | undefined;
  /** dist directories to compare (empty: this build) */
  builds: string[];
  rounds: number;
}

function parse(argv: string[]): Opts {
  const o: Opts = {
    n: 20000,
    warmup: 2000,
    concurrency: [1, 10],
    size: 2048,
    chunking: false,
    maxMessages: 100,
    sinkCpu: undefined,
    builds: [],
    rounds: 1,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--n') o.n = Number(v());
    else if (a === '--warmup') o.warmup = Number(v());
    else if (a === '--concurrency') o.concurrency = v().split(',').map(Number);
    else if (a === '--size') o.size = Number(v());
    else if (a === '--chunking') o.chunking = true;
    else if (a === '--max-messages') o.maxMessages = Number(v());
    else if (a === '--sink-cpu') o.sinkCpu = Number(v());
    else if (a === '--builds') o.builds = v().split(',');
    else if (a === '--rounds') o.rounds = Number(v());
    else throw new Error(`unknown option ${a}`);
  }
  return o;
}

function startSink(o: Opts): Promise<{ child: ChildProcess; port: number }> {
  const args = [fileURLToPath(import.meta.url), '--sink', ...(o.chunking ? ['--chunking'] : [])];
  const stdio = ['inherit', 'inherit', 'inherit', 'ipc'] as const;
  const child =
    o.sinkCpu === undefined
      ? spawn(process.execPath, args, { stdio: [...stdio] })
      : spawn('taskset', ['-c', String(o.sinkCpu), process.execPath, ...args], { stdio: [...stdio] });
  return new Promise((resolve, reject) => {
    child.once('message', (port) => resolve({ child, port: port as number }));
    child.once('error', reject);
  });
}

/** The modules the bench drives, from this build or from another dist directory. */
interface Mods {
  metrics: typeof metricsMod;
  live: typeof liveMod;
  log: typeof logMod;
  relay: typeof relayMod;
  pools: typeof poolsMod;
  hub: typeof hubMod;
}

const THIS_BUILD: Mods = {
  metrics: metricsMod,
  live: liveMod,
  log: logMod,
  relay: relayMod,
  pools: poolsMod,
  hub: hubMod,
};

async function loadBuild(dir: string): Promise<Mods> {
  const load = (file: string) => import(pathToFileURL(path.resolve(dir, file)).href);
  return {
    metrics: await load('metrics/metrics.js'),
    live: await load('metrics/live.js'),
    log: await load('shared/log.js'),
    relay: await load('relay/relay.js'),
    pools: await load('upstream/pools.js'),
    hub: await load('coordination/in-process.js'),
  };
}

/** One build's relay, pools and metrics for one concurrency, and a way to send `count` messages. */
interface Rig {
  send(count: number): Promise<void>;
  failed(): number;
  close(): Promise<Record<string, number>>;
}

function makeRig(m: Mods, port: number, o: Opts, concurrency: number, id: number): Rig {
  const email = `bench${concurrency}-${id}@example.com`;
  const silent = m.log.silentLogger;
  const metrics = new m.metrics.Metrics({});
  const coord = new m.hub.InProcessHub({ store: undefined as unknown as StateStore, log: silent }).member();
  const pools = new m.pools.UpstreamPools({
    tokens: { getToken: async () => 'token', invalidate: () => {} },
    log: silent,
    metrics,
    coord,
  });
  const upstream: UpstreamAccount = {
    email,
    providerName: 'bench',
    smtp: { host: '127.0.0.1', port, security: 'none', rejectUnauthorized: true },
    ehloName: 'glue.bench',
    maxConnections: concurrency,
    maxMessagesPerConnection: o.maxMessages,
    messagesPerMinute: 0,
    idleTimeoutMs: 60_000,
    maxAgeMs: 0,
    acquireTimeoutMs: 10_000,
    commandTimeoutMs: 30_000,
  };
  pools.setAccounts([upstream]);
  const relay = new m.relay.Relay({
    deliverer: pools,
    metrics,
    log: silent,
    logMessages: false,
    maxInflightMessages: 1000,
    maxInflightBytes: 1 << 30,
    observer: new m.live.LiveStats(),
  });
  const account = { email, provider: { name: 'bench' }, config: {} } as unknown as Account;
  const head = 'From: a@example.com\r\nTo: b@example.net\r\nSubject: bench\r\n\r\n';
  const line = 'x'.repeat(76) + '\r\n';
  const body = Buffer.from(head + line.repeat(Math.max(1, Math.ceil((o.size - head.length) / line.length))));
  const envelope = { from: email, to: ['rcpt@example.net'], size: body.length };
  let failed = 0;
  relay.prepare(account);
  return {
    async send(count) {
      let left = count;
      const worker = async () => {
        while (left > 0) {
          left--;
          const r = relay.reserve();
          r.add(body);
          const reply = await relay.send(account, envelope, r, m.relay.newTransactionId());
          if (reply.code !== 250) failed++;
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
    },
    failed: () => failed,
    async close() {
      // the scrape must still see a consistent state
      const text = await metrics.registry.metrics();
      const gauge = (name: string) =>
        Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1]);
      await pools.close(1000);
      return {
        inflightAtEnd: gauge('xoauth2_proxy_inflight_messages'),
        inflightBytesAtEnd: gauge('xoauth2_proxy_inflight_bytes'),
      };
    },
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round1 = (x: number) => Math.round(x * 10) / 10;

async function runConcurrency(
  builds: { label: string; mods: Mods }[],
  port: number,
  o: Opts,
  concurrency: number,
): Promise<void> {
  const rigs = builds.map((b, i) => makeRig(b.mods, port, o, concurrency, i));
  for (const r of rigs) await r.send(o.warmup);
  const cpu: number[][] = rigs.map(() => []);
  const user: number[][] = rigs.map(() => []);
  const rate: number[][] = rigs.map(() => []);
  for (let round = 0; round < o.rounds; round++) {
    // ABBA: neither build always goes first
    const order = rigs.map((_, i) => i);
    if (round % 2 === 1) order.reverse();
    for (const i of order) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await rigs[i].send(o.n);
      const wall = performance.now() - t0;
      const c = process.cpuUsage(c0);
      cpu[i].push(round1((c.user + c.system) / o.n));
      user[i].push(round1(c.user / o.n));
      rate[i].push(Math.round((o.n / wall) * 1000));
    }
  }
  for (let i = 0; i < rigs.length; i++) {
    const end = await rigs[i].close();
    console.log(
      JSON.stringify({
        build: builds[i].label,
        concurrency,
        n: o.n,
        rounds: o.rounds,
        cpuUsPerMsg: median(cpu[i]),
        userUsPerMsg: median(user[i]),
        msgPerSec: median(rate[i]),
        ...(o.rounds > 1 ? { cpuRounds: cpu[i] } : {}),
        failed: rigs[i].failed(),
        ...end,
      }),
    );
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--sink') return runSink(argv.includes('--chunking'));
  const o = parse(argv);
  const builds =
    o.builds.length === 0
      ? [{ label: 'this', mods: THIS_BUILD }]
      : await Promise.all(o.builds.map(async (dir) => ({ label: dir, mods: await loadBuild(dir) })));
  const { child, port } = await startSink(o);
  try {
    for (const c of o.concurrency) await runConcurrency(builds, port, o, c);
  } finally {
    child.disconnect();
  }
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
