// The "Workers (issue 13)" section of benchmarks.md: its cases, its table, and how it is written
// into the file on its own (between its markers) and kept by a matrix run without it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  extractSection,
  renderWorkersSection,
  spliceSection,
  workersCases,
  type MatrixReport,
  type WorkersPart,
} from '../../../src/tools/bench/markdown.js';
import {
  parseMatrixArgs,
  scenarios,
  writeJsonReport,
  writeMatrixOutputs,
} from '../../../src/tools/bench/matrix.js';
import { formatComparison, type BenchResult } from '../../../src/tools/bench/report.js';

const machine = { cpuModel: 'CPU X', cores: 2, memoryBytes: 2 ** 34, node: 'v20', os: 'Linux' };

function result(workers: number): BenchResult {
  const procs =
    workers === 1
      ? [
          {
            pid: 10,
            role: 'primary' as const,
            cpuSeconds: 1,
            cpuUsPerMessage: 100,
            rssMaxBytes: 2 ** 27,
            cpusAllowed: '0',
          },
        ]
      : [
          {
            pid: 10,
            role: 'primary' as const,
            cpuSeconds: 0.1,
            cpuUsPerMessage: 10,
            rssMaxBytes: 2 ** 26,
            cpusAllowed: '0-1',
          },
          {
            pid: 11,
            role: 'child' as const,
            cpuSeconds: 0.5,
            cpuUsPerMessage: 50,
            rssMaxBytes: 2 ** 27,
            cpusAllowed: '0-1',
          },
          {
            pid: 12,
            role: 'child' as const,
            cpuSeconds: 0.6,
            cpuUsPerMessage: 60,
            rssMaxBytes: 2 ** 27,
            cpusAllowed: '0-1',
          },
        ];
  return {
    sent: 10_000,
    accepted: 10_000,
    deferred: 0,
    rejected: 0,
    errors: 0,
    durationSec: 10,
    throughputPerSec: 1000 * workers,
    latencyMs: { p50: 1, p95: 2, p99: 3, max: 9, mean: 1 },
    proxy: {
      cpuPercent: 10,
      cpuPercentMax: 20,
      cpuSeconds: procs.reduce((n, p) => n + p.cpuSeconds, 0),
      cpuUsPerMessage: procs.reduce((n, p) => n + p.cpuUsPerMessage, 0),
      mainThreadUsPerMessage: 90,
      rssMaxBytes: 300 * 2 ** 20,
      processes: procs,
    },
    upstreamReceived: 10_000,
    lost: 0,
    direct: null,
    ratio: null,
    addedP99Ms: null,
    eventLoopDelayMs: { p50: 0, p99: 0.5, max: 1 },
    simulator: {
      cpuPercent: 20,
      cpuSeconds: 0.2,
      cpuUsPerMessage: 20,
      mainThreadUsPerMessage: 15,
      rssMaxBytes: 1,
    },
    generatorCpuPercent: 30,
    loadAverage: 0.5,
    loadAverages: [0.5, 0.4, 0.3],
    unsent: 0,
    warmupAccepted: 1,
    failures: {},
    parameters: {} as BenchResult['parameters'],
    startedAt: '2025-01-01T00:00:00Z',
  };
}

function part(): WorkersPart {
  const cases = workersCases();
  return {
    date: '2025-01-02',
    command: 'node dist/tools/bench/matrix.js --only workers',
    durationSec: 10,
    warmupSec: 1,
    repeat: 1,
    totalSec: 600,
    machine,
    note: 'busy machine',
    runs: cases.map((c, i) => ({
      case: c,
      round: 1,
      uptime: ' 06:22:32 up 37 min,  0 user,  load average: 4.82, 4.62, 3.56',
      result: i === 8 ? null : result(c.workers),
      error: i === 8 ? 'boom' : undefined,
      summary: i === 8 ? '' : `summary of ${c.id}`,
    })),
  };
}

