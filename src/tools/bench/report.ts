// The `bench` result (README, "Benchmarks") and its one-screen text summary.
import type { EventLoopDelayMs } from '../harness/generator.js';
import type { LatencyMs } from '../harness/latency.js';
import { NOT_QUIET_PERCENT } from './machine-cpu.js';

export interface BenchParameters {
  mailboxes: number;
  connections: number;
  mode: 'rate' | 'max';
  /** msg/s offered (rate mode), null in max mode */
  rate: number | null;
  durationSec: number | null;
  count: number | null;
  size: number;
  recipients: number;
  /** upstream (proxy -> simulator) over STARTTLS */
  tls: boolean;
  /** HOST:PORT of an external proxy, null when bench started its own */
  target: string | null;
  warmupPerConnection: number;
  /** seconds of unmeasured load before each measured run (at least) */
  warmupSec: number;
  /** ... and at least this many messages (absent in reports from before it: seconds alone) */
  warmupMessages?: number;
  runId: string;
  /**
   * how the proxy under test was started, so a report says whether it ran as `serve` runs for a
   * user: GLIBC_TUNABLES and extra node flags it inherited (null = none), the log as served
   */
  proxyRun: { glibcTunables: string | null; nodeArgs: string | null; log: string } | null;
  /** `serve --workers N` (issue 13); null = plain `serve` (absent in reports from before it) */
  workers?: number | null;
  /** CPU lists asked for with --pin-proxy / --pin-load (taskset -c); null = not pinned */
  pin?: { proxy: string | null; load: string | null };
  /**
   * the CPUs each process was allowed to run on as /proc/PID/status says (Cpus_allowed_list),
   * read during the run: what the pinning actually did
   */
  affinity?: { proxy: string[]; simulator: string | null; generator: string | null };
}

/** One process of the proxy (the primary or a worker) over the measured window. */
export interface ProxyProcessUsage {
  pid: number;
  role: 'primary' | 'child';
  cpuSeconds: number;
  cpuUsPerMessage: number | null;
  rssMaxBytes: number;
  cpusAllowed: string | null;
}

export interface DirectResult extends RunCounts {
  eventLoopDelayMs: EventLoopDelayMs;
}

/** The counts and latency every run has, direct or through the proxy. */
interface RunCounts {
  sent: number;
  accepted: number;
  deferred: number;
  rejected: number;
  errors: number;
  durationSec: number;
  throughputPerSec: number;
  latencyMs: LatencyMs;
}

/** The unmeasured warm-up before a run: what the measured window leaves out. */
export interface WarmupUsage {
  /** messages answered in the warm-up */
  messages: number;
  durationSec: number;
  /** the proxy's CPU over the warm-up per message answered in it, µs; null when not sampled */
  proxyCpuUsPerMessage: number | null;
}

/** A process under test over the measured window (utime + stime from /proc, VmRSS sampled). */
export interface ProcessUsage {
  /** 100 = one core */
  cpuPercent: number;
  /** CPU seconds (all threads) in the measured window */
  cpuSeconds: number;
  /** cpuSeconds / messages answered in the window (accepted + deferred + rejected), µs */
  cpuUsPerMessage: number | null;
  /** the same for the main thread alone (the event loop, which bounds the maximum rate) */
  mainThreadUsPerMessage: number | null;
  rssMaxBytes: number;
}

