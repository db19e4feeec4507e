// Micro-benchmark of the relay's upstream glue (issue 14): Relay.send -> UpstreamPools ->
// AccountPool -> UpstreamConnection against a minimal SMTP sink in a child process, so that
// process.cpuUsage() of this process is the relay side alone (no smtp-server, no client side).
// Reports CPU µs per message for sequential and concurrent sends.
//
//   node dist/tools/bench/glue.js [--n 20000] [--warmup 2000] [--concurrency 1,10] [--size 2048]
//                                 [--chunking] [--max-messages 100] [--sink-cpu N]
//
// On a shared machine, pin the two apart: `taskset -c 0 node ... --sink-cpu 1`.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { Metrics } from '../../metrics/metrics.js';
import { LiveStats } from '../../metrics/live.js';
import { silentLogger } from '../../shared/log.js';
import { Relay, newTransactionId } from '../../relay/relay.js';
import { UpstreamPools } from '../../upstream/pools.js';
import { InProcessHub } from '../../coordination/in-process.js';
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

async function runOne(port: number, o: Opts, concurrency: number): Promise<Record<string, number>> {
  const email = `bench${concurrency}@example.com`;
  const metrics = new Metrics({});
  const coord = new InProcessHub({ store: undefined as unknown as StateStore, log: silentLogger }).member();
  const pools = new UpstreamPools({
    tokens: { getToken: async () => 'token', invalidate: () => {} },
    log: silentLogger,
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
  const relay = new Relay({
    deliverer: pools,
    metrics,
    log: silentLogger,
    logMessages: false,
    maxInflightMessages: 1000,
    maxInflightBytes: 1 << 30,
    observer: new LiveStats(),
  });
  const account = { email, provider: { name: 'bench' }, config: {} } as unknown as Account;
  const head = 'From: a@example.com\r\nTo: b@example.net\r\nSubject: bench\r\n\r\n';
  const line = 'x'.repeat(76) + '\r\n';
  const body = Buffer.from(head + line.repeat(Math.max(1, Math.ceil((o.size - head.length) / line.length))));
  const envelope = { from: email, to: ['rcpt@example.net'], size: body.length };
  let failed = 0;

  const sendMany = async (count: number): Promise<void> => {
    let left = count;
    const worker = async () => {
      while (left > 0) {
        left--;
        const r = relay.reserve();
        r.add(body);
        const reply = await relay.send(account, envelope, r, newTransactionId());
        if (reply.code !== 250) failed++;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  };

  relay.prepare(account);
  await sendMany(o.warmup);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await sendMany(o.n);
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  // the scrape must still see a consistent state
  const text = await metrics.registry.metrics();
  const gauge = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1]);
  await pools.close(1000);
  return {
    concurrency,
    n: o.n,
    cpuUsPerMsg: Math.round(((cpu.user + cpu.system) / o.n) * 10) / 10,
    userUsPerMsg: Math.round((cpu.user / o.n) * 10) / 10,
    msgPerSec: Math.round((o.n / wall) * 1000),
    failed,
    inflightAtEnd: gauge('xoauth2_proxy_inflight_messages'),
    inflightBytesAtEnd: gauge('xoauth2_proxy_inflight_bytes'),
  };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--sink') return runSink(argv.includes('--chunking'));
  const o = parse(argv);
  const { child, port } = await startSink(o);
  try {
    for (const c of o.concurrency) console.log(JSON.stringify(await runOne(port, o, c)));
  } finally {
    child.disconnect();
  }
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
