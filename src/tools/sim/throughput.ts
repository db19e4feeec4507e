// Measures how many messages per second the simulator accepts, so benchmarks can show it is not the
// bottleneck. The simulator runs on the main thread; the pipelined XOAUTH2 client runs in worker
// threads, so the simulator gets a core of its own and its event-loop utilization is reported.
//
//   node dist/tools/sim/throughput.js [--messages N] [--connections C] [--size BYTES] [--client-threads T]
//                               [--pipeline-next]
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { OptionValues } from 'commander';
import type { HostPort } from '../../config/types.js';
import { startSimulator } from './simulator.js';
import { simRefreshToken } from './state.js';
import { numberOption, parseToolArgs, runTool, toolCommand, type Tool } from '../harness/tool-cli.js';

export interface ThroughputOptions {
  messages: number;
  connections: number;
  /** approximate message size in bytes */
  size: number;
  clientThreads: number;
  /**
   * false (default): MAIL+RCPT+DATA pipelined, wait for 354, send body+dot, wait for 250.
   * true: also send the next MAIL+RCPT+DATA right after the dot (RFC 2920 allows it), so each message
   * costs one round trip and the simulator one write: this shows the simulator's own ceiling.
   */
  pipelineNext: boolean;
}

export interface ThroughputResult extends ThroughputOptions {
  seconds: number;
  messagesPerSec: number;
  /** simulator (main thread) event-loop utilization while the client ran: near 1 = the simulator was the limit */
  simulatorUtilization: number;
  stored: number;
}

interface ClientJob {
  smtp: HostPort;
  users: { email: string; token: string }[];
  messages: number;
  size: number;
  /** prefix for Message-IDs, unique per worker */
  tag: string;
  pipelineNext: boolean;
}

type Expected = 'greeting' | 'ehlo' | 'auth' | 'mail' | 'rcpt' | 'data' | 'stored';
const WANT: Record<Expected, string> = {
  greeting: '220',
  ehlo: '250',
  auth: '235',
  mail: '250',
  rcpt: '250',
  data: '354',
  stored: '250',
};

