// The soak: the simulator and a proxy under a fixed load for a long time, with faults injected at
// random (seeded) intervals, sampling the proxy every few seconds; it fails on lost messages, on a
// proxy that stops being ready, and on growth trends (memory, fds, event-loop delay, latency).
//
// Load runs in segments (a minute by default): after each one the accepted ids of that segment
// are checked against the simulator's received ids, then the simulator's id list is cleared, so
// the loss check covers any length of run without hitting the simulator's id cap.
import { performance } from 'node:perf_hooks';
import { startBenchEnv, type BenchEnv, type Style } from '../harness/env.js';
import { runGenerator, type MessageOutcome } from '../harness/generator.js';
import { LatencyRecorder } from '../harness/latency.js';
import { NO_FAULTS, pickFault, quietSec, seededRandom, type FaultPlan } from './faults.js';
import { promSum } from '../harness/prom.js';
import { judgeTrend, type TrendRule, type TrendVerdict } from './trend.js';

export interface SoakOptions {
  minutes: number;
  /** msg/s, open loop */
  rate: number;
  mailboxes: number;
  connections: number;
  sampleSec: number;
  /** mean quiet time between faults; 0 = no faults */
  faultEverySec: number;
  segmentSec: number;
  seed: number;
  /** access-token lifetime in the simulator, so refreshes keep happening */
  tokenLifetimeSec: number;
  size: number;
  /** proxy -> simulator over STARTTLS (default: plain) */
  upstreamTls?: boolean;
  /** the provider the simulator plays (microsoft rotates refresh tokens); default google */
  style?: Style;
  /** samples before this are not judged for trends (default: a fifth of the run, at least 60 s) */
  warmupSec?: number;
  progress?: (line: string) => void;
}

export interface Sample {
  /** seconds since the load started */
  t: number;
  rssBytes: number | null;
  heapUsedBytes: number | null;
  openFds: number | null;
  eventLoopP99Ms: number | null;
  upstreamConnections: number | null;
  ready: boolean;
  /** this window's outcomes */
  accepted: number;
  deferred: number;
  rejected: number;
  errors: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  /** fault active at the moment of the sample */
  fault: string | null;
}

export interface InjectedFault extends FaultPlan {
  atSec: number;
}

export interface SoakResult {
  options: SoakOptions;
  startedAt: string;
  durationSec: number;
  samples: Sample[];
  faults: InjectedFault[];
  totals: Record<MessageOutcome | 'sent' | 'unsent', number>;
  /** accepted ids checked against the simulator, and how many of them it never received */
  checkedIds: number;
  lost: number;
  lostExamples: string[];
  verdicts: TrendVerdict[];
  notReadySamples: number;
  proxyAliveAtEnd: boolean;
  failures: string[];
  ok: boolean;
}

const MiB = 1024 * 1024;
export const TREND_RULES: TrendRule[] = [
  { series: 'rssBytes', unit: 'bytes', maxGrowthPerHour: 32 * MiB, maxGrowthFractionPerHour: 0.1 },
  { series: 'heapUsedBytes', unit: 'bytes', maxGrowthPerHour: 16 * MiB, maxGrowthFractionPerHour: 0.1 },
  { series: 'openFds', unit: 'fds', maxGrowthPerHour: 20 },
  { series: 'eventLoopP99Ms', unit: 'ms', maxGrowthPerHour: 10 },
  { series: 'latencyP99Ms', unit: 'ms', maxGrowthPerHour: 100 },
];

async function scrape(env: BenchEnv): Promise<{ metrics?: string; ready: boolean }> {
  const base = `http://127.0.0.1:${env.proxyHttpPort}`;
  let metrics: string | undefined;
  let ready = false;
  try {
    const r = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5000) });
    metrics = await r.text();
    const z = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(5000) });
    await z.arrayBuffer();
    ready = z.status === 200;
  } catch {
    /* counted as not ready; the series get a gap */
  }
  return { metrics, ready };
}

