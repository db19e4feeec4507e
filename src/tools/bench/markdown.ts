// docs/benchmarks.md from measured matrix results. Every number printed here comes from a
// BenchResult; a missing measurement prints "-", never an estimate.
import type { BenchResult } from './report.js';
import { renderLineChart } from './svg.js';
import { NOT_QUIET_PERCENT } from './machine-cpu.js';

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryBytes: number;
  node: string;
  os: string;
}

export interface ScenarioSpec {
  /** short id, e.g. "m100-2k-plain" */
  id: string;
  title: string;
  mailboxes: number;
  connections: number;
  size: number;
  tls: boolean;
}

export interface LoadStep {
  /** "1k", ..., "max" */
  label: string;
  /** msg/min, undefined = max */
  perMinute?: number;
  durationSec: number;
}

export interface ScenarioRun {
  scenario: ScenarioSpec;
  /** attempts: how often the step was measured (absent = once; more when the machine was not quiet) */
  steps: { step: LoadStep; result: BenchResult | null; error?: string; attempts?: number }[];
}

/** The connections sweep (issue 14): 833 msg/s over 10 mailboxes and max over 100, plain and TLS upstream. */
export const SWEEP_CONNECTIONS = [1, 10, 50, 100] as const;
export const SWEEP_RATE_PER_MINUTE = 50_000;

export interface SweepSpec extends ScenarioSpec {
  step: LoadStep;
}

export function sweepScenarios(durationSec: number): SweepSpec[] {
  const all: SweepSpec[] = [];
  for (const max of [false, true])
    for (const tls of [false, true])
      for (const connections of SWEEP_CONNECTIONS) {
        const mailboxes = max ? 100 : 10;
        all.push({
          id: `sweep-${max ? 'max' : '833'}-c${connections}-${tls ? 'tls' : 'plain'}`,
          title: `${connections} connections, ${max ? 'max' : '833 msg/s'}, ${tls ? 'STARTTLS' : 'plain'} upstream`,
          mailboxes,
          connections,
          size: 2048,
          tls,
          step: max
            ? { label: 'max', durationSec }
            : { label: '50k', perMinute: SWEEP_RATE_PER_MINUTE, durationSec },
        });
      }
  return all;
}

/** One case of the workers part (issue 13): a load, a worker count, and where the processes may run. */
export interface WorkersCase {
  /** e.g. "max-c100-w2" or "833-c10-w1-pinned" */
  id: string;
  /** "max" (closed loop) or msg/s */
  rate: number | 'max';
  mailboxes: number;
  connections: number;
  workers: number;
  /** CPU lists (taskset -c) for the proxy and for the generator + simulator; absent = not pinned */
  pin?: { proxy: string; load: string };
}

export interface WorkersRun {
  case: WorkersCase;
  /** 1-based: the cases are run round-robin, `repeat` times each */
  round: number;
  /** `uptime` as printed just before the run */
  uptime: string;
  result: BenchResult | null;
  error?: string;
  /** formatSummary(result): the raw output */
  summary: string;
}

export interface WorkersPart {
  date: string;
  command: string;
  durationSec: number;
  warmupSec: number;
  /** absent in reports from before it (seconds alone) */
  warmupMessages?: number;
  repeat: number;
  totalSec: number;
  machine: Machine;
  runs: WorkersRun[];
  /** shown in the section (the --note of a workers-only run) */
  note?: string;
}

/** The workers comparison (issue 13): 1 vs 2 workers at three loads, and 1 worker pinned apart from the load. */
export function workersCases(): WorkersCase[] {
  const loads: { rate: number | 'max'; connections: number }[] = [
    { rate: 'max', connections: 100 },
    { rate: SWEEP_RATE_PER_MINUTE / 60, connections: 10 },
    { rate: SWEEP_RATE_PER_MINUTE / 60, connections: 100 },
  ];
  const all: WorkersCase[] = [];
  for (const l of loads) {
    const tag = `${l.rate === 'max' ? 'max' : Math.round(l.rate)}-c${l.connections}`;
    for (const workers of [1, 2]) all.push({ id: `${tag}-w${workers}`, ...l, mailboxes: 100, workers });
    all.push({ id: `${tag}-w1-pinned`, ...l, mailboxes: 100, workers: 1, pin: { proxy: '0', load: '1' } });
  }
  return all;
}