/** One SMTP connection of the load client: replies are matched FIFO against what was sent. */
function runConnection(
  job: ClientJob,
  user: { email: string; token: string },
  next: () => number,
): Promise<number> {
  const filler = Buffer.from(('x'.repeat(76) + '\r\n').repeat(Math.max(1, Math.ceil((job.size - 200) / 78))));
  const envelope = `MAIL FROM:<${user.email}> SIZE=${job.size}\r\nRCPT TO:<rcpt@example.com>\r\nDATA\r\n`;
  const auth = Buffer.from(`user=${user.email}\x01auth=Bearer ${user.token}\x01\x01`).toString('base64');
  return new Promise((resolve, reject) => {
    const socket = net.connect(job.smtp);
    socket.setNoDelay(true);
    const expected: Expected[] = ['greeting'];
    let buf = '';
    let sent = 0;
    let current = -1; // number of the message whose envelope was sent last
    const sendEnvelope = (): boolean => {
      current = next();
      if (current < 0) return false;
      socket.write(envelope);
      expected.push('mail', 'rcpt', 'data');
      return true;
    };
    const finish = () => {
      socket.end('QUIT\r\n');
      resolve(sent);
    };
    socket.setEncoding('latin1');
    socket.on('error', reject);
    socket.on('data', (text: string) => {
      buf += text;
      let nl: number;
      while ((nl = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (line.charCodeAt(3) === 45 /* - */) continue; // continuation of a multi-line reply
        const kind = expected.shift();
        if (kind === undefined || !line.startsWith(WANT[kind])) {
          socket.destroy();
          return reject(new Error(`unexpected reply to ${kind ?? 'nothing'}: ${line}`));
        }
        switch (kind) {
          case 'greeting':
            socket.write('EHLO throughput.test\r\n');
            expected.push('ehlo');
            break;
          case 'ehlo':
            socket.write(`AUTH XOAUTH2 ${auth}\r\n`);
            expected.push('auth');
            break;
          case 'auth':
            if (!sendEnvelope()) finish();
            break;
          case 'data':
            socket.cork();
            socket.write(
              `From: <${user.email}>\r\nTo: <rcpt@example.com>\r\nSubject: throughput\r\n` +
                `Message-ID: <${job.tag}.${current}@throughput.test>\r\n\r\n`,
            );
            socket.write(filler);
            socket.write('.\r\n');
            expected.push('stored');
            if (job.pipelineNext) sendEnvelope();
            socket.uncork();
            break;
          case 'stored':
            sent++;
            if (job.pipelineNext ? expected.length === 0 : !sendEnvelope()) finish();
            break;
          default:
            break;
        }
      }
    });
  });
}

async function runClient(job: ClientJob): Promise<number> {
  let issued = 0;
  const next = () => (issued < job.messages ? issued++ : -1);
  const counts = await Promise.all(job.users.map((u) => runConnection(job, u, next)));
  return counts.reduce((a, b) => a + b, 0);
}

export async function measureThroughput(opts: ThroughputOptions): Promise<ThroughputResult> {
  const sim = await startSimulator({
    smtp: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
    maxConnectionsPerUser: 0,
  });
  try {
    // Tokens come from the simulator's real token endpoint, one user per connection.
    const users: { email: string; token: string }[] = [];
    for (let i = 0; i < opts.connections; i++) {
      const email = `load${i}@throughput.test`;
      const res = await fetch(sim.tokenUrl, {
        method: 'POST',
        body: new URLSearchParams({
          grant_type: 'refresh_token',
          client_id: 'throughput',
          refresh_token: simRefreshToken(email),
        }),
      });
      users.push({ email, token: ((await res.json()) as { access_token: string }).access_token });
    }
    const threads = Math.max(1, Math.min(opts.clientThreads, opts.connections));
    const jobs: ClientJob[] = [];
    for (let t = 0; t < threads; t++) {
      const mine = users.filter((_, i) => i % threads === t);
      const share = Math.floor(opts.messages / threads) + (t < opts.messages % threads ? 1 : 0);
      jobs.push({
        smtp: sim.smtp,
        users: mine,
        messages: share,
        size: opts.size,
        tag: `w${t}`,
        pipelineNext: opts.pipelineNext,
      });
    }
    const elu0 = performance.eventLoopUtilization();
    const started = performance.now();
    const sent = await Promise.all(
      jobs.map(
        (job) =>
          new Promise<number>((resolve, reject) => {
            const w = new Worker(fileURLToPath(import.meta.url), { workerData: job });
            w.once('message', (m: { sent?: number; error?: string }) =>
              m.error ? reject(new Error(m.error)) : resolve(m.sent!),
            );
            w.once('error', reject);
          }),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    const elu = performance.eventLoopUtilization(elu0);
    const total = sent.reduce((a, b) => a + b, 0);
    const stored = sim.stats().messages;
    return {
      ...opts,
      seconds,
      messagesPerSec: total / seconds,
      simulatorUtilization: elu.utilization,
      stored,
    };
  } finally {
    await sim.close();
  }
}

const throughputTool: Tool<ThroughputOptions> = {
  program: () =>
    toolCommand('node dist/tools/sim/throughput.js', 'how many messages per second the simulator accepts')
      .option('--messages <n>', 'messages to send', '100000')
      .option('--connections <n>', 'client connections', '16')
      .option('--size <bytes>', 'approximate message size', '2048')
      .option('--client-threads <n>', 'worker threads running the client', '1')
      .option('--pipeline-next', "send the next envelope right after the dot (the simulator's own ceiling)"),
  check: (v: OptionValues): ThroughputOptions => ({
    messages: numberOption('messages', v.messages, 1, true),
    connections: numberOption('connections', v.connections, 1, true),
    size: numberOption('size', v.size, 1, true),
    clientThreads: numberOption('client-threads', v.clientThreads, 1, true),
    pipelineNext: v.pipelineNext === true,
  }),
};

export const parseThroughputArgs = (argv: string[]): ThroughputOptions => parseToolArgs(throughputTool, argv);

if (!isMainThread && parentPort) {
  runClient(workerData as ClientJob).then(
    (sent) => parentPort!.postMessage({ sent }),
    (err: Error) => parentPort!.postMessage({ error: err.message }),
  );
} else {
  runTool(import.meta.url, 'throughput', throughputTool, async (opts) => {
    const r = await measureThroughput(opts);
    console.log(
      `${r.stored} messages (${r.size} B) over ${r.connections} connections in ${r.seconds.toFixed(2)} s: ` +
        `${Math.round(r.messagesPerSec)} msg/s${r.pipelineNext ? ' (next envelope pipelined after the dot)' : ''}; simulator event-loop utilization ${(r.simulatorUtilization * 100).toFixed(0)}%`,
    );
    console.log(JSON.stringify(r));
    if (r.stored === r.messages) return 0;
    console.error(`expected ${r.messages} stored messages, the simulator has ${r.stored}`);
    return 1;
  });
}
