// The standard benchmark matrix (`npm run bench` = build + `node dist/tools/bench/matrix.js`):
// offered loads 1k, 5k, 10k, 20k, 50k msg/min, then max, for every combination of
// {100, 1,000 mailboxes} x {2 KB, 100 KB messages} x {plain, STARTTLS upstream}.
// Then the connections sweep: 1, 10, 50 and 100 connections at 833 msg/s (10 mailboxes) and at max
// (100 mailboxes), plain and STARTTLS upstream, --sweep seconds per step (default 10; 0 = none).
// Writes docs/benchmarks.md, docs/bench-throughput.svg and docs/bench-latency.svg.
// `--only workers` (issue 13, not part of the default run): 1 vs 2 workers at max (100 connections)
// and at 833 msg/s (10 and 100 connections), and 1 worker pinned to cpu 0 with the load on cpu 1,
// --repeat rounds of --workers-sec seconds; run alone it rewrites only the section "Workers (issue 13)"
// of benchmarks.md (between its markers), and a full matrix run keeps that section as it was.
//
//   node dist/tools/bench/matrix.js [--quick] [--duration SEC] [--warmup SEC] [--only ID,ID|sweep] [--out-dir DIR]
//                             [--json FILE] [--cli FILE] [--note TEXT] [--sweep SEC] [--quiet]
//
// Durations: each step runs max(--duration, minMessages / rate) seconds, direct and proxy, each after
// 1 s of warm-up. Default 3 s and 100 messages (the 1k msg/min step runs 6 s, so its p99 is not just
// its maximum). Chosen so the full matrix takes ~15 min on a 2-core machine: with 4 s / 150 messages
// it took 17.5 min there, about half of it connection set-up, warm-up and start-up (1,000-mailbox
// scenarios pay one scrypt password check per account on first AUTH).
// --quick: 2 s steps (>= 50 messages), two scenarios only: a smoke test of the whole pipeline.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OptionValues } from 'commander';
import { CLI_PATH, startBenchEnv } from '../harness/env.js';
import { execFileSync } from 'node:child_process';
import {
  renderBenchmarksMarkdown,
  chartSvgs,
  extractSection,
  renderWorkersSection,
  SECTION_WORKERS,
  spliceSection,
  sweepScenarios,
  workersCases,
  type WorkersRun,
  type LoadStep,
  type MatrixReport,
  type ScenarioRun,
  type ScenarioSpec,
} from './markdown.js';
import { BENCH_DEFAULTS, type BenchOptions } from './options.js';
import { formatSummary } from './report.js';
import { runBench } from './run.js';
import { runUntilQuiet } from './quiet-retry.js';
import { buildOf } from './build-id.js';
import { parseToolArgs, runTool, toolCommand, type Tool } from '../harness/tool-cli.js';

/** a step measured on a machine that was not quiet is measured again, at most this often in all */
export const QUIET_ATTEMPTS = 3;

function buildField(cli: string): { build?: string } {
  const build = buildOf(cli);
  return build ? { build } : {};
}

/** what every measured run of the matrix shares: one recipient, the bench's users, the direct run */
function sharedRunOptions(o: MatrixOptions) {
  return {
    recipients: 1,
    userPrefix: BENCH_DEFAULTS.userPrefix,
    userDomain: BENCH_DEFAULTS.userDomain,
    direct: true,
    warmupSec: o.warmupSec,
    warmupMessages: o.warmupMessages,
    quiet: o.quiet,
  } satisfies Partial<BenchOptions>;
}

/** one step of a scenario or of the sweep: its load on its shape of mailboxes and connections */
function stepRunOptions(
  o: MatrixOptions,
  shape: { mailboxes: number; connections: number; size: number; tls: boolean },
  step: LoadStep,
): BenchOptions {
  return {
    mailboxes: shape.mailboxes,
    connections: shape.connections,
    rate: step.perMinute === undefined ? undefined : step.perMinute / 60,
    durationSec: step.durationSec,
    size: shape.size,
    tls: shape.tls,
    ...sharedRunOptions(o),
  };
}

export const LOADS_PER_MINUTE = [1_000, 5_000, 10_000, 20_000, 50_000] as const;

export interface MatrixOptions {
  quick: boolean;
  /** seconds per step (at least; see minMessages) */
  durationSec: number;
  minMessages: number;
  warmupSec: number;
  /** the warm-up also lasts until the proxy has answered this many messages since it started */
  warmupMessages: number;
  /** scenario ids to run (default all) */
  only?: string[];
  outDir: string;
  json?: string;
  quiet: boolean;
  /** dist/cli.js to run (default: the one next to this file) */
  cli?: string;
  /** shown in benchmarks.md under the header */
  note?: string;
  /** seconds per step of the connections sweep (sweepScenarios); 0 = no sweep */
  sweepSec: number;
  /** the workers part (workersCases): seconds per run, and how many rounds */
  workersSec: number;
  repeat: number;
}

