// The `bench` result (README, "Benchmarks") and its one-screen text summary.
import type { EventLoopDelayMs } from '../harness/generator.js';
import type { LatencyMs } from '../harness/latency.js';

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
  /** seconds of unmeasured load before each measured run */
  warmupSec: number;
  runId: string;
  /**
   * how the proxy under test was started, so a report says whether it ran as `serve` runs for a
   * user: GLIBC_TUNABLES and extra node flags it inherited (null = none), the log as served
   */
  proxyRun: { glibcTunables: string | null; nodeArgs: string | null; log: string } | null;
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
  /** null when the proxy's pid is unknown (--target without --proxy-pid) */
  proxy: (ProcessUsage & { cpuPercentMax: number }) | null;
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
  failures: Record<string, number>;
  /** the generator process's CPU during the proxy run (100 = one core) */
  generatorCpuPercent: number;
  /** 1-minute load average when the run started (other work on the machine skews results) */
  loadAverage: number;
  parameters: BenchParameters;
  startedAt: string;
}

const fmt = (n: number, d = 2) => n.toFixed(d);
const mb = (b: number) => `${(b / 1024 / 1024).toFixed(0)} MB`;

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
  if (r.proxy)
    lines.push(
      `proxy process: CPU ${fmt(r.proxy.cpuPercent, 1)} % (peak ${fmt(r.proxy.cpuPercentMax, 0)} %), ` +
        `${perMessage(r.proxy)}, RSS max ${mb(r.proxy.rssMaxBytes)}`,
    );
  const run = p.proxyRun;
  if (run)
    lines.push(
      `        run as: GLIBC_TUNABLES ${run.glibcTunables ?? 'unset'}, node flags ${run.nodeArgs ?? 'none'}, log ${run.log}`,
    );
  if (r.simulator)
    lines.push(
      `simulator process: CPU ${fmt(r.simulator.cpuPercent, 1)} %, ${perMessage(r.simulator)}, RSS max ${mb(r.simulator.rssMaxBytes)}`,
    );
  lines.push(
    `generator: CPU ${fmt(r.generatorCpuPercent, 1)} %, event-loop delay: p50 ${fmt(r.eventLoopDelayMs.p50)} / p99 ${fmt(r.eventLoopDelayMs.p99)} / max ${fmt(r.eventLoopDelayMs.max)} ms`,
  );
  lines.push(`load average at start: ${fmt(r.loadAverage)}`);
  if (r.lost !== null) lines.push(`upstream received ${r.upstreamReceived}, lost ${r.lost}`);
  for (const [reply, n] of Object.entries(r.failures).slice(0, 5)) lines.push(`failure: ${n} x ${reply}`);
  return lines.join('\n');
}
