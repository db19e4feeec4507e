// Where the proxy's CPU goes, from a Linux `perf` recording (docs/performance.md, "How to profile"):
//
//   XO_BENCH_PROXY_NODE_ARGS=--perf-basic-prof-only-functions node dist/cli.js bench ... &
//   perf record -F 2000 -g -p <proxy pid> -o perf.data -- sleep 6
//   node dist/tools/bench/perf-summary.js --data perf.data [--us-per-message N]
//
// Unlike `node --cpu-prof`, which samples the main thread's wall clock (a write(2) that gets the
// thread preempted looks expensive there), perf samples CPU time, kernel included, on every thread.
// Each sample goes to one bucket by its stack: the syscall it is in, else the innermost JavaScript
// frame's module, else the native code it is in.
import { execFileSync } from 'node:child_process';
import type { OptionValues } from 'commander';
import { numberOption, parseToolArgs, runTool, toolCommand, type Tool } from '../harness/tool-cli.js';

export const BUCKETS = [
  'socket writes (syscalls, TCP loopback processing)',
  'socket writes through TLS (encryption + syscalls)',
  'socket reads (syscalls)',
  'event loop: epoll, sleeping and waking (kernel)',
  'TLS crypto (OpenSSL, handshakes and records)',
  'GC',
  'JIT compilers',
  'smtp-server (parsing, command dispatch, its streams)',
  'client SMTP side (src/smtp: session, parser, DATA reader)',
  'node streams, net, events (JavaScript)',
  'timers, ticks, promise jobs',
  'relay glue (our code)',
  'logging',
  'metrics (prom-client)',
  'malloc/free',
  'other JavaScript',
  'other native',
  'other kernel',
] as const;
export type Bucket = (typeof BUCKETS)[number];

const any = (frames: readonly string[], re: RegExp) => frames.some((f) => re.test(f));

/** The bucket of one sample; `frames` is its stack from the leaf up, as `perf script` prints it. */
export function bucketOf(frames: readonly string[]): Bucket {
  const leafKernel = /\[kernel/.test(frames[0] ?? '');
  const js = frames.find((f) => f.includes('JS:')) ?? '';
  const tls = any(frames, /TLSWrap|SSL_write|ssl3_write/);
  if (any(frames, /Scavenger|Heap::|MarkCompact|ConcurrentMarking|Sweeper|IncrementalMarking/)) return 'GC';
  if (!js && any(frames, /compiler::|Maglev|TurboFan|Compiler::/)) return 'JIT compilers';
  if (any(frames, /DoTryWrite|__GI___writev|__GI___libc_write|uv__write|uv_try_write/))
    return tls
      ? 'socket writes through TLS (encryption + syscalls)'
      : 'socket writes (syscalls, TCP loopback processing)';
  if (any(frames, /SSL_|ssl3_|tls1_|tls13_|EVP_|aesni|gcm|ossl_|ecp_nistz|X509|OPENSSL|CRYPTO_/))
    return 'TLS crypto (OpenSSL, handshakes and records)';
  if (leafKernel && any(frames, /uv__read|__GI___read|readv/)) return 'socket reads (syscalls)';
  if (leafKernel && !js && any(frames, /epoll_pwait|epoll_wait|uv__io_poll|schedule/))
    return 'event loop: epoll, sleeping and waking (kernel)';
  if (/malloc|free|unlink_chunk/.test(frames[0] ?? '') && !js) return 'malloc/free';
  if (leafKernel && !js) return 'other kernel';
  if (/pino|sonic-boom|redact|shared\/log\.js/.test(js)) return 'logging';
  if (/prom-client|\/metrics\//.test(js)) return 'metrics (prom-client)';
  if (/smtp-server|punycode|ipv6-normalize/.test(js))
    return 'smtp-server (parsing, command dispatch, its streams)';
  if (/\/smtp\/(session|server|listener|wire\/[\w-]+)\.js/.test(js))
    return 'client SMTP side (src/smtp: session, parser, DATA reader)';
  if (/\/(smtp|relay|upstream|accounts|shared|app|oauth|state|config)\/[\w-]+\.js/.test(js))
    return 'relay glue (our code)';
  if (/timers|task_queues|processTicksAndRejections|promises/.test(js) || any(frames, /RunMicrotasks/))
    return 'timers, ticks, promise jobs';
  if (/node:(internal\/streams|net|events|buffer|internal\/stream_base_commons|_tls_wrap|tls)/.test(js))
    return 'node streams, net, events (JavaScript)';
  if (js) return 'other JavaScript';
  return 'other native';
}

export interface PerfSummary {
  samples: number;
  /** samples per thread id; the proxy's main thread has the process id */
  threads: Map<string, number>;
  buckets: Map<Bucket, number>;
}

/** Sum `perf script -F tid,ip,sym,dso` output (samples separated by blank lines) into buckets. */
export function summarizePerfScript(text: string): PerfSummary {
  const out: PerfSummary = { samples: 0, threads: new Map(), buckets: new Map() };
  for (const block of text.split('\n\n')) {
    const lines = block.split('\n').filter((l) => l.trim() !== '');
    if (lines.length === 0) continue;
    const tid = lines[0]!.trim().split(/\s+/)[0]!;
    const frames = lines.slice(1).map((l) => l.trim().replace(/^[0-9a-f]+ /, ''));
    const b = bucketOf(frames);
    out.samples++;
    out.threads.set(tid, (out.threads.get(tid) ?? 0) + 1);
    out.buckets.set(b, (out.buckets.get(b) ?? 0) + 1);
  }
  return out;
}

/** A markdown table: share of the samples per bucket, and µs per message when the total is given. */
export function formatSummary(s: PerfSummary, usPerMessage?: number): string {
  const rows = [...s.buckets].sort((a, b) => b[1] - a[1]);
  const lines = [
    `${s.samples} samples; per thread: ${[...s.threads].map(([t, n]) => `${t} ${n}`).join(', ')}`,
    '',
    usPerMessage === undefined ? '| where | share |' : '| where | share | µs/msg |',
    usPerMessage === undefined ? '|---|---|' : '|---|---|---|',
  ];
  for (const [b, n] of rows) {
    const share = n / s.samples;
    lines.push(
      `| ${b} | ${(100 * share).toFixed(1)} % |` +
        (usPerMessage === undefined ? '' : ` ${(share * usPerMessage).toFixed(0)} |`),
    );
  }
  return lines.join('\n');
}

interface Options {
  data: string;
  usPerMessage?: number;
}

const tool: Tool<Options> = {
  program: () =>
    toolCommand(
      'node dist/tools/bench/perf-summary.js',
      'where the CPU of a perf recording of the proxy goes',
    )
      .requiredOption('--data <perf.data>', 'a `perf record -g` of the proxy')
      .option('--us-per-message <n>', "the run's proxy CPU per message (bench: proxy.cpuUsPerMessage)"),
  check: (v: OptionValues): Options => ({
    data: v.data as string,
    ...(v.usPerMessage !== undefined
      ? { usPerMessage: numberOption('us-per-message', v.usPerMessage, 1) }
      : {}),
  }),
};

export const parsePerfSummaryArgs = (argv: string[]): Options => parseToolArgs(tool, argv);

runTool(import.meta.url, 'perf-summary', tool, async (o) => {
  const text = execFileSync('perf', ['script', '-i', o.data, '-F', 'tid,ip,sym,dso'], {
    maxBuffer: 1 << 30,
    stdio: ['ignore', 'pipe', 'ignore'],
  }).toString();
  process.stdout.write(formatSummary(summarizePerfScript(text), o.usPerMessage) + '\n');
  return 0;
});