export function scenarios(quick: boolean): ScenarioSpec[] {
  const all: ScenarioSpec[] = [];
  for (const tls of [false, true])
    for (const size of [2048, 102_400])
      for (const mailboxes of [100, 1000])
        all.push({
          id: `m${mailboxes}-${size / 1024}k-${tls ? 'tls' : 'plain'}`,
          title: `${mailboxes.toLocaleString('en-US')} mailboxes, ${size / 1024} KB, ${tls ? 'STARTTLS' : 'plain'} upstream`,
          mailboxes,
          connections: mailboxes,
          size,
          tls,
        });
  return quick ? all.filter((s) => s.id === 'm100-2k-plain' || s.id === 'm100-2k-tls') : all;
}

export function loadSteps(o: Pick<MatrixOptions, 'durationSec' | 'minMessages'>): LoadStep[] {
  return [
    ...LOADS_PER_MINUTE.map((perMinute) => ({
      label: perMinute >= 1000 ? `${perMinute / 1000}k` : String(perMinute),
      perMinute,
      durationSec: Math.max(o.durationSec, Math.ceil(o.minMessages / (perMinute / 60))),
    })),
    { label: 'max', durationSec: o.durationSec },
  ];
}

function messagesOption(raw: unknown): number {
  const n = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !Number.isInteger(n) || n < 0)
    throw new Error('--warmup-messages: expected an integer >= 0');
  return n;
}

const matrixTool: Tool<MatrixOptions> = {
  program: () =>
    toolCommand(
      'npm run bench --',
      'the standard benchmark matrix: every scenario at 1k..50k msg/min and max; writes docs/benchmarks.md and its charts',
    )
      .option('--quick', 'two scenarios, 2 s steps (>= 50 messages): a smoke test of the whole pipeline')
      .option('--duration <sec>', 'seconds per step, at least (default 3, 2 with --quick)')
      .option('--warmup <sec>', 'warm-up before each measured run', '1')
      .option(
        '--warmup-messages <n>',
        'the warm-up also lasts until the proxy (the simulator, for direct runs) has answered this many messages since it started (0 = seconds alone; default 5000, 0 with --quick)',
      )
      .option('--only <ids>', 'comma-separated scenario ids, e.g. m100-2k-plain')
      .option('--out-dir <dir>', 'where benchmarks.md and the charts go (default docs/)')
      .option('--json <file>', 'also write the JSON report here')
      .option('--cli <file>', 'the dist/cli.js to run (default: the one of this build)')
      .option('--note <text>', 'shown in benchmarks.md under the header')
      .option(
        '--sweep <sec>',
        'seconds per step of the connections sweep (1/10/50/100 connections at 833 msg/s and max); 0 = none (default 10, 0 with --quick)',
      )
      .option(
        '--workers-sec <sec>',
        'seconds per run of the workers part (--only workers: 1 vs 2 workers, and pinned)',
        '10',
      )
      .option('--repeat <n>', 'rounds of the workers part (each case once per round)', '2')
      .option('--quiet', 'no progress lines of the load generator'),
  check(v: OptionValues): MatrixOptions {
    const quick = v.quick === true;
    const seconds = (name: string, raw: unknown, ok: (n: number) => boolean, want: string) => {
      const n = Number(raw);
      if (typeof raw !== 'string' || raw.trim() === '' || !ok(n))
        throw new Error(`--${name}: expected seconds ${want}`);
      return n;
    };
    const o: MatrixOptions = {
      quick,
      durationSec:
        v.duration === undefined ? (quick ? 2 : 3) : seconds('duration', v.duration, (n) => n > 0, '> 0'),
      minMessages: quick ? 50 : 100,
      warmupSec: seconds('warmup', v.warmup, (n) => n >= 0, '>= 0'),
      warmupMessages: v.warmupMessages === undefined ? (quick ? 0 : 5000) : messagesOption(v.warmupMessages),
      outDir: v.outDir
        ? path.resolve(v.outDir as string)
        : fileURLToPath(new URL('../../../docs/', import.meta.url)),
      quiet: v.quiet === true,
      ...(v.only !== undefined ? { only: (v.only as string).split(',') } : {}),
      ...(v.json !== undefined ? { json: path.resolve(v.json as string) } : {}),
      ...(v.cli !== undefined ? { cli: path.resolve(v.cli as string) } : {}),
      ...(v.note !== undefined ? { note: v.note as string } : {}),
      sweepSec: v.sweep === undefined ? (quick ? 0 : 10) : seconds('sweep', v.sweep, (n) => n >= 0, '>= 0'),
      workersSec: seconds('workers-sec', v.workersSec, (n) => n > 0, '> 0'),
      repeat: (() => {
        const n = Number(v.repeat);
        if (!Number.isInteger(n) || n < 1 || n > 100)
          throw new Error('--repeat: expected an integer from 1 to 100');
        return n;
      })(),
    };
    if (o.only) {
      const known = [...scenarios(false).map((s) => s.id), 'sweep', 'workers'];
      for (const id of o.only)
        if (!known.includes(id))
          throw new Error(`--only: unknown scenario "${id}" (known: ${known.join(', ')})`);
    }
    return o;
  },
};

