// `runBench`: the direct baseline (generator -> simulator, XOAUTH2) and the proxy run (generator ->
// proxy -> simulator, AUTH PLAIN) with the same load, then the loss check against the simulator's
// message ids. Starts (and always stops) the simulator and the proxy unless given a target or an env.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { formatHostPort } from '../../shared/net.js';
import { fetchTokens, startBenchEnv, type BenchEnv } from '../harness/env.js';
import { runGenerator, type GeneratorOptions, type GeneratorResult } from '../harness/generator.js';
import { benchUser, type BenchOptions } from './options.js';
import { sampleProcess, type ProcMetrics, type ProcSampler } from '../harness/proc.js';
import {
  cpuUsPerMessage,
  type BenchResult,
  type DirectResult,
  type ProcessUsage,
  type WarmupUsage,
} from './report.js';
import { sampleMachineCpu, type MachineCpu } from './machine-cpu.js';
import {
  cpusAllowed,
  descendants,
  sampleProcessTree,
  type TreeMetrics,
  type TreeSampler,
} from './proc-tree.js';

/** One generator run of the warm-up: for this long, or (count) until that many more were sent. */
export interface WarmupStep {
  durationSec: number;
  count?: number;
}

/** the part of a warm-up that is there for its messages lasts at most this long */
export const WARMUP_MESSAGES_MAX_SEC = 30;

/**
 * The warm-up before a measured run: at least `seconds`, and until the proxy has answered
 * `messages` since it started (`already` of them in earlier runs on the same proxy, e.g. the
 * matrix's lower steps), for at most WARMUP_MESSAGES_MAX_SEC more. At a fixed rate that is one
 * run; at the maximum, the seconds and then a run of the messages still missing.
 */
export function warmupSteps(
  rate: number | undefined,
  seconds: number,
  messages: number,
  already: number,
): WarmupStep[] {
  const missing = Math.max(0, messages - already);
  if (rate !== undefined) {
    const sec = Math.max(seconds, Math.min(missing / rate, WARMUP_MESSAGES_MAX_SEC));
    return sec > 0 ? [{ durationSec: sec }] : [];
  }
  const steps: WarmupStep[] = [];
  if (seconds > 0) steps.push({ durationSec: seconds });
  if (missing > 0) steps.push({ durationSec: WARMUP_MESSAGES_MAX_SEC, count: missing });
  return steps;
}

/**
 * Messages answered so far in an environment the matrix reuses across runs: by the simulator
 * alone (direct runs) and through the proxy. The simulator takes part in both.
 */
const answeredIn = new WeakMap<BenchEnv, { direct: number; proxy: number }>();

function answeredOf(env: BenchEnv): { direct: number; proxy: number } {
  let a = answeredIn.get(env);
  if (!a) answeredIn.set(env, (a = { direct: 0, proxy: 0 }));
  return a;
}

const answeredAll = (g: GeneratorResult, w: WarmupUsage | null) =>
  g.accepted + g.deferred + g.rejected + (w?.messages ?? 0);

/** Warm-up messages per connection before measuring (token fetch, upstream connect, JIT). */
export const WARMUP_PER_CONNECTION = 1;

export interface RunDeps {
  /** a running simulator + proxy to reuse (the matrix); not closed by runBench */
  env?: BenchEnv;
  progress?: (line: string) => void;
  /** path of dist/cli.js (tests) */
  cli?: string;
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

function directOf(g: GeneratorResult): DirectResult {
  return {
    sent: g.sent,
    accepted: g.accepted,
    deferred: g.deferred,
    rejected: g.rejected,
    errors: g.errors,
    durationSec: g.durationSec,
    throughputPerSec: g.throughputPerSec,
    latencyMs: g.latencyMs,
    eventLoopDelayMs: g.eventLoopDelayMs,
  };
}

/**
 * Pin this process (all its threads: the generator, libuv's pool, V8's) to a CPU list, as
 * `taskset -a -p -c` does; returns a function that restores the previous affinity.
 */
export function pinSelf(cpus: string): () => void {
  const before = /list: (\S+)/.exec(
    execFileSync('taskset', ['-p', '-c', String(process.pid)], { encoding: 'utf8' }),
  )?.[1];
  execFileSync('taskset', ['-a', '-p', '-c', cpus, String(process.pid)], { stdio: 'ignore' });
  return () => {
    if (before) execFileSync('taskset', ['-a', '-p', '-c', before, String(process.pid)], { stdio: 'ignore' });
  };
}

/** One run per --workers entry (or one plain run), each with its own simulator and proxy. */
export async function runBenchSeries(opts: BenchOptions, deps: RunDeps = {}): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  for (const w of opts.workers ?? [undefined])
    out.push(await runBench({ ...opts, workers: w === undefined ? undefined : [w] }, deps));
  return out;
}

