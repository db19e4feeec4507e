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
import { cpuUsPerMessage, type BenchResult, type DirectResult, type ProcessUsage } from './report.js';
import { sampleMachineCpu, type MachineCpu } from './machine-cpu.js';
import {
  cpusAllowed,
  descendants,
  sampleProcessTree,
  type TreeMetrics,
  type TreeSampler,
} from './proc-tree.js';

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
  ) => {
    let proxySampler: TreeSampler | undefined;
    let simSampler: ProcSampler | undefined;
    let machineSampler: ReturnType<typeof sampleMachineCpu> | undefined;
    const warmIds: string[] = [];
    if (opts.warmupSec > 0) {
      // Same load, not measured: JIT in every process, tokens, upstream pools. Its ids are loss-checked.
      const w = await runGenerator({
        ...common,
        ...g,
        durationSec: opts.warmupSec,
        count: undefined,
        quiet: true,
        label: `${g.label ?? 'bench'} warm-up`,
        runId: `${runId}${tag}w`,
      });
      warmIds.push(...w.acceptedIds);
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
      return { result, proxy, sim, machine };
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
    } = await measure(
      {
        host: opts.target.host,
        port: opts.target.port,
        auth: { mechanism: 'PLAIN', password: opts.password ?? '' },
        label: 'proxy',
      },
      { proxy: opts.proxyPid },
      'p',
    );
    return assemble(p, null, proxy, undefined, null, null, machine);
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
      ({ result: direct } = await measure(
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
      ));
    }
    await env.simReset();
    const {
      result: p,
      proxy,
      sim,
      machine,
    } = await measure(
      {
        host: env.proxyHost,
        port: env.proxySmtpPort,
        auth: { mechanism: 'PLAIN', password: env.password },
        label: 'proxy',
      },
      { proxy: env.proxyPid, sim: env.simPid },
      'p',
    );
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
    return assemble(p, direct, proxy, sim, upstreamReceived, lost, machine);
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
      failures: p.failures,
      parameters,
      startedAt,
    };
  }
}