export const parseMatrixArgs = (argv: string[]): MatrixOptions => parseToolArgs(matrixTool, argv);

export async function runMatrix(o: MatrixOptions, command: string): Promise<MatrixReport> {
  const started = Date.now();
  const stamp = () => {
    const sec = Math.round((Date.now() - started) / 1000);
    return `[${String(Math.floor(sec / 60)).padStart(2, '0')}:${String(sec % 60).padStart(2, '0')}]`;
  };
  const log = (s: string) => process.stderr.write(`${stamp()} ${s}\n`);
  const runs: ScenarioRun[] = [];
  const list = scenarios(o.quick && !o.only).filter((s) => !o.only || o.only.includes(s.id));
  // not in the default run: it is 9 runs x --repeat with a fresh proxy each
  const workers = o.only?.includes('workers') ?? false;
  const sweep = o.sweepSec > 0 && (!o.only || o.only.includes('sweep')) ? sweepScenarios(o.sweepSec) : [];
  const report: MatrixReport = {
    machine: {
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      memoryBytes: os.totalmem(),
      node: process.version,
      os: `${os.type()} ${os.release()} ${os.arch()}`,
    },
    date: new Date().toISOString().slice(0, 10),
    command,
    ...buildField(o.cli ?? CLI_PATH),
    quick: o.quick,
    warmupSec: o.warmupSec,
    warmupMessages: o.warmupMessages,
    stepSec: o.durationSec,
    minMessages: o.minMessages,
    totalSec: 0,
    loadAverageAtStart: Math.round(os.loadavg()[0]! * 100) / 100,
    note: o.note,
    runs,
  };
  for (const scenario of list) {
    log(`== ${scenario.title}`);
    const run: ScenarioRun = { scenario, steps: [] };
    runs.push(run);
    const env = await startBenchEnv({
      mailboxes: scenario.mailboxes,
      connections: scenario.connections,
      tls: scenario.tls,
      userPrefix: BENCH_DEFAULTS.userPrefix,
      userDomain: BENCH_DEFAULTS.userDomain,
      recipients: 1,
      cli: o.cli,
      logAsServed: true, // as bench measures it: the proxy as a user runs it
    });
    try {
      for (const step of loadSteps(o)) {
        const opts: BenchOptions = {
          ...stepRunOptions(o, scenario, step),
          // seconds alone: the steps climb from 1k msg/min on one proxy, and waiting for the
          // messages at the low steps would add ~2 min per scenario (the sweep has them)
          warmupMessages: 0,
        };
        log(`-- ${scenario.id} @ ${step.label} msg/min for ${step.durationSec} s`);
        try {
          const { result, attempts } = await runUntilQuiet(
            () => runBench(opts, { env }),
            QUIET_ATTEMPTS,
            log,
          );
          log(formatSummary(result));
          run.steps.push({ step, result, ...(attempts > 1 ? { attempts } : {}) });
        } catch (err) {
          log(`   failed: ${(err as Error).message}`);
          run.steps.push({ step, result: null, error: (err as Error).message });
        }
      }
    } finally {
      await env.close();
    }
  }
  if (sweep.length) report.sweep = [];
  for (const spec of sweep) {
    log(`== sweep: ${spec.title}`);
    const run: ScenarioRun = { scenario: spec, steps: [] };
    report.sweep!.push(run);
    const { step } = spec;
    try {
      const env = await startBenchEnv({
        mailboxes: spec.mailboxes,
        connections: spec.connections,
        tls: spec.tls,
        userPrefix: BENCH_DEFAULTS.userPrefix,
        userDomain: BENCH_DEFAULTS.userDomain,
        recipients: 1,
        cli: o.cli,
        logAsServed: true,
      });
      try {
        const { result, attempts } = await runUntilQuiet(
          () => runBench(stepRunOptions(o, spec, step), { env }),
          QUIET_ATTEMPTS,
          log,
        );
        log(formatSummary(result));
        run.steps.push({ step, result, ...(attempts > 1 ? { attempts } : {}) });
      } finally {
        await env.close();
      }
    } catch (err) {
      log(`   failed: ${(err as Error).message}`);
      run.steps.push({ step, result: null, error: (err as Error).message });
    }
  }
  if (workers) report.workers = await runWorkersPart(o, command, report.machine, log);
  report.totalSec = Math.round((Date.now() - started) / 1000);
  return report;
}