export const SECTION_WORKERS = 'workers';

/** `<!-- section:NAME begin -->` ... `<!-- section:NAME end -->`: a part of benchmarks.md written on its own. */
const marks = (name: string) => [`<!-- section:${name} begin -->`, `<!-- section:${name} end -->`] as const;

/** The section NAME of a benchmarks.md (markers included), or undefined. */
export function extractSection(text: string, name: string): string | undefined {
  const [b, e] = marks(name);
  const i = text.indexOf(b);
  const j = text.indexOf(e, i);
  return i >= 0 && j > i ? text.slice(i, j + e.length) : undefined;
}

/** text with its section NAME replaced by `section` (markers included), or with it appended. */
export function spliceSection(text: string, name: string, section: string): string {
  const old = extractSection(text, name);
  if (old !== undefined) return text.replace(old, () => section);
  return `${text.replace(/\n*$/, '\n')}\n${section}\n`;
}

const loadLabel = (c: WorkersCase) => (c.rate === 'max' ? 'max' : `${f(c.rate, 0)} msg/s`);
const proxyLabel = (c: WorkersCase) =>
  `${c.workers} worker${c.workers > 1 ? 's' : ''}${c.pin ? `, proxy on cpu ${c.pin.proxy}, load on cpu ${c.pin.load}` : ''}`;

/** The "Workers (issue 13)" section, markers included. */
export function renderWorkersSection(part: WorkersPart): string {
  const [b, e] = marks(SECTION_WORKERS);
  const L: string[] = [
    b,
    '## Workers (issue 13)',
    '',
    `<!-- generated by \`${part.command}\` (src/tools/bench/matrix.ts, --only workers); do not edit by hand -->`,
    '',
    `Measured ${part.date} on the machine above (${part.machine.cores} cores, ${part.machine.cpuModel}, Node.js ${part.machine.node}) ` +
      `with \`${part.command}\`; it took ${f(part.totalSec / 60, 1)} min. Each case is one \`bench\` run with its own ` +
      `simulator and proxy (\`serve --workers N\`), ${warmupText(part.warmupSec, part.warmupMessages)} of warm-up, then ${part.durationSec} s direct and ` +
      `${part.durationSec} s through the proxy; the cases ran round-robin, ${part.repeat} rounds, so a busy moment of the ` +
      'machine falls on different cases in different rounds. 100 mailboxes, 2 KB messages, plain upstream; at 833 msg/s ' +
      'with 10 connections only 10 of the mailboxes carry traffic (connection i sends as mailbox i).',
    '',
    '- **proxy µs/msg** is utime + stime of the primary and all its workers (found through',
    '  `/proc/PID/task/*/children`) over the measured window, divided by the messages answered; the per-process',
    '  column splits it (primary first). **RSS** is the peak of the summed `VmRSS`, then each process.',
    '- **Pinned**: the proxy runs under `taskset -c 0`, the simulator under `taskset -c 1` and the generator (the',
    "  bench process) is moved to cpu 1 with `taskset -a -p`; the allowed CPUs read back from each process's",
    '  `Cpus_allowed_list` are in the raw output.',
    '- **load avg** is `uptime` (1, 5, 15 min) just before the run. Other agents run tests on this machine at',
    '  the same time, so throughput and latency say more about the machine at that moment than about the',
    "  proxy; CPU µs per message is the steadier figure. Pinning keeps *our* load off the proxy's core, not",
    "  other people's.",
    '',
    ...(part.note ? [`> **Note:** ${part.note}`, ''] : []),
    '| load | connections | proxy | round | msg/s | p50 ms | p99 ms | direct msg/s | proxy CPU % | proxy µs/msg (main) | per process µs/msg | RSS MiB (per process) | sim CPU % | gen CPU % | lost | load avg |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  const ordered = [...part.runs].sort(
    (x, y) =>
      workersCases().findIndex((c) => c.id === x.case.id) -
        workersCases().findIndex((c) => c.id === y.case.id) || x.round - y.round,
  );
  for (const run of ordered) {
    const c = run.case;
    const r = run.result;
    const la = /load averages?:\s*(.*)$/.exec(run.uptime)?.[1] ?? '-';
    const head = `| ${loadLabel(c)} | ${c.connections} | ${proxyLabel(c)} | ${run.round} |`;
    if (!r) {
      L.push(
        `${head} failed: ${(run.error ?? 'unknown').replace(/\|/g, '\\|').slice(0, 120)} |||||||||||${la} |`,
      );
      continue;
    }
    const procs = r.proxy?.processes ?? [];
    L.push(
      `${head} ${f(r.throughputPerSec, 0)} | ${f(r.latencyMs.p50)} | ${f(r.latencyMs.p99)} | ${f(r.direct?.throughputPerSec, 0)} | ` +
        `${f(r.proxy?.cpuPercent, 0)} | ${f(r.proxy?.cpuUsPerMessage, 0)} (${f(r.proxy?.mainThreadUsPerMessage, 0)}) | ` +
        `${procs.length > 1 ? procs.map((p) => f(p.cpuUsPerMessage, 0)).join(' + ') : '-'} | ` +
        `${mb(r.proxy?.rssMaxBytes)}${procs.length > 1 ? ` (${procs.map((p) => mb(p.rssMaxBytes)).join(' + ')})` : ''} | ` +
        `${f(r.simulator?.cpuPercent, 0)} | ${f(r.generatorCpuPercent, 0)} | ${r.lost ?? '-'} | ${la} |`,
    );
  }
  L.push('', '<details><summary>Raw output of every run</summary>', '', '```');
  for (const run of part.runs) {
    L.push(
      `== ${run.case.id}, round ${run.round}`,
      `$ uptime`,
      run.uptime,
      run.summary || `failed: ${run.error ?? ''}`,
      '',
    );
  }
  L.push('```', '', '</details>', e);
  return L.join('\n');
}

