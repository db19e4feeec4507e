import { describe, expect, it } from 'vitest';
import {
  chartSvgs,
  renderBenchmarksMarkdown,
  renderSweep,
  sweepScenarios,
  type MatrixReport,
} from '../../../src/tools/bench/markdown.js';
import { loadSteps, parseMatrixArgs, scenarios } from '../../../src/tools/bench/matrix.js';
import type { BenchResult } from '../../../src/tools/bench/report.js';
import { niceCeil, renderLineChart } from '../../../src/tools/bench/svg.js';

/** Tags balance and every element is closed: a tiny well-formedness check for our own output. */
function wellFormed(svg: string): boolean {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    const [, close, name, selfClose] = m;
    if (selfClose) continue;
    if (close) {
      if (stack.pop() !== name) return false;
    } else stack.push(name!);
  }
  return stack.length === 0;
}

describe('renderLineChart', () => {
  it('draws one polyline per series through the given points', () => {
    const svg = renderLineChart({
      title: 'T <&>',
      xLabel: 'x',
      yLabel: 'y',
      categories: ['1k', '5k', 'max'],
      series: [
        { name: 'a', values: [10, 20, 40] },
        { name: 'b & c', values: [5, null, 15] },
      ],
      width: 600,
      height: 400,
    });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(wellFormed(svg)).toBe(true);
    expect(svg).toContain('T &lt;&amp;&gt;');
    expect(svg).toContain('b &amp; c');
    const polylines = [...svg.matchAll(/<polyline [^>]*points="([^"]+)"/g)].map((m) => m[1]!.split(' '));
    // series a: one line of 3 points; series b: a gap at 5k, so no line segment of 2+ points
    expect(polylines).toHaveLength(1);
    expect(polylines[0]).toHaveLength(3);
    // y axis: 0..50 (nice ceiling of 40 * 1.05), plot area 60..340 (height 400 - 40 top - 60 bottom)
    const ys = polylines[0]!.map((p) => Number(p.split(',')[1]));
    expect(ys[0]).toBeCloseTo(340 - (10 / 50) * 300, 0);
    expect(ys[2]).toBeCloseTo(340 - (40 / 50) * 300, 0);
    // x: evenly spaced categories
    const xs = polylines[0]!.map((p) => Number(p.split(',')[0]));
    expect(xs[1]! - xs[0]!).toBeCloseTo(xs[2]! - xs[1]!, 5);
    expect(svg.match(/<circle /g)).toHaveLength(5);
  });

  it('log scale: powers of ten, non-positive values left out', () => {
    const svg = renderLineChart({
      title: 't',
      xLabel: 'x',
      yLabel: 'y',
      categories: ['a', 'b', 'c'],
      series: [{ name: 's', values: [0.5, 0, 250] }],
      width: 600,
      height: 400,
      logY: true,
    });
    expect(wellFormed(svg)).toBe(true);
    for (const t of ['0.1', '1', '10', '100', '1000']) expect(svg).toContain(`>${t}</text>`);
    expect(svg.match(/<circle /g)).toHaveLength(2);
    expect(svg).not.toContain('<polyline');
  });

  it('niceCeil', () => {
    expect(niceCeil(42)).toBe(50);
    expect(niceCeil(10_500)).toBe(20_000);
    expect(niceCeil(0)).toBe(1);
  });
});

const fakeResult = (tput: number, p99: number): BenchResult => ({
  sent: 100,
  accepted: 100,
  deferred: 0,
  rejected: 0,
  errors: 0,
  durationSec: 1,
  throughputPerSec: tput,
  latencyMs: { p50: 1, p95: 2, p99, max: 9, mean: 1 },
  proxy: {
    cpuPercent: 50,
    cpuPercentMax: 60,
    cpuSeconds: 0.5,
    cpuUsPerMessage: 5000,
    mainThreadUsPerMessage: 4000,
    rssMaxBytes: 100 * 1024 * 1024,
  },
  upstreamReceived: 101,
  lost: 0,
  direct: {
    sent: 100,
    accepted: 100,
    deferred: 0,
    rejected: 0,
    errors: 0,
    durationSec: 1,
    throughputPerSec: tput,
    latencyMs: { p50: 1, p95: 1, p99: 1, max: 2, mean: 1 },
    eventLoopDelayMs: { p50: 0, p99: 0, max: 0 },
  },
  ratio: 1,
  addedP99Ms: p99 - 1,
  eventLoopDelayMs: { p50: 0, p99: 0.5, max: 1 },
  simulator: {
    cpuPercent: 20,
    cpuSeconds: 0.2,
    cpuUsPerMessage: 2000,
    mainThreadUsPerMessage: 1500,
    rssMaxBytes: 1,
  },
  generatorCpuPercent: 30,
  loadAverage: 0.5,
  unsent: 0,
  warmupAccepted: 1,
  failures: {},
  parameters: {
    proxyRun: { glibcTunables: null, nodeArgs: '--fake-flag=1', log: 'as served' },
  } as BenchResult['parameters'],
  startedAt: '2025-01-01T00:00:00Z',
});