/** `uptime`'s line (load averages 1, 5, 15 min), or the same from os.loadavg() where it is missing. */
function uptime(): string {
  try {
    return execFileSync('uptime', { encoding: 'utf8' }).trim();
  } catch {
    return `load average: ${os
      .loadavg()
      .map((n) => n.toFixed(2))
      .join(', ')}`;
  }
}

async function runWorkersPart(
  o: MatrixOptions,
  command: string,
  machine: MatrixReport['machine'],
  log: (s: string) => void,
): Promise<NonNullable<MatrixReport['workers']>> {
  const started = Date.now();
  const runs: WorkersRun[] = [];
  for (let round = 1; round <= o.repeat; round++)
    for (const c of workersCases()) {
      log(`== workers: ${c.id}, round ${round}`);
      const up = uptime();
      try {
        const result = await runBench(
          {
            mailboxes: c.mailboxes,
            connections: c.connections,
            rate: c.rate === 'max' ? undefined : c.rate,
            durationSec: o.workersSec,
            size: 2048,
            tls: false,
            ...sharedRunOptions(o),
            workers: [c.workers],
            ...(c.pin ? { pinProxy: c.pin.proxy, pinLoad: c.pin.load } : {}),
          },
          { cli: o.cli },
        );
        const summary = formatSummary(result);
        log(summary);
        runs.push({ case: c, round, uptime: up, result, summary });
      } catch (err) {
        log(`   failed: ${(err as Error).message}`);
        runs.push({ case: c, round, uptime: up, result: null, error: (err as Error).message, summary: '' });
      }
    }
  return {
    date: new Date().toISOString().slice(0, 10),
    command,
    durationSec: o.workersSec,
    warmupSec: o.warmupSec,
    warmupMessages: o.warmupMessages,
    repeat: o.repeat,
    totalSec: Math.round((Date.now() - started) / 1000),
    machine,
    runs,
    ...(o.note !== undefined ? { note: o.note } : {}),
  };
}

/** The JSON report; its directory is made first (the runs took minutes: a missing one must not lose them). */
export function writeJsonReport(file: string, report: unknown): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
}

export function writeMatrixOutputs(report: MatrixReport, outDir: string): string[] {
  fs.mkdirSync(outDir, { recursive: true });
  const mdFile = path.join(outDir, 'benchmarks.md');
  const old = fs.existsSync(mdFile) ? fs.readFileSync(mdFile, 'utf8') : undefined;
  let files: Record<string, string>;
  if (report.workers && report.runs.length === 0 && !report.sweep?.length && old !== undefined) {
    // the workers part alone: its section, the rest of the file and the charts as they were
    files = { 'benchmarks.md': spliceSection(old, SECTION_WORKERS, renderWorkersSection(report.workers)) };
  } else {
    const { throughput, latency } = chartSvgs(report);
    let md = renderBenchmarksMarkdown(report);
    // a matrix run without the workers part keeps the section of an earlier one
    const kept = report.workers || old === undefined ? undefined : extractSection(old, SECTION_WORKERS);
    if (kept) md = spliceSection(md, SECTION_WORKERS, kept);
    files = { 'benchmarks.md': md, 'bench-throughput.svg': throughput, 'bench-latency.svg': latency };
  }
  const written: string[] = [];
  for (const [name, text] of Object.entries(files)) {
    const file = path.join(outDir, name);
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, file);
    written.push(file);
  }
  return written;
}

runTool(import.meta.url, 'bench matrix', matrixTool, async (o, argv) => {
  const args = argv.join(' ');
  const command =
    process.env.npm_lifecycle_event === 'bench'
      ? `npm run bench${args ? ` -- ${args}` : ''}`
      : `node dist/tools/bench/matrix.js${args ? ` ${args}` : ''}`;
  const report = await runMatrix(o, command);
  if (o.json) writeJsonReport(o.json, report);
  for (const f of writeMatrixOutputs(report, o.outDir)) process.stderr.write(`wrote ${f}\n`);
  const lost = [...report.runs, ...(report.sweep ?? [])]
    .flatMap((r) => r.steps)
    .reduce((n, s) => n + (s.result?.lost ?? 0), 0);
  if (lost > 0) {
    process.stderr.write(`bench matrix: ${lost} messages lost\n`);
    return 1;
  }
  return 0;
});
