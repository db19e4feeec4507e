import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { binNodeFlags, shebangNodeFlags } from '../../../src/tools/harness/bin-flags.js';

const CLI_SRC = path.resolve('src/cli.ts');
const CLI = path.resolve(process.env.XO_DIST ?? 'dist', 'cli.js');

describe("the executable's node flags", () => {
  it('are read from the shebang line', () => {
    expect(shebangNodeFlags('#!/usr/bin/env -S node --max-semi-space-size=4 --foo')).toEqual([
      '--max-semi-space-size=4',
      '--foo',
    ]);
    expect(shebangNodeFlags('#!/usr/bin/env node')).toEqual([]);
    expect(shebangNodeFlags('#!/usr/local/bin/node --x')).toEqual(['--x']);
    expect(shebangNodeFlags('// not a shebang')).toEqual([]);
  });

  it('cap the young generation and V8 background threads, in the source and in the build, and the shebang starts the CLI', () => {
    expect(binNodeFlags(CLI_SRC)).toContain('--max-semi-space-size=4');
    expect(binNodeFlags(CLI_SRC)).toContain('--v8-pool-size=1');
    expect(binNodeFlags(CLI)).toEqual(binNodeFlags(CLI_SRC));
    // what the kernel runs for `xoauth2-proxy ...`: the interpreter line, then the script
    const line = fs.readFileSync(CLI, 'utf8').split('\n')[0]!.slice(2).trim();
    const [interpreter, ...rest] = line.split(' ');
    const r = spawnSync(interpreter!, [rest.join(' '), CLI, '--version'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("are the systemd unit's too", () => {
    const unit = fs.readFileSync(path.resolve('deploy/xoauth2-proxy.service'), 'utf8');
    const exec = unit.split('\n').find((l) => l.startsWith('ExecStart='))!;
    const words = exec.slice('ExecStart='.length).split(/\s+/);
    const script = words.findIndex((w) => w.endsWith('/cli.js'));
    expect(words.slice(1, script)).toEqual(binNodeFlags(CLI_SRC));
  });
});