export interface BenchResult extends RunCounts {
  /**
   * null when the proxy's pid is unknown (--target without --proxy-pid). The primary and all its
   * descendants (workers): CPU summed, rssMaxBytes the peak of the summed RSS; `processes` each one
   */
  proxy:
    | (ProcessUsage & {
        cpuPercentMax: number;
        /** the utime part of cpuUsPerMessage (proc-tree.ts: steadier on a VM whose host steals) */
        userUsPerMessage?: number | null;
        processes?: ProxyProcessUsage[];
      })
    | null;
  /** messages of the measured proxy run the simulator stored (compare with accepted); null with --target */
  upstreamReceived: number | null;
  /** accepted through the proxy (warm-up messages included) but not among the simulator's message ids; null with --target */
  lost: number | null;
  /** the direct baseline: same generator straight to the simulator (XOAUTH2); null when skipped */
  direct: DirectResult | null;
  /** proxy throughput / direct throughput */
  ratio: number | null;
  /** proxy p99 - direct p99, ms */
  addedP99Ms: number | null;
  /** the generator's own event-loop delay during the proxy run */
  eventLoopDelayMs: EventLoopDelayMs;
  /** the simulator process during the proxy run */
  simulator: ProcessUsage | null;
  unsent: number;
  warmupAccepted: number;
  /** the warm-up before the proxy run, with the proxy's CPU in it; null without one */
  warmup?: WarmupUsage | null;
  failures: Record<string, number>;
  /** the generator process's CPU during the proxy run (100 = one core) */
  generatorCpuPercent: number;
  /** 1-minute load average when the run started (other work on the machine skews results) */
  loadAverage: number;
  /** 1, 5 and 15-minute load averages when the proxy run started (as `uptime` prints them) */
  loadAverages?: [number, number, number];
  /**
   * the whole machine during the proxy run (/proc/stat; 100 = one core): `otherPercent` is what
   * the proxy, the simulator and the generator did not use, i.e. other work sharing the cores
   */
  machine?: { cores: number; busyPercent: number; otherPercent: number; stealPercent: number };
  parameters: BenchParameters;
  startedAt: string;
}

const fmt = (n: number, d = 2) => n.toFixed(d);
const mb = (b: number) => `${(b / 1024 / 1024).toFixed(0)} MiB`;

const perMessage = (u: ProcessUsage) =>
  u.cpuUsPerMessage === null
    ? 'no messages'
    : `${fmt(u.cpuUsPerMessage, 0)} µs CPU per message (main thread ${fmt(u.mainThreadUsPerMessage ?? 0, 0)})`;

/** CPU µs per answered message, null when nothing was answered. */
export function cpuUsPerMessage(cpuSeconds: number, messages: number): number | null {
  return messages > 0 ? Math.round((cpuSeconds * 1e6) / messages) : null;
}

export function formatLatency(l: LatencyMs): string {
  return `p50 ${fmt(l.p50)} / p95 ${fmt(l.p95)} / p99 ${fmt(l.p99)} / max ${fmt(l.max)} ms`;
}