export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  const say = o.progress ?? ((l: string) => process.stderr.write(l + '\n'));
  const totalSec = o.minutes * 60;
  const warmupSec = o.warmupSec ?? Math.max(60, totalSec / 5);
  const env = await startBenchEnv({
    mailboxes: o.mailboxes,
    connections: o.connections,
    tls: o.upstreamTls ?? false,
    ...(o.style ? { style: o.style } : {}),
    userPrefix: 'soak',
    userDomain: 'example.com',
    recipients: 1,
    simArgs: ['--token-lifetime', String(o.tokenLifetimeSec)],
  });
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1000;
  const samples: Sample[] = [];
  const faults: InjectedFault[] = [];
  const totals = { sent: 0, accepted: 0, deferred: 0, rejected: 0, error: 0, unsent: 0 };
  let checkedIds = 0;
  let lost = 0;
  const lostExamples: string[] = [];
  let activeFault: string | null = null;
  let running = true;

  // ---- the window between samples ----
  let win = { accepted: 0, deferred: 0, rejected: 0, error: 0, latency: new LatencyRecorder() };
  const onResult = (r: { outcome: MessageOutcome; latencyMs: number }) => {
    win[r.outcome]++;
    if (r.outcome === 'accepted') win.latency.recordMs(r.latencyMs);
  };
  const takeSample = async () => {
    const w = win;
    win = { accepted: 0, deferred: 0, rejected: 0, error: 0, latency: new LatencyRecorder() };
    const { metrics, ready } = await scrape(env);
    const m = (name: string) => (metrics ? (promSum(metrics, name) ?? null) : null);
    const lag = m('nodejs_eventloop_lag_p99_seconds');
    const s: Sample = {
      t: Math.round(elapsed() * 10) / 10,
      rssBytes: m('process_resident_memory_bytes'),
      heapUsedBytes: m('nodejs_heap_size_used_bytes'),
      openFds: m('process_open_fds'),
      eventLoopP99Ms: lag === null ? null : Math.round(lag * 1e6) / 1e3,
      upstreamConnections: m('xoauth2_proxy_upstream_connections'),
      ready,
      accepted: w.accepted,
      deferred: w.deferred,
      rejected: w.rejected,
      errors: w.error,
      latencyP50Ms: w.latency.percentileMs(50),
      latencyP99Ms: w.latency.percentileMs(99),
      fault: activeFault,
    };
    samples.push(s);
    say(
      `[soak ${s.t.toFixed(0)}s] rss ${mb(s.rssBytes)} heap ${mb(s.heapUsedBytes)} fds ${s.openFds} ` +
        `elp99 ${s.eventLoopP99Ms} ms | ok ${s.accepted} 4xx ${s.deferred} 5xx ${s.rejected} err ${s.errors} ` +
        `p99 ${s.latencyP99Ms} ms${s.fault ? ` | fault ${s.fault}` : ''}${ready ? '' : ' | NOT READY'}`,
    );
  };

  // ---- faults ----
  const sleep = (sec: number) =>
    new Promise<void>((r) => {
      const until = performance.now() + sec * 1000;
      const step = () => {
        if (!running || performance.now() >= until) return r();
        setTimeout(step, Math.min(500, until - performance.now()));
      };
      step();
    });
  const rnd = seededRandom(o.seed);
  const faultLoop = async () => {
    if (o.faultEverySec <= 0) return;
    while (running) {
      await sleep(quietSec(rnd, o.faultEverySec));
      // the end of the run is quiet (30 s, or a fifth of a short run), so recovery shows in the samples
      if (!running || elapsed() + Math.min(30, totalSec / 5) > totalSec) break;
      const plan = pickFault(rnd);
      faults.push({ ...plan, atSec: Math.round(elapsed() * 10) / 10 });
      activeFault = plan.name;
      await env.simControl('faults', { ...NO_FAULTS, ...plan.faults });
      await sleep(plan.durationSec);
      await env.simControl('faults', NO_FAULTS);
      activeFault = null;
    }
  };

  const sampler = setInterval(() => void takeSample(), o.sampleSec * 1000);
  const faulting = faultLoop();
  try {
    await takeSample();
    for (let k = 0; elapsed() < totalSec; k++) {
      const seg = Math.min(o.segmentSec, totalSec - elapsed());
      if (seg < 1) break;
      const r = await runGenerator({
        host: env.proxyHost,
        port: env.proxySmtpPort,
        auth: { mechanism: 'PLAIN', password: env.password },
        users: env.users,
        connections: o.connections,
        rate: o.rate,
        durationSec: seg,
        size: o.size,
        recipients: 1,
        runId: `soak${o.seed}-${k}`,
        label: `soak segment ${k}`,
        quiet: true,
        onResult,
        // a latency spike at the end of a segment must drain, not count as lost
        drainTimeoutMs: 60_000,
      });
      totals.sent += r.sent;
      totals.accepted += r.accepted;
      totals.deferred += r.deferred;
      totals.rejected += r.rejected;
      totals.error += r.errors;
      totals.unsent += r.unsent;
      const stats = await env.simStats(true);
      const seen = new Set(stats.messageIds ?? []);
      for (const id of r.acceptedIds) {
        checkedIds++;
        if (!seen.has(id)) {
          lost++;
          if (lostExamples.length < 10) lostExamples.push(id);
        }
      }
      await env.simReset();
    }
  } finally {
    running = false;
    clearInterval(sampler);
    await faulting.catch(() => undefined);
  }
  await env.simControl('faults', NO_FAULTS).catch(() => undefined);
  await takeSample();
  const durationSec = Math.round(elapsed());
  let proxyAliveAtEnd = false;
  try {
    process.kill(env.proxyPid, 0);
    const h = await fetch(`http://127.0.0.1:${env.proxyHttpPort}/healthz`);
    await h.arrayBuffer();
    proxyAliveAtEnd = h.status === 200;
  } catch {
    proxyAliveAtEnd = false;
  }
  await env.close();

  const judge = { warmupSec, minSamples: 12, minSpanSec: 300 };
  const verdicts = TREND_RULES.map((rule) =>
    judgeTrend(
      samples
        .filter((s) => s[rule.series as keyof Sample] !== null)
        .map((s) => ({ t: s.t, v: Number(s[rule.series as keyof Sample]) })),
      rule,
      judge,
    ),
  );
  const notReadySamples = samples.filter((s) => !s.ready).length;
  const failures = runFailures({ lost, lostExamples, proxyAliveAtEnd, notReadySamples, verdicts, totals });
  return {
    options: o,
    startedAt,
    durationSec,
    samples,
    faults,
    totals,
    checkedIds,
    lost,
    lostExamples,
    verdicts,
    notReadySamples,
    proxyAliveAtEnd,
    failures,
    ok: failures.length === 0,
  };
}

/** Why a run failed (empty = pass): the invariants of the proxy's promise, then the trends. */
export function runFailures(r: {
  lost: number;
  lostExamples: readonly string[];
  proxyAliveAtEnd: boolean;
  notReadySamples: number;
  verdicts: readonly TrendVerdict[];
  totals: { error: number };
}): string[] {
  const failures: string[] = [];
  if (r.lost > 0)
    failures.push(`${r.lost} messages got 250 but never reached the upstream (e.g. ${r.lostExamples[0]})`);
  // Every message gets a reply: a 250 or a 4xx/5xx. A transaction that ended without one (the
  // connection closed or went silent) breaks that promise even if nothing was lost.
  if (r.totals.error > 0)
    failures.push(
      `${r.totals.error} messages got no reply (connection lost, reply timeout or failed connect)`,
    );
  if (!r.proxyAliveAtEnd) failures.push('the proxy was not alive and healthy at the end');
  if (r.notReadySamples > 0) failures.push(`/readyz was not 200 in ${r.notReadySamples} samples`);
  for (const v of r.verdicts) if (v.verdict === 'growing') failures.push(v.why!);
  return failures;
}

const mb = (b: number | null) => (b === null ? '?' : `${(b / MiB).toFixed(1)} MiB`);