let dir: string | undefined;
afterEach(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('workers section', () => {
  it('has the cases the issue asks for: 1 vs 2 workers at three loads, and 1 worker pinned', () => {
    const cases = workersCases();
    expect(cases.map((c) => c.id)).toEqual([
      'max-c100-w1',
      'max-c100-w2',
      'max-c100-w1-pinned',
      '833-c10-w1',
      '833-c10-w2',
      '833-c10-w1-pinned',
      '833-c100-w1',
      '833-c100-w2',
      '833-c100-w1-pinned',
    ]);
    expect(cases.every((c) => c.mailboxes === 100)).toBe(true);
    expect(
      cases.filter((c) => c.pin).every((c) => c.workers === 1 && c.pin!.proxy === '0' && c.pin!.load === '1'),
    ).toBe(true);
  });

  it('renders a row per run with the per-process split and the load averages, and the raw output', () => {
    const md = renderWorkersSection(part());
    expect(md.startsWith('<!-- section:workers begin -->\n## Workers (issue 13)')).toBe(true);
    expect(md.endsWith('<!-- section:workers end -->')).toBe(true);
    expect(md).toContain('> **Note:** busy machine');
    expect(md).toContain(
      '| max | 100 | 1 worker | 1 | 1000 | 1.00 | 3.00 | - | 10 | 100 (90) | - | 300 | 20 | 30 | 0 | 4.82, 4.62, 3.56 |',
    );
    expect(md).toContain(
      '| max | 100 | 2 workers | 1 | 2000 | 1.00 | 3.00 | - | 10 | 120 (90) | 10 + 50 + 60 | 300 (64 + 128 + 128) |',
    );
    expect(md).toContain('| max | 100 | 1 worker, proxy on cpu 0, load on cpu 1 | 1 |');
    expect(md).toMatch(
      /\| 833 msg\/s \| 100 \| 1 worker, proxy on cpu 0, load on cpu 1 \| 1 \| failed: boom \|/,
    );
    expect(md).toContain(
      '== 833-c10-w2, round 1\n$ uptime\n 06:22:32 up 37 min,  0 user,  load average: 4.82, 4.62, 3.56\nsummary of 833-c10-w2',
    );
  });

  it('splices into a file: replaces its section, or appends one', () => {
    const a = '# Benchmarks\n\ntext\n';
    const one = spliceSection(
      a,
      'workers',
      '<!-- section:workers begin -->\nold\n<!-- section:workers end -->',
    );
    expect(one).toBe(
      '# Benchmarks\n\ntext\n\n<!-- section:workers begin -->\nold\n<!-- section:workers end -->\n',
    );
    const two = spliceSection(
      one,
      'workers',
      '<!-- section:workers begin -->\nnew $& $1\n<!-- section:workers end -->',
    );
    expect(two).toBe(
      '# Benchmarks\n\ntext\n\n<!-- section:workers begin -->\nnew $& $1\n<!-- section:workers end -->\n',
    );
    expect(extractSection(two, 'workers')).toBe(
      '<!-- section:workers begin -->\nnew $& $1\n<!-- section:workers end -->',
    );
    expect(extractSection(a, 'workers')).toBeUndefined();
  });

  it('a workers-only run rewrites only its section; a matrix run without it keeps it', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-bench-md-'));
    const md = path.join(dir, 'benchmarks.md');
    fs.writeFileSync(md, '# Benchmarks\n\nthe matrix as it was\n');
    const base: MatrixReport = {
      machine,
      date: '2025-01-02',
      command: 'x',
      quick: false,
      warmupSec: 1,
      stepSec: 3,
      minMessages: 100,
      totalSec: 1,
      loadAverageAtStart: 0,
      runs: [],
    };
    expect(writeMatrixOutputs({ ...base, workers: part() }, dir)).toEqual([md]); // no charts rewritten
    const after = fs.readFileSync(md, 'utf8');
    expect(after.startsWith('# Benchmarks\n\nthe matrix as it was\n')).toBe(true);
    expect(after).toContain('## Workers (issue 13)');
    // a matrix run (one scenario, no workers part) regenerates the rest and keeps the section
    const [s1] = scenarios(true);
    writeMatrixOutputs({ ...base, runs: [{ scenario: s1!, steps: [] }] }, dir);
    const matrix = fs.readFileSync(md, 'utf8');
    expect(matrix).not.toContain('the matrix as it was');
    expect(matrix).toContain(`## ${s1!.title}`);
    expect(extractSection(matrix, 'workers')).toBe(extractSection(after, 'workers'));
  });

  it('parses the workers options of the matrix', () => {
    expect(parseMatrixArgs(['--only', 'workers'])).toMatchObject({
      only: ['workers'],
      workersSec: 10,
      repeat: 2,
    });
    expect(parseMatrixArgs(['--only', 'workers', '--workers-sec', '5', '--repeat', '3'])).toMatchObject({
      workersSec: 5,
      repeat: 3,
    });
    expect(() => parseMatrixArgs(['--repeat', '0'])).toThrow(/--repeat: expected an integer/);
    expect(() => parseMatrixArgs(['--workers-sec', '0'])).toThrow(/--workers-sec: expected seconds > 0/);
  });

  it('bench --workers 1,2 compares the runs a row each', () => {
    const one = result(1);
    const two = result(2);
    one.parameters = { workers: 1, pin: { proxy: null, load: null } } as BenchResult['parameters'];
    two.parameters = { workers: 2, pin: { proxy: '0', load: '1' } } as BenchResult['parameters'];
    const lines = formatComparison([one, two]).split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(
      /^workers\s+pin proxy\/load\s+msg\/s\s+p50 ms\s+p99 ms\s+proxy CPU %\s+proxy µs\/msg\s+processes\s+RSS MiB\s+load avg$/,
    );
    expect(lines[1]!.trim().split(/\s{2,}/)).toEqual([
      '1',
      '-',
      '1000',
      '1.00',
      '3.00',
      '10',
      '100',
      '1',
      '300',
      '0.50 0.40 0.30',
    ]);
    expect(lines[2]!.trim().split(/\s{2,}/)).toEqual([
      '2',
      '0/1',
      '2000',
      '1.00',
      '3.00',
      '10',
      '120',
      '3',
      '300',
      '0.50 0.40 0.30',
    ]);
  });
});

describe('the matrix JSON report', () => {
  it('is written into a directory that does not exist yet (a finished matrix run lost its report)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-matrix-json-'));
    try {
      const file = path.join(dir, 'not', 'there', 'workers.json');
      writeJsonReport(file, { runs: [1, 2] });
      expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual({ runs: [1, 2] });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
