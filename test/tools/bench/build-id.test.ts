import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildOf, describeBuild } from '../../../src/tools/bench/build-id.js';
import { renderBenchmarksMarkdown, type MatrixReport } from '../../../src/tools/bench/markdown.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function checkout(): { root: string; cli: string; commit: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-build-id-'));
  dirs.push(root);
  const git = (...a: string[]) => execFileSync('git', ['-C', root, ...a], { encoding: 'utf8' }).trim();
  git('init', '-q');
  fs.mkdirSync(path.join(root, 'src'));
  fs.mkdirSync(path.join(root, 'dist'));
  fs.writeFileSync(path.join(root, 'src', 'a.ts'), 'export const a = 1;\n');
  git('add', 'src');
  git('-c', 'user.email=dev@example.com', '-c', 'user.name=dev', 'commit', '-q', '-m', 'x');
  return { root, cli: path.join(root, 'dist', 'cli.js'), commit: git('rev-parse', '--short', 'HEAD') };
}

describe('the build a benchmark page names', () => {
  it('is the commit of the checkout the measured cli.js is in', () => {
    const { cli, commit } = checkout();
    expect(buildOf(cli)).toBe(commit);
  });

  it('says so when src/ has changes the commit does not hold', () => {
    const { root, cli, commit } = checkout();
    fs.writeFileSync(path.join(root, 'src', 'a.ts'), 'export const a = 2;\n');
    expect(buildOf(cli)).toBe(`${commit} with uncommitted changes`);
    expect(describeBuild('abc1234', false)).toBe('abc1234');
  });

  it('is absent outside a git checkout (an npm install)', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-build-id-'));
    dirs.push(root);
    expect(buildOf(path.join(root, 'cli.js'))).toBeUndefined();
  });

  it('is named in the header of benchmarks.md', () => {
    const report: MatrixReport = {
      machine: { cpuModel: 'CPU X', cores: 2, memoryBytes: 2 ** 34, node: 'v20', os: 'Linux' },
      date: '2026-12-03',
      command: 'npm run bench',
      build: 'abc1234',
      quick: false,
      warmupSec: 1,
      stepSec: 3,
      minMessages: 100,
      totalSec: 60,
      loadAverageAtStart: 0,
      runs: [],
    };
    expect(renderBenchmarksMarkdown(report)).toContain(
      'Measured 2026-12-03 with `npm run bench` on build abc1234; the whole matrix took 1.0 min.',
    );
    const { build: _, ...without } = report;
    expect(renderBenchmarksMarkdown(without)).toContain(
      'Measured 2026-12-03 with `npm run bench`; the whole',
    );
  });
});