export interface MatrixReport {
  machine: Machine;
  date: string;
  command: string;
  /** the git commit measured (build-id.ts); absent outside a git checkout */
  build?: string;
  quick: boolean;
  warmupSec: number;
  /** the warm-up also lasted until the process had answered this many messages (absent: seconds alone) */
  warmupMessages?: number;
  /** each fixed-rate step ran max(stepSec, minMessages / rate) seconds; max ran stepSec */
  stepSec: number;
  minMessages: number;
  totalSec: number;
  loadAverageAtStart: number;
  /** free text shown under the header (e.g. how this run differs from a plain `npm run bench`) */
  note?: string;
  runs: ScenarioRun[];
  /** the connections sweep (sweepScenarios), when it ran */
  sweep?: ScenarioRun[];
  /** the workers comparison (workersCases), when it ran */
  workers?: WorkersPart;
}

const f = (n: number | null | undefined, d = 2) =>
  n === null || n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(d);
const mb = (b: number | undefined) => (b === undefined ? '-' : (b / 1024 / 1024).toFixed(0));
/** the machine's other work and the host's steal during the proxy run, when the run measured them */
const otherStolen = (r: BenchResult) =>
  r.machine ? `${f(r.machine.otherPercent, 0)} / ${f(r.machine.stealPercent, 0)}` : '-';
const sizeLabel = (b: number) => (b >= 1024 ? `${+(b / 1024).toFixed(1)} KB` : `${b} B`);