describe('benchmarks.md', () => {
  it('renders machine, command, one table per scenario and embeds the charts', () => {
    const steps = loadSteps({ durationSec: 4, minMessages: 150 });
    expect(steps.map((s) => s.label)).toEqual(['1k', '5k', '10k', '20k', '50k', 'max']);
    expect(steps[0]!.durationSec).toBe(9); // 150 messages at 16.7 msg/s
    const [s1, s2] = scenarios(true);
    const report: MatrixReport = {
      machine: { cpuModel: 'CPU X', cores: 2, memoryBytes: 2 ** 34, node: 'v20', os: 'Linux' },
      date: '2025-01-01',
      command: 'npm run bench',
      quick: true,
      warmupSec: 1,
      stepSec: 4,
      minMessages: 150,
      totalSec: 90,
      loadAverageAtStart: 0.1,
      note: 'a note',
      runs: [
        {
          scenario: s1!,
          steps: steps.map((step, i) => ({ step, result: fakeResult(100 * (i + 1), 2 + i) })),
        },
        { scenario: s2!, steps: steps.map((step) => ({ step, result: null, error: 'boom | x' })) },
      ],
    };
    const md = renderBenchmarksMarkdown(report);
    expect(md).toContain('| CPU | CPU X |');
    expect(md).toContain('> **Note:** a note');
    expect(md).toContain('`npm run bench`');
    // the node flags the runs report, not a copy of the source's
    expect(md).toContain("executable's shebang (`--fake-flag=1`)");
    expect(md).toContain('![throughput](bench-throughput.svg)');
    expect(md).toContain(`## ${s1!.title}`);
    expect(md).toMatch(/\| 50,000 \| 1\.0 \| 500 \| 1\.00 \| 2\.00 \| 6\.00 \|/);
    expect(md).toContain('failed: boom \\| x');
    const { throughput, latency } = chartSvgs(report);
    expect(wellFormed(throughput) && wellFormed(latency)).toBe(true);
    expect([...throughput.matchAll(/<polyline /g)]).toHaveLength(1); // the failed scenario has no line
  });

  it('parses matrix arguments', () => {
    expect(parseMatrixArgs(['--quick'])).toMatchObject({ quick: true, durationSec: 2 });
    // the warm-up waits for 5,000 messages, except in the smoke test
    expect(parseMatrixArgs([])).toMatchObject({ warmupSec: 1, warmupMessages: 5000 });
    expect(parseMatrixArgs(['--quick'])).toMatchObject({ warmupMessages: 0 });
    expect(parseMatrixArgs(['--warmup-messages', '200'])).toMatchObject({ warmupMessages: 200 });
    expect(() => parseMatrixArgs(['--warmup-messages', 'x'])).toThrow(
      /--warmup-messages: expected an integer/,
    );
    expect(parseMatrixArgs(['--duration', '3', '--only', 'm100-2k-tls'])).toMatchObject({
      durationSec: 3,
      only: ['m100-2k-tls'],
    });
    expect(() => parseMatrixArgs(['--only', 'nope'])).toThrow(/--only: unknown scenario "nope"/);
    expect(() => parseMatrixArgs(['--bogus'])).toThrow(/unknown option '--bogus'/);
    expect(scenarios(false)).toHaveLength(8);
    expect(parseMatrixArgs([])).toMatchObject({ sweepSec: 10 });
    expect(parseMatrixArgs(['--quick'])).toMatchObject({ sweepSec: 0 });
    expect(parseMatrixArgs(['--sweep', '4', '--only', 'sweep'])).toMatchObject({
      sweepSec: 4,
      only: ['sweep'],
    });
    expect(() => parseMatrixArgs(['--sweep', 'x'])).toThrow(/--sweep: expected seconds >= 0/);
  });

  it('renders the connections sweep as one table: load, upstream, connections, CPU per message', () => {
    const specs = sweepScenarios(10);
    expect(specs).toHaveLength(16);
    expect(specs.map((s) => s.connections).slice(0, 4)).toEqual([1, 10, 50, 100]);
    expect(specs.filter((s) => s.step.perMinute === 50_000).every((s) => s.mailboxes === 10)).toBe(true);
    expect(specs.filter((s) => s.step.label === 'max').every((s) => s.mailboxes === 100)).toBe(true);
    const sweep = specs.slice(0, 2).map((scenario) => ({
      scenario,
      steps: [{ step: scenario.step, result: fakeResult(833, 3) }],
    }));
    sweep.push({
      scenario: specs[15]!,
      steps: [{ step: specs[15]!.step, result: null, error: 'boom' }],
    } as never);
    const md = renderSweep(sweep);
    expect(md[0]).toBe('## Connections: 1 to 100, at 833 msg/s and at the maximum');
    expect(md).toContain(
      '| 833 msg/s | plain | 1 | 833 | 833 | 1.000 | 1.00 | 3.00 | 1.00 | 2.00 | 5000 (4000) | 100 | 0 | - | - |',
    );
    // the machine's other work during the proxy run, when the run measured it
    const quiet = fakeResult(833, 3);
    quiet.machine = { cores: 2, busyPercent: 80, otherPercent: 27.4, stealPercent: 0 };
    // and the warm-up before it: its messages and the proxy's CPU per message in it
    quiet.warmup = { messages: 5000, durationSec: 6.1, proxyCpuUsPerMessage: 312 };
    expect(
      renderSweep([{ scenario: specs[0]!, steps: [{ step: specs[0]!.step, result: quiet }] }]),
    ).toContain(
      '| 833 msg/s | plain | 1 | 833 | 833 | 1.000 | 1.00 | 3.00 | 1.00 | 2.00 | 5000 (4000) | 100 | 0 | 27 / 0 | 5,000, 312 |',
    );
    expect(md.some((l) => l.startsWith('| max | STARTTLS | 100 | failed: boom'))).toBe(true);
  });
});
