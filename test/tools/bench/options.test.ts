import { Command } from 'commander';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { registerBenchCommand } from '../../../src/tools/bench/command.js';
import {
  BenchOptionError,
  onPath,
  parseBenchOptions,
  parseCpuList,
} from '../../../src/tools/bench/options.js';

describe('parseBenchOptions', () => {
  it('applies the defaults', () => {
    const o = parseBenchOptions({ max: true });
    expect(o).toMatchObject({
      mailboxes: 100,
      connections: 50,
      rate: undefined,
      durationSec: 10,
      size: 2048,
      recipients: 1,
      tls: false,
      direct: true,
      warmupSec: 1,
      warmupMessages: 5000,
      quiet: false,
    });
    expect(parseBenchOptions({ rate: '833', count: '1000' })).toMatchObject({
      rate: 833,
      count: 1000,
      durationSec: undefined,
    });
  });

  const bad: [Record<string, unknown>, RegExp][] = [
    [{}, /^--rate: give --rate <msg\/s> or --max$/],
    [{ rate: '10', max: true }, /^--rate: give either --rate or --max/],
    [{ rate: 'abc' }, /^--rate: expected a number/],
    [{ max: true, mailboxes: '0' }, /^--mailboxes: expected an integer from 1/],
    [{ max: true, connections: '2.5' }, /^--connections: expected an integer/],
    [{ max: true, duration: '-1' }, /^--duration: /],
    [{ max: true, count: 'x' }, /^--count: /],
    [{ max: true, size: '10' }, /^--size: expected an integer from 256/],
    [{ max: true, recipients: '0' }, /^--recipients: /],
    [{ max: true, target: 'nonsense' }, /^--target: "nonsense" is not HOST:PORT/],
    [{ max: true, target: '127.0.0.1:2525' }, /^--password: required with --target/],
    [{ max: true, target: '127.0.0.1:2525', password: 'x', tls: true }, /^--tls: /],
    [{ max: true, proxyPid: '123' }, /^--proxy-pid: only with --target/],
    [{ max: true, userPrefix: 'a b' }, /^--user-prefix: /],
    [{ max: true, warmup: '-2' }, /^--warmup: /],
    [{ max: true, warmupMessages: '1.5' }, /^--warmup-messages: expected an integer/],
    [{ max: true, workers: '0' }, /^--workers: expected an integer from 1 to 1024, got "0"/],
    [{ max: true, workers: '1,x' }, /^--workers: expected an integer/],
    [{ max: true, workers: '2,2' }, /^--workers: "2,2" names a count twice/],
    [
      { max: true, workers: '2', target: '127.0.0.1:2525', password: 'x' },
      /^--workers: only when bench starts/,
    ],
    [{ max: true, pinProxy: '0', target: '127.0.0.1:2525', password: 'x' }, /^--pin-proxy: only when/],
    [{ max: true, pinProxy: 'a' }, /^--pin-proxy: expected a CPU list/],
    [{ max: true, pinLoad: '0,' }, /^--pin-load: expected a CPU list/],
    [{ max: true, pinLoad: '4096' }, /^--pin-load: CPU 4096 does not exist/],
    [{ max: true, simArg: ['no-chunking'] }, /^--sim-arg: expected a simulator flag/],
    [
      { max: true, simArg: ['--no-chunking'], target: '127.0.0.1:2525', password: 'x' },
      /^--sim-arg: only when/,
    ],
  ];
  it.each(bad)('rejects %j naming the option', (raw, message) => {
    let err: unknown;
    try {
      parseBenchOptions(raw as never);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BenchOptionError);
    expect((err as Error).message).toMatch(message);
  });

  it('--target turns off the direct run', () => {
    const o = parseBenchOptions({ max: true, target: '127.0.0.1:2525', password: 'pw', proxyPid: '42' });
    expect(o.target).toEqual({ host: '127.0.0.1', port: 2525 });
    expect(o.direct).toBe(false);
    expect(o.proxyPid).toBe(42);
  });
});

describe('--workers and pinning', () => {
  it('--workers takes one count or a list, in the order given', () => {
    expect(parseBenchOptions({ max: true }).workers).toBeUndefined();
    expect(parseBenchOptions({ max: true, workers: '2' }).workers).toEqual([2]);
    expect(parseBenchOptions({ max: true, workers: '2,1' }).workers).toEqual([2, 1]);
  });

  it('CPU lists as taskset -c takes them, checked against the CPUs there are', () => {
    expect(parseCpuList('--pin-proxy', '0', 2)).toBe('0');
    expect(parseCpuList('--pin-proxy', ' 0-1 ', 2)).toBe('0-1');
    expect(parseCpuList('--pin-proxy', '0,3-5', 8)).toBe('0,3-5');
    expect(() => parseCpuList('--pin-proxy', '1-0', 2)).toThrow(/^--pin-proxy: range 1-0 is backwards/);
    expect(() => parseCpuList('--pin-load', '2', 2)).toThrow(
      /CPU 2 does not exist \(this machine has CPUs 0-1\)/,
    );
    const o = parseBenchOptions({ max: true, pinProxy: '0', pinLoad: '0' });
    expect(o).toMatchObject({ pinProxy: '0', pinLoad: '0' });
    expect(parseBenchOptions({ max: true, simArg: ['--no-chunking'] }).simArgs).toEqual(['--no-chunking']);
    expect(parseBenchOptions({ max: true }).simArgs).toBeUndefined();
  });

  it('finds executables on PATH', () => {
    expect(onPath('node', path.dirname(process.execPath))).toBe(true);
    expect(onPath('taskset-not-here', path.dirname(process.execPath))).toBe(false);
  });
});

describe('bench command', () => {
  it('reports a bad option by name and exits 1', async () => {
    const program = new Command().exitOverride();
    let stderr = '';
    program.configureOutput({ writeErr: (s) => (stderr += s), writeOut: () => undefined });
    registerBenchCommand(program);
    program.commands.forEach((c) => c.exitOverride().configureOutput({ writeErr: (s) => (stderr += s) }));
    await expect(program.parseAsync(['node', 'x', 'bench', '--rate', 'fast'])).rejects.toMatchObject({
      exitCode: 1,
    });
    expect(stderr).toMatch(/--rate: expected a number/);
  });
});