export function chartSvgs(report: MatrixReport): { throughput: string; latency: string } {
  const categories = report.runs[0]?.steps.map((s) => s.step.label) ?? [];
  const series = (pick: (r: BenchResult) => number) =>
    report.runs.map((run) => ({
      name: run.scenario.title,
      values: run.steps.map((s) => (s.result ? pick(s.result) : null)),
    }));
  return {
    throughput: renderLineChart({
      title: 'Throughput through the proxy',
      xLabel: 'offered load (msg/min)',
      yLabel: 'accepted msg/s',
      categories,
      series: series((r) => r.throughputPerSec),
    }),
    latency: renderLineChart({
      title: 'p99 latency through the proxy (fixed rates open loop, max closed loop)',
      xLabel: 'offered load (msg/min)',
      yLabel: 'p99 ms (log scale)',
      logY: true,
      categories,
      series: series((r) => r.latencyMs.p99),
    }),
  };
}

/** One table: connections x {833 msg/s, max} x {plain, TLS}, with the direct run of the same step. */
export function renderSweep(sweep: ScenarioRun[]): string[] {
  const first = sweep[0]?.scenario;
  const L = [
    '## Connections: 1 to 100, at 833 msg/s and at the maximum',
    '',
    `2 KB messages, 1 recipient. 833 msg/s (50,000 msg/min, open loop) over 10 mailboxes; the maximum (closed loop) over 100 mailboxes. ` +
      `Each step ran ${first ? sweep[0]!.steps[0]?.step.durationSec : '-'} s, direct and through the proxy. ` +
      'CPU per message is the whole proxy process (all threads), with its main thread in parentheses. ' +
      '"direct" is the same load without the proxy in the same step: it says how fast this machine was, so rows ' +
      'can be compared with runs on other machines (or on the same VM on another day). ' +
      '"other / stolen CPU %" is the machine\'s CPU during the proxy run beyond the proxy, simulator and generator, ' +
      `and the time the VM's host took from it (100 = one core): above ${NOT_QUIET_PERCENT} the step did not have a quiet machine. ` +
      '"warm-up" is the unmeasured load before the proxy run (each step has a proxy of its own): its messages, ' +
      "and the proxy's CPU per message in it, which the measured window leaves out (V8 is still compiling the " +
      'message path during the first few thousand messages: performance.md, "The JIT\'s warm-up").',
    '',
    '| load | upstream | connections | msg/s | direct msg/s | ratio | p50 ms | p99 ms | direct p99 ms | added p99 ms | proxy µs/msg (main) | proxy peak RSS MiB | lost | other / stolen CPU % | warm-up: messages, proxy µs/msg |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const run of sweep) {
    const s = run.scenario;
    for (const { step, result: r, error } of run.steps) {
      const head = `| ${step.perMinute === undefined ? 'max' : '833 msg/s'} | ${s.tls ? 'STARTTLS' : 'plain'} | ${s.connections} |`;
      if (!r) {
        L.push(`${head} failed: ${(error ?? 'unknown').replace(/\|/g, '\\|').slice(0, 120)} |||||||||||`);
        continue;
      }
      L.push(
        `${head} ${f(r.throughputPerSec, 0)} | ${f(r.direct?.throughputPerSec, 0)} | ${f(r.ratio, 3)} | ` +
          `${f(r.latencyMs.p50)} | ${f(r.latencyMs.p99)} | ${f(r.direct?.latencyMs.p99)} | ` +
          `${f(r.addedP99Ms)} | ${f(r.proxy?.cpuUsPerMessage, 0)} (${f(r.proxy?.mainThreadUsPerMessage, 0)}) | ` +
          `${mb(r.proxy?.rssMaxBytes)} | ${r.lost ?? '-'} | ${otherStolen(r)} | ${warmupCell(r)} |`,
      );
    }
  }
  L.push('');
  return L;
}