export async function runBench(opts: BenchOptions, deps: RunDeps = {}): Promise<BenchResult> {
  if ((opts.workers?.length ?? 0) > 1)
    throw new Error('runBench: one --workers count per run (runBenchSeries)');
  const workers = opts.workers?.[0];
  if (deps.env && (workers !== undefined || opts.pinProxy || opts.pinLoad))
    throw new Error('runBench: --workers and pinning start their own proxy, not with a given env');
  const unpin = opts.pinLoad ? pinSelf(opts.pinLoad) : undefined;
  try {
    return await runPinned(opts, workers, deps);
  } finally {
    unpin?.();
  }
}

async function runPinned(
  opts: BenchOptions,
  workers: number | undefined,
  deps: RunDeps,
): Promise<BenchResult> {
  const startedAt = new Date().toISOString();
  const loadAverage = Math.round(os.loadavg()[0]! * 100) / 100;
  const runId = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  const users = Array.from({ length: opts.mailboxes }, (_, i) => benchUser(opts, i));
  const common = {
    users,
    connections: opts.connections,
    rate: opts.rate,
    durationSec: opts.durationSec,
    count: opts.count,
    size: opts.size,
    recipients: opts.recipients,
    warmup: WARMUP_PER_CONNECTION,
    quiet: opts.quiet,
    progress: deps.progress,
  } satisfies Partial<GeneratorOptions>;
  const parameters = {
    mailboxes: opts.mailboxes,
    connections: opts.connections,
    mode: opts.rate === undefined ? ('max' as const) : ('rate' as const),
    rate: opts.rate ?? null,
    durationSec: opts.durationSec ?? null,
    count: opts.count ?? null,
    size: opts.size,
    recipients: opts.recipients,
    tls: opts.tls,
    target: opts.target ? formatHostPort(opts.target) : null,
    warmupPerConnection: WARMUP_PER_CONNECTION,
    warmupSec: opts.warmupSec,
    warmupMessages: opts.warmupMessages,
    runId,
    proxyRun: null as BenchResult['parameters']['proxyRun'],
    workers: workers ?? null,
    pin: { proxy: opts.pinProxy ?? null, load: opts.pinLoad ?? null },
    simArgs: opts.simArgs ?? [],
    affinity: undefined as BenchResult['parameters']['affinity'],
  };
  let loadAverages: [number, number, number] | undefined;

  const measure = async (
    g: Omit<GeneratorOptions, keyof typeof common | 'runId' | 'onMeasureStart'>,
    pids: { proxy?: number; sim?: number },
    tag: string,
    /** messages the processes under test answered before this run (their JIT is that warm) */
    already: number,
  ) => {
    let proxySampler: TreeSampler | undefined;
    let simSampler: ProcSampler | undefined;
    let machineSampler: ReturnType<typeof sampleMachineCpu> | undefined;
    const warmIds: string[] = [];
    let warmup: WarmupUsage | null = null;
    const steps = warmupSteps(opts.rate, opts.warmupSec, opts.warmupMessages, already);
    if (steps.length) {
      // Same load, not measured: JIT in every process, tokens, upstream pools. Its ids are loss-checked.
      // The proxy is sampled through it too, so that what the warm-up left out is reported.
      const warmSampler = pids.proxy ? sampleProcessTree(pids.proxy) : undefined;
      const t0 = performance.now();
      let answered = 0;
      try {
        for (let i = 0; i < steps.length; i++) {
          const step = steps[i]!;
          let count = step.count;
          if (count !== undefined && i > 0) count -= answered;
          if (count !== undefined && count <= 0) break;
          const w = await runGenerator({
            ...common,
            ...g,
            durationSec: step.durationSec,
            count,
            quiet: true,
            label: `${g.label ?? 'bench'} warm-up`,
            runId: `${runId}${tag}w${i}`,
          });
          warmIds.push(...w.acceptedIds);
          answered += w.accepted + w.deferred + w.rejected;
        }
      } finally {
        const m = await warmSampler?.stop();
        warmup = {
          messages: answered,
          durationSec: round3((performance.now() - t0) / 1000),
          proxyCpuUsPerMessage: m ? cpuUsPerMessage(m.cpuSeconds, answered) : null,
        };
      }
    }
    try {
      const result = await runGenerator({
        ...common,
        ...g,
        runId: `${runId}${tag}`,
        onMeasureStart: () => {
          if (pids.proxy) {
            const [a, b, c] = os.loadavg() as [number, number, number];
            loadAverages = [a, b, c].map((n) => Math.round(n * 100) / 100) as [number, number, number];
            proxySampler = sampleProcessTree(pids.proxy);
            machineSampler = sampleMachineCpu();
          }
          if (pids.sim) simSampler = sampleProcess(pids.sim);
        },
      });
      const proxy: TreeMetrics | undefined = await proxySampler?.stop();
      const sim: ProcMetrics | undefined = await simSampler?.stop();
      const machine = (await machineSampler?.stop()) ?? undefined;
      for (const id of warmIds) result.acceptedIds.push(id);
      result.warmupAccepted += warmIds.length;
      return { result, proxy, sim, machine, warmup };
    } finally {
      await proxySampler?.stop();
      await simSampler?.stop();
    }
  };

  if (opts.target) {
    const {
      result: p,
      proxy,
      machine,
      warmup,
    } = await measure(
      {
        host: opts.target.host,
        port: opts.target.port,
        auth: { mechanism: 'PLAIN', password: opts.password ?? '' },
        label: 'proxy',
      },
      { proxy: opts.proxyPid },
      'p',
      0,
    );
    return assemble(p, null, proxy, undefined, null, null, machine, warmup);
  }

  const env =
    deps.env ??
    (await startBenchEnv({
      mailboxes: opts.mailboxes,
      connections: opts.connections,
      tls: opts.tls,
      userPrefix: opts.userPrefix,
      userDomain: opts.userDomain,
      recipients: opts.recipients,
      cli: deps.cli,
      logAsServed: true,
      proxyArgs: workers === undefined ? [] : ['--workers', String(workers)],
      proxyCpus: opts.pinProxy,
      simCpus: opts.pinLoad,
      ...(opts.simArgs ? { simArgs: opts.simArgs } : {}),
    }));
  parameters.proxyRun = env.proxyRun;
  {
    const pids = [env.proxyPid, ...(await descendants(env.proxyPid))];
    parameters.affinity = {
      proxy: (await Promise.all(pids.map(cpusAllowed))).map((c) => c ?? '-'),
      simulator: await cpusAllowed(env.simPid),
      generator: await cpusAllowed(process.pid),
    };
  }
  try {
    let direct: GeneratorResult | null = null;
    if (opts.direct) {
      const used = users.slice(0, Math.min(users.length, opts.connections));
      const tokens = await fetchTokens(env.sim.tokenUrl, used);
      await env.simReset();
      let warmed: WarmupUsage | null;
      const a = answeredOf(env);
      ({ result: direct, warmup: warmed } = await measure(
        {
          host: env.simHost,
          port: env.simPort,
          security: opts.tls ? 'starttls' : 'none',
          tlsOptions: { ca: env.caPem, servername: 'localhost' },
          auth: { mechanism: 'XOAUTH2', token: (u) => tokens.get(u) ?? '' },
          label: 'direct',
        },
        {},
        'd',
        a.direct + a.proxy,
      ));
      a.direct += answeredAll(direct, warmed);
    }
    await env.simReset();
    const {
      result: p,
      proxy,
      sim,
      machine,
      warmup,
    } = await measure(
      {
        host: env.proxyHost,
        port: env.proxySmtpPort,
        auth: { mechanism: 'PLAIN', password: env.password },
        label: 'proxy',
      },
      { proxy: env.proxyPid, sim: env.simPid },
      'p',
      answeredOf(env).proxy,
    );
    answeredOf(env).proxy += answeredAll(p, warmup);
    const stats = await env.simStats(true);
    const seen = new Set(stats.messageIds ?? []);
    let lost = 0;
    for (const id of p.acceptedIds) if (!seen.has(id)) lost++;
    if (stats.messageIdsCapped && lost > 0)
      throw new Error(
        'the simulator capped its message-id list: the loss check is not possible for a run this long',
      );
    // Comparable with `accepted`: stored messages of the measured proxy run (more = stored although
    // the client was told otherwise, e.g. after a timeout; duplicates count twice).
    const suffix = `-${runId}p@bench>`;
    let upstreamReceived = 0;
    for (const id of stats.messageIds ?? []) if (id.endsWith(suffix)) upstreamReceived++;
    return assemble(p, direct, proxy, sim, upstreamReceived, lost, machine, warmup);
  } finally {
    if (!deps.env) await env.close();
  }

  function assemble(
    p: GeneratorResult,
    direct: GeneratorResult | null,
    proxy: TreeMetrics | undefined,
    sim: ProcMetrics | undefined,
    upstreamReceived: number | null,
    lost: number | null,
    machine: MachineCpu | undefined,
    warmup: WarmupUsage | null,
  ): BenchResult {
    const answered = p.accepted + p.deferred + p.rejected;
    const usage = (m: ProcMetrics): ProcessUsage => ({
      cpuPercent: m.cpuPercent,
      cpuSeconds: m.cpuSeconds,
      cpuUsPerMessage: cpuUsPerMessage(m.cpuSeconds, answered),
      mainThreadUsPerMessage: cpuUsPerMessage(m.mainThreadCpuSeconds, answered),
      rssMaxBytes: m.rssMaxBytes,
    });
    return {
      sent: p.sent,
      accepted: p.accepted,
      deferred: p.deferred,
      rejected: p.rejected,
      errors: p.errors,
      durationSec: p.durationSec,
      throughputPerSec: p.throughputPerSec,
      latencyMs: p.latencyMs,
      proxy: proxy
        ? {
            ...usage(proxy),
            cpuPercentMax: proxy.cpuPercentMax,
            userUsPerMessage: cpuUsPerMessage(proxy.userCpuSeconds, answered),
            processes: proxy.processes.map((q) => ({
              pid: q.pid,
              role: q.role,
              cpuSeconds: q.cpuSeconds,
              cpuUsPerMessage: cpuUsPerMessage(q.cpuSeconds, answered),
              rssMaxBytes: q.rssMaxBytes,
              cpusAllowed: q.cpusAllowed,
            })),
          }
        : null,
      upstreamReceived,
      lost,
      direct: direct ? directOf(direct) : null,
      ratio:
        direct && direct.throughputPerSec > 0 ? round3(p.throughputPerSec / direct.throughputPerSec) : null,
      addedP99Ms: direct ? round3(p.latencyMs.p99 - direct.latencyMs.p99) : null,
      eventLoopDelayMs: p.eventLoopDelayMs,
      simulator: sim ? usage(sim) : null,
      unsent: p.unsent,
      generatorCpuPercent: p.cpuPercent,
      loadAverage: loadAverage,
      ...(loadAverages ? { loadAverages } : {}),
      ...(machine
        ? {
            machine: {
              ...machine,
              // the bench's own processes are the proxy (with its workers), the simulator and the generator
              otherPercent: Math.max(
                0,
                Math.round(
                  (machine.busyPercent - (proxy?.cpuPercent ?? 0) - (sim?.cpuPercent ?? 0) - p.cpuPercent) *
                    10,
                ) / 10,
              ),
            },
          }
        : {}),
      warmupAccepted: p.warmupAccepted,
      warmup,
      failures: p.failures,
      parameters,
      startedAt,
    };
  }
}