export function formatSummary(r: BenchResult): string {
  const p = r.parameters;
  const load = p.mode === 'rate' ? `${+(p.rate ?? 0).toFixed(2)} msg/s offered` : 'max rate';
  const lines = [
    `bench: ${load}, ${p.connections} connections over ${p.mailboxes} mailboxes, ${p.size} B x ${p.recipients} rcpt` +
      (p.tls ? ', upstream STARTTLS' : '') +
      (p.target ? `, target ${p.target}` : ''),
    `proxy:  sent ${r.sent}, accepted ${r.accepted}, deferred ${r.deferred}, rejected ${r.rejected}, ` +
      `errors ${r.errors}${r.unsent ? `, unsent ${r.unsent}` : ''} in ${fmt(r.durationSec)} s = ${fmt(r.throughputPerSec, 0)} msg/s`,
    `        latency ${formatLatency(r.latencyMs)}`,
  ];
  if (r.direct)
    lines.push(
      `direct: ${fmt(r.direct.throughputPerSec, 0)} msg/s, latency ${formatLatency(r.direct.latencyMs)}`,
      `        ratio ${r.ratio === null ? '-' : fmt(r.ratio, 3)}, added p99 ${r.addedP99Ms === null ? '-' : fmt(r.addedP99Ms)} ms`,
    );
  const procs = r.proxy?.processes ?? [];
  if (r.proxy)
    lines.push(
      `proxy ${procs.length > 1 ? `processes (${procs.length}, summed)` : 'process'}: CPU ${fmt(r.proxy.cpuPercent, 1)} % (peak ${fmt(r.proxy.cpuPercentMax, 0)} %), ` +
        `${perMessage(r.proxy)}${r.proxy.userUsPerMessage != null ? `, user ${fmt(r.proxy.userUsPerMessage, 0)} µs` : ''}, RSS max ${mb(r.proxy.rssMaxBytes)}`,
    );
  if (procs.length > 1)
    for (const q of procs)
      lines.push(
        `        ${q.role === 'primary' ? 'primary' : 'worker '} ${q.pid}: ${fmt(q.cpuSeconds)} s CPU` +
          ` (${q.cpuUsPerMessage === null ? '-' : fmt(q.cpuUsPerMessage, 0)} µs/msg), RSS max ${mb(q.rssMaxBytes)}` +
          (q.cpusAllowed ? `, cpus ${q.cpusAllowed}` : ''),
      );
  const run = p.proxyRun;
  if (run)
    lines.push(
      `        run as: serve${p.workers ? ` --workers ${p.workers}` : ''}, GLIBC_TUNABLES ${run.glibcTunables ?? 'unset'}, node flags ${run.nodeArgs ?? 'none'}, log ${run.log}`,
    );
  if (r.warmup)
    lines.push(
      `        warm-up before it (not measured): ${r.warmup.messages} messages in ${fmt(r.warmup.durationSec, 1)} s` +
        (r.warmup.proxyCpuUsPerMessage === null
          ? ''
          : `, ${fmt(r.warmup.proxyCpuUsPerMessage, 0)} µs CPU per message`),
    );
  if (p.pin && (p.pin.proxy || p.pin.load))
    lines.push(
      `pinned: proxy ${p.pin.proxy ?? 'not pinned'}, generator + simulator ${p.pin.load ?? 'not pinned'}` +
        (p.affinity
          ? ` (allowed: proxy ${p.affinity.proxy.join('/') || '-'}, simulator ${p.affinity.simulator ?? '-'}, generator ${p.affinity.generator ?? '-'})`
          : ''),
    );
  if (r.simulator)
    lines.push(
      `simulator process: CPU ${fmt(r.simulator.cpuPercent, 1)} %, ${perMessage(r.simulator)}, RSS max ${mb(r.simulator.rssMaxBytes)}`,
    );
  lines.push(
    `generator: CPU ${fmt(r.generatorCpuPercent, 1)} %, event-loop delay: p50 ${fmt(r.eventLoopDelayMs.p50)} / p99 ${fmt(r.eventLoopDelayMs.p99)} / max ${fmt(r.eventLoopDelayMs.max)} ms`,
  );
  lines.push(
    r.loadAverages
      ? `load average at start: ${fmt(r.loadAverage)}; at the proxy run: ${r.loadAverages.map((n) => fmt(n)).join(', ')}`
      : `load average at start: ${fmt(r.loadAverage)}`,
  );
  if (r.machine) {
    const m = r.machine;
    lines.push(
      `machine: ${m.cores} cores, ${fmt(m.busyPercent, 1)} % of a core busy during the proxy run; other processes ${fmt(m.otherPercent, 1)} %, stolen by the host ${fmt(m.stealPercent, 1)} %`,
    );
    if (m.otherPercent > NOT_QUIET_PERCENT || m.stealPercent > NOT_QUIET_PERCENT)
      lines.push(
        `warning: not a quiet machine: other processes or the host took ${fmt(Math.max(m.otherPercent, m.stealPercent), 0)} % of a core during the proxy run; compare these figures only with runs made alike`,
      );
  }
  if (r.lost !== null) lines.push(`upstream received ${r.upstreamReceived}, lost ${r.lost}`);
  for (const [reply, n] of Object.entries(r.failures).slice(0, 5)) lines.push(`failure: ${n} x ${reply}`);
  return lines.join('\n');
}

/** A row per run (e.g. `--workers 1,2`): what differs, side by side. */
export function formatComparison(results: BenchResult[]): string {
  const head = [
    'workers',
    'pin proxy/load',
    'msg/s',
    'p50 ms',
    'p99 ms',
    'proxy CPU %',
    'proxy µs/msg',
    'processes',
    'RSS MiB',
    'load avg',
  ];
  const rows = results.map((r) => {
    const p = r.parameters;
    return [
      p.workers === null || p.workers === undefined ? '-' : String(p.workers),
      p.pin && (p.pin.proxy || p.pin.load) ? `${p.pin.proxy ?? '-'}/${p.pin.load ?? '-'}` : '-',
      fmt(r.throughputPerSec, 0),
      fmt(r.latencyMs.p50),
      fmt(r.latencyMs.p99),
      r.proxy ? fmt(r.proxy.cpuPercent, 0) : '-',
      r.proxy?.cpuUsPerMessage === null || !r.proxy ? '-' : fmt(r.proxy.cpuUsPerMessage, 0),
      String(r.proxy?.processes?.length ?? '-'),
      r.proxy ? (r.proxy.rssMaxBytes / 1024 / 1024).toFixed(0) : '-',
      (r.loadAverages ?? [r.loadAverage]).map((n) => fmt(n)).join(' '),
    ];
  });
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(width[i]!)).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}
