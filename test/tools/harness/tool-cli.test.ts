// The tools' command lines share one frame (commander, like the product's CLI): the same option
// names and defaults as always, a bad option named on stderr with exit 2, --help with exit 0.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseMatrixArgs } from '../../../src/tools/bench/matrix.js';
import { parseChaosArgs } from '../../../src/tools/chaos/cli.js';
import { parseFuzzArgs } from '../../../src/tools/fuzz/cli.js';
import { UsageError } from '../../../src/tools/harness/tool-cli.js';
import { parseThroughputArgs } from '../../../src/tools/sim/throughput.js';
import { parseSoakArgs } from '../../../src/tools/soak/cli.js';
import { DIST } from '../../helpers/procs.js';
import { runScript } from '../../helpers/run-script.js';

describe('tool options', () => {
  it('keeps the defaults of every tool', () => {
    expect(parseChaosArgs([])).toEqual({ quick: false, rate: 200, mailboxes: 20 });
    expect(parseChaosArgs(['--quick'])).toEqual({ quick: true, rate: 100, mailboxes: 10 });
    expect(parseFuzzArgs(['--seed', '7'])).toEqual({
      cases: 2000,
      seed: 7,
      concurrency: 8,
      connectionAttacks: true,
    });
    expect(parseFuzzArgs(['--no-connection-attacks']).connectionAttacks).toBe(false);
    expect(parseSoakArgs(['--seed', '1'])).toEqual({
      minutes: 60,
      rate: 833,
      mailboxes: 100,
      connections: 50,
      sampleSec: 10,
      faultEverySec: 60,
      segmentSec: 60,
      seed: 1,
      tokenLifetimeSec: 120,
      size: 2048,
    });
    expect(parseMatrixArgs([])).toMatchObject({
      quick: false,
      durationSec: 3,
      minMessages: 100,
      warmupSec: 1,
      quiet: false,
    });
    expect(parseThroughputArgs([])).toEqual({
      messages: 100_000,
      connections: 16,
      size: 2048,
      clientThreads: 1,
      pipelineNext: false,
    });
  });

  it('takes every option by its name', () => {
    expect(
      parseChaosArgs([
        '--only',
        'latency-spike, 421-bursts',
        '--rate',
        '50',
        '--mailboxes',
        '4',
        '--upstream-tls',
        '--style',
        'microsoft',
        '--out',
        'c.md',
        '--json',
        'c.json',
      ]),
    ).toEqual({
      quick: false,
      only: ['latency-spike', '421-bursts'],
      rate: 50,
      mailboxes: 4,
      upstreamTls: true,
      style: 'microsoft',
      out: 'c.md',
      json: 'c.json',
    });
    expect(
      parseFuzzArgs([
        '--cases',
        '10',
        '--minutes',
        '0.5',
        '--seed',
        '3',
        '--concurrency',
        '2',
        '--only',
        'auth-garbage',
        '--json',
        'f.json',
      ]),
    ).toEqual({
      cases: 10,
      minutes: 0.5,
      seed: 3,
      concurrency: 2,
      only: ['auth-garbage'],
      connectionAttacks: true,
      json: 'f.json',
    });
    expect(parseSoakArgs(['--warmup-sec', '5', '--token-lifetime-sec', '30', '--seed', '2']).warmupSec).toBe(
      5,
    );
    expect(
      parseThroughputArgs(['--messages', '5', '--client-threads', '2', '--pipeline-next']),
    ).toMatchObject({
      messages: 5,
      clientThreads: 2,
      pipelineNext: true,
    });
  });

  it('names the bad option', () => {
    const bad: [() => unknown, string][] = [
      [() => parseChaosArgs(['--rate', '0']), '--rate: must be a whole number >= 1, got "0"'],
      [() => parseChaosArgs(['--mailboxes']), "option '--mailboxes <n>' argument missing"],
      [
        () => parseFuzzArgs(['--concurrency', 'lots']),
        '--concurrency: must be a whole number >= 1, got "lots"',
      ],
      [() => parseFuzzArgs(['--only', 'nope']), '--only: unknown family nope'],
      [() => parseSoakArgs(['--minutes', '-1']), '--minutes: must be a number >= 0.05, got "-1"'],
      [() => parseMatrixArgs(['--duration', '0']), '--duration: expected seconds > 0'],
      [() => parseThroughputArgs(['--size', '1.5']), '--size: must be a whole number >= 1, got "1.5"'],
      [() => parseThroughputArgs(['--bogus']), "unknown option '--bogus'"],
      [() => parseChaosArgs(['stray']), 'too many arguments'],
    ];
    for (const [parse, message] of bad) {
      expect(parse).toThrow(UsageError);
      expect(parse).toThrow(message);
    }
  });
});

describe('tool command lines', () => {
  const tools = [
    ['chaos', 'tools/chaos/cli.js', 'npm run chaos --'],
    ['fuzz', 'tools/fuzz/cli.js', 'npm run fuzz --'],
    ['soak', 'tools/soak/cli.js', 'npm run soak --'],
    ['bench matrix', 'tools/bench/matrix.js', 'npm run bench --'],
    ['throughput', 'tools/sim/throughput.js', 'node dist/tools/sim/throughput.js'],
  ] as const;

  it.each(tools)(
    '%s: a bad option is named, with the usage, and exits 2; --help exits 0',
    async (_name, file, usage) => {
      const cli = path.join(DIST, file);
      const bad = await runScript(cli, ['--bogus']);
      expect(bad.code, bad.out).toBe(2);
      expect(bad.out).toContain("error: unknown option '--bogus'");
      expect(bad.out).toContain(`Usage: ${usage} [options]`);
      const help = await runScript(cli, ['--help']);
      expect(help.code, help.out).toBe(0);
      expect(help.out).toContain(`Usage: ${usage} [options]`);
    },
  );
});
