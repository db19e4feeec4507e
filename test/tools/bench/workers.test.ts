// `bench --workers` and the pinning options against the built CLI: real simulator and proxy
// processes, a short closed-loop run each (issue 13).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { startBenchEnv, type BenchEnv } from '../../../src/tools/harness/env.js';
import { cpusAllowed, descendants } from '../../../src/tools/bench/proc-tree.js';
import { onPath } from '../../../src/tools/bench/options.js';
import type { BenchResult } from '../../../src/tools/bench/report.js';
import { CLI } from '../../helpers/procs.js';
import { waitFor } from '../../helpers/wait.js';

const run = promisify(execFile);
const canPin = process.platform === 'linux' && os.cpus().length >= 2 && onPath('taskset');

/** bench with a small closed-loop load; its JSON (stdout) and summary (stderr). */
async function bench(args: string[]): Promise<{ json: unknown; stderr: string }> {
  const { stdout, stderr } = await run(
    process.execPath,
    [CLI, 'bench', '--max', '--mailboxes', '4', '--connections', '4', '--warmup', '0', ...args],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  return { json: JSON.parse(stdout), stderr };
}

let env: BenchEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

describe.runIf(process.platform === 'linux')('bench --workers', () => {
  it('--workers 2: CPU and RSS summed over the primary and its workers', { timeout: 60_000 }, async () => {
    const { json, stderr } = await bench(['--workers', '2', '--duration', '1.5', '--no-direct']);
    const r = json as BenchResult;
    expect(r.parameters.workers).toBe(2);
    expect(r.accepted).toBeGreaterThan(0);
    expect(r.accepted).toBe(r.sent);
    expect(r.lost).toBe(0);
    expect(r.proxy!.cpuUsPerMessage).toBeGreaterThan(0);
    expect(r.loadAverages).toHaveLength(3);
    // the primary and two workers, both of which relayed (the listeners are shared)
    const procs = r.proxy!.processes!;
    expect(procs.map((p) => p.role)).toEqual(['primary', 'child', 'child']);
    for (const w of procs.slice(1)) expect(w.cpuSeconds).toBeGreaterThan(0);
    const sum = procs.reduce((n, p) => n + p.cpuSeconds, 0);
    expect(r.proxy!.cpuSeconds).toBeCloseTo(sum, 2);
    expect(r.proxy!.cpuSeconds).toBeGreaterThan(procs[1]!.cpuSeconds);
    expect(r.proxy!.rssMaxBytes).toBeGreaterThan(Math.max(...procs.map((p) => p.rssMaxBytes)));
    // a line each for the primary and the workers in the summary
    expect(stderr).toMatch(/proxy processes \(3, summed\)/);
    expect(stderr).toMatch(new RegExp(`primary ${procs[0]!.pid}: `));
    for (const w of procs.slice(1)) expect(stderr).toMatch(new RegExp(`worker  ${w.pid}: `));
    expect(stderr).toMatch(/run as: serve --workers 2,/);
  });

  it.runIf(canPin)(
    'the environment pins the proxy and its workers, and the simulator, as asked',
    { timeout: 60_000 },
    async () => {
      env = await startBenchEnv({
        mailboxes: 2,
        connections: 2,
        tls: false,
        userPrefix: 'bench',
        userDomain: 'example.com',
        recipients: 1,
        cli: CLI,
        proxyArgs: ['--workers', '2'],
        proxyCpus: '0',
        simCpus: '1',
      });
      const workers = await waitFor(
        'two workers',
        () => descendants(env!.proxyPid),
        (d) => d.length === 2,
      );
      expect(fs.readFileSync(`/proc/${env.proxyPid}/status`, 'latin1')).toMatch(/^Cpus_allowed_list:\s+0$/m);
      for (const w of workers) expect(await cpusAllowed(w)).toBe('0');
      expect(await cpusAllowed(env.simPid)).toBe('1');
      // unpinned, as before
      const unpinned = await startBenchEnv({
        mailboxes: 1,
        connections: 1,
        tls: false,
        userPrefix: 'bench',
        userDomain: 'example.com',
        recipients: 1,
        cli: CLI,
      });
      try {
        expect(await cpusAllowed(unpinned.proxyPid)).toBe(`0-${os.cpus().length - 1}`);
      } finally {
        await unpinned.close();
      }
    },
  );

  it.runIf(canPin)(
    '--workers 1 --pin-proxy 0 --pin-load 1: one process, pinned, applied and reported',
    { timeout: 60_000 },
    async () => {
      const { json, stderr } = await bench([
        '--workers',
        '1',
        '--pin-proxy',
        '0',
        '--pin-load',
        '1',
        '--count',
        '40',
      ]);
      const r = json as BenchResult;
      // --workers 1 is the in-process proxy: no children
      expect(r.parameters.workers).toBe(1);
      expect(r.proxy!.processes).toHaveLength(1);
      expect(r.accepted).toBe(40);
      expect(r.direct?.accepted).toBe(40); // the direct run too, with the generator and simulator on cpu 1
      expect(r.parameters.pin).toEqual({ proxy: '0', load: '1' });
      expect(r.parameters.affinity).toEqual({ proxy: ['0'], simulator: '1', generator: '1' });
      expect(r.proxy!.processes![0]!.cpusAllowed).toBe('0');
      expect(stderr).toMatch(
        /pinned: proxy 0, generator \+ simulator 1 \(allowed: proxy 0, simulator 1, generator 1\)/,
      );
    },
  );
});