export function renderBenchmarksMarkdown(report: MatrixReport): string {
  const m = report.machine;
  const L: string[] = [];
  // the flags the runs were measured with, as each run's report says (not what the source says now)
  const nodeArgs = [...report.runs, ...(report.sweep ?? [])]
    .flatMap((r) => r.steps)
    .map((st) => st.result?.parameters.proxyRun?.nodeArgs)
    .find((a) => a !== undefined);
  const nodeFlags = nodeArgs ? `\`${nodeArgs}\`` : 'none';
  L.push(
    '# Benchmarks',
    '',
    '<!-- generated by `npm run bench` (src/tools/bench/matrix.ts); do not edit by hand -->',
    '',
    `Measured ${report.date} with \`${report.command}\`${report.build ? ` on build ${report.build}` : ''}` +
      `${report.quick ? ' (quick mode: shorter runs, fewer scenarios)' : ''}; ` +
      `the whole matrix took ${f(report.totalSec / 60, 1)} min.`,
    '',
    ...(report.note ? [`> **Note:** ${report.note}`, ''] : []),
    '| machine | |',
    '|---|---|',
    `| CPU | ${m.cpuModel} |`,
    `| cores | ${m.cores} |`,
    `| memory | ${f(m.memoryBytes / 1024 ** 3, 1)} GiB |`,
    `| Node.js | ${m.node} |`,
    `| OS | ${m.os} |`,
    `| load average (1 min) at start | ${f(report.loadAverageAtStart)} |`,
    '',
    '## How it is measured',
    '',
    '- Everything runs on this one machine: the load generator (this process), the proxy (`serve`) and the',
    '  simulated provider (`simulate`), each a single Node.js process, all over loopback. They share the cores,',
    '  so the generator and the simulator take CPU the proxy would otherwise have: the numbers are a floor for',
    '  the proxy, not a ceiling.',
    '- The proxy runs as a user starts it: `xoauth2-proxy serve -c FILE`, i.e. Node with the node flags of the',
    `  executable's shebang (${nodeFlags}) and no others, the default log (info, one line per`,
    '  message, read by the bench through a pipe) and nothing added to its environment (a `GLIBC_TUNABLES` of',
    "  the caller is inherited; both are named in the report's `parameters.proxyRun`).",
    '- Per load step: the **direct** run sends the same load straight to the simulator with AUTH XOAUTH2 (the',
    '  baseline: generator + simulator alone), then the **proxy** run sends it to the proxy with AUTH PLAIN, and',
    '  the proxy relays it upstream with XOAUTH2. "added p99" = proxy p99 - direct p99; "ratio" = proxy msg/s /',
    '  direct msg/s.',
    `- Each run is preceded by ${report.warmupSec} s of the same load that is not measured (JIT, tokens, upstream`,
    `  pools)${report.warmupMessages ? `; in the connections sweep also until the proxy (the simulator, for the direct run) has answered ${report.warmupMessages.toLocaleString('en-US')} messages since it started, for at most 30 s more: V8 is still compiling the message path during the first few thousand (performance.md, "The JIT's warm-up")` : ''},`,
    '  and each connection sends one unmeasured message first. Every message accepted with `250`, warm-up',
    "  included, is then looked up in the simulator's received Message-IDs: **lost** counts those missing.",
    '- Fixed rates are **open loop**: message *i* is due at t0 + i/rate and its latency runs from that due time to',
    '  the final reply, so a stall delays every message due during it instead of being hidden by a waiting',
    '  client. "max" is closed loop: every connection sends its next message as soon as the previous one is',
    '  answered; its latency is per transaction (MAIL to final reply) and mostly shows queueing.',
    '- One transaction = MAIL + RCPT + DATA pipelined in one write, the body after `354` in one write. Latency',
    '  is recorded with HdrHistogram at microsecond resolution, for accepted messages only.',
    `- Each fixed-rate step runs max(${report.stepSec} s, ${report.minMessages} messages / rate), so slow steps still`,
    `  have enough samples for a p99; "max" runs ${report.stepSec} s. These durations keep the full matrix near 15`,
    '  minutes on a 2-core machine; longer runs (`--duration`) give steadier tails.',
    '- Connections = mailboxes, so every mailbox carries traffic; connection *i* authenticates as mailbox *i*.',
    '  The proxy may keep up to max(3, connections / mailboxes) upstream connections per mailbox (the provider',
    "  default); the simulator allows that many plus the direct run's per mailbox.",
    '- Proxy and simulator CPU: utime + stime from `/proc/PID/stat` over the measured window (100 % = one core);',
    '  **proxy µs/msg** is that CPU time (all threads) divided by the messages answered in the window;',
    '  RSS: the peak of `VmRSS` sampled every 250 ms, in MiB (2^20 bytes). Generator CPU and',
    '  event-loop delay are reported so a saturated generator is visible; **other / stolen CPU %** is the whole',
    "  machine's CPU (`/proc/stat`) during the proxy run less the proxy's, the simulator's and the generator's:",
    "  other work sharing the cores; and the CPU time the VM's host stole (`steal`).",
    '',
    '![throughput](bench-throughput.svg)',
    '',
    '![p99 latency](bench-latency.svg)',
    '',
  );
  if (report.sweep?.length) L.push(...renderSweep(report.sweep));
  for (const run of report.runs) {
    const s = run.scenario;
    L.push(
      `## ${s.title}`,
      '',
      `${s.mailboxes} mailboxes, ${s.connections} client connections, ${sizeLabel(s.size)} messages, 1 recipient, ` +
        `upstream ${s.tls ? "STARTTLS (verified against the simulator's certificate)" : 'plain TCP'}.`,
      '',
      '| offered (msg/min) | run (s) | achieved msg/s | p50 ms | p95 ms | p99 ms | max ms | direct msg/s | direct p99 ms | added p99 ms | ratio | proxy CPU % | proxy µs/msg | proxy peak RSS MiB | sim CPU % | gen CPU % | gen loop p99 ms | deferred / rejected / errors | lost | other / stolen CPU % |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    );
    for (const { step, result: r, error } of run.steps) {
      const offered = step.perMinute === undefined ? 'max' : step.perMinute.toLocaleString('en-US');
      if (!r) {
        L.push(
          `| ${offered} | ${step.durationSec} | failed: ${(error ?? 'unknown').replace(/\|/g, '\\|').slice(0, 120)} |||||||||||||||||`,
        );
        continue;
      }
      L.push(
        `| ${offered} | ${f(r.durationSec, 1)} | ${f(r.throughputPerSec, 0)} | ${f(r.latencyMs.p50)} | ${f(r.latencyMs.p95)} | ` +
          `${f(r.latencyMs.p99)} | ${f(r.latencyMs.max)} | ${f(r.direct?.throughputPerSec, 0)} | ${f(r.direct?.latencyMs.p99)} | ` +
          `${f(r.addedP99Ms)} | ${f(r.ratio, 3)} | ${f(r.proxy?.cpuPercent, 0)} | ${f(r.proxy?.cpuUsPerMessage, 0)} | ` +
          `${mb(r.proxy?.rssMaxBytes)} | ` +
          `${f(r.simulator?.cpuPercent, 0)} | ${f(r.generatorCpuPercent, 0)} | ${f(r.eventLoopDelayMs.p99)} | ` +
          `${r.deferred} / ${r.rejected} / ${r.errors}${r.unsent ? ` (+${r.unsent} unsent)` : ''} | ${r.lost ?? '-'} | ` +
          `${otherStolen(r)} |`,
      );
    }
    const failures = new Map<string, number>();
    for (const { result } of run.steps)
      for (const [k, v] of Object.entries(result?.failures ?? {}))
        failures.set(k, (failures.get(k) ?? 0) + v);
    if (failures.size) {
      L.push('', 'Failure replies seen in this scenario:', '');
      for (const [k, v] of failures) L.push(`- ${v} x \`${k.replace(/`/g, "'")}\``);
    }
    L.push('');
  }
  if (report.workers) L.push(renderWorkersSection(report.workers), '');
  return L.join('\n');
}

/** "1 s", or "at least 1 s and 5,000 messages" */
export function warmupText(sec: number, messages: number | undefined): string {
  if (!messages) return `${sec} s`;
  return `at least ${sec} s and ${messages.toLocaleString('en-US')} messages`;
}

/** "5,000, 310" (messages of the warm-up, the proxy's µs per message in it), or "-" */
function warmupCell(r: BenchResult): string {
  const w = r.warmup;
  if (!w) return '-';
  return `${w.messages.toLocaleString('en-US')}, ${f(w.proxyCpuUsPerMessage ?? undefined, 0)}`;
}
