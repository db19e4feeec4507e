import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { parseStatTicks } from '../../../src/tools/harness/proc.js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  descendants,
  parseChildren,
  parseCpusAllowed,
  sampleProcessTree,
} from '../../../src/tools/bench/proc-tree.js';
import { waitFor } from '../../helpers/wait.js';

const linux = process.platform === 'linux';

const started: ChildProcess[] = [];
const kill = (pid: number) => {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {}
};
afterEach(async () => {
  for (const c of started.splice(0)) {
    if (c.pid) for (const d of await descendants(c.pid)) kill(d);
    c.kill('SIGKILL');
  }
});

/** An idle parent with `n` children that spin (each gives up after 20 s on its own). */
function spinningFamily(n: number): ChildProcess {
  const spin = 'const end = Date.now() + 20000; while (Date.now() < end) {}';
  const parent = spawn(
    process.execPath,
    [
      '-e',
      `const { spawn } = require('node:child_process');
       for (let i = 0; i < ${n}; i++) spawn(process.execPath, ['-e', ${JSON.stringify(spin)}], { stdio: 'ignore' });
       setTimeout(() => {}, 30000);`,
    ],
    { stdio: 'ignore' },
  );
  started.push(parent);
  return parent;
}

describe('parsing /proc', () => {
  it('reads children lists and Cpus_allowed_list', () => {
    expect(parseChildren('123 456 ')).toEqual([123, 456]);
    expect(parseChildren('')).toEqual([]);
    expect(parseCpusAllowed('Name:\tnode\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n')).toBe('0-1');
    expect(parseCpusAllowed('Name:\tnode\n')).toBeNull();
  });
});

describe.runIf(linux)('sampleProcessTree', () => {
  it('sums the CPU of a process and its children, each listed', async () => {
    const parent = spinningFamily(2);
    const pid = parent.pid!;
    const kids = await waitFor(
      'two children',
      () => descendants(pid),
      (d) => d.length === 2,
      10_000,
    );
    const ticks = async (p: number) => parseStatTicks(await readFile(`/proc/${p}/stat`, 'latin1'));
    const before = await Promise.all(kids.map(ticks));
    const sampler = sampleProcessTree(pid, 100);
    // the window lasts until each child has spun 0.3 s of CPU (however busy the machine is)
    await waitFor(
      'each child 0.3 s of CPU',
      () => Promise.all(kids.map(ticks)),
      (now) => now.every((t, i) => t - before[i]! >= 30),
      20_000,
    );
    const m = await sampler.stop();
    expect(m.processes.map((p) => p.pid)).toEqual([pid, ...kids]);
    expect(m.processes[0]!.role).toBe('primary');
    expect(m.processes.slice(1).every((p) => p.role === 'child')).toBe(true);
    const [primary, ...children] = m.processes;
    // each spinning child used a good part of the window (the machine is shared: not all of it)
    for (const c of children) expect(c.cpuSeconds).toBeGreaterThan(0.2);
    expect(primary!.cpuSeconds).toBeLessThan(0.2); // the parent sleeps
    const sum = m.processes.reduce((n, p) => n + p.cpuSeconds, 0);
    expect(m.cpuSeconds).toBeCloseTo(sum, 2);
    expect(m.cpuSeconds).toBeGreaterThan(children[0]!.cpuSeconds);
    // children spinning in JavaScript: nearly all of it user time
    expect(m.userCpuSeconds).toBeGreaterThan(0.3);
    expect(m.userCpuSeconds).toBeLessThanOrEqual(m.cpuSeconds + 0.01);
    // RSS: the peak of the sum is more than any one process's peak
    expect(m.rssMaxBytes).toBeGreaterThan(Math.max(...m.processes.map((p) => p.rssMaxBytes)));
    expect(m.processes.every((p) => p.cpusAllowed !== null)).toBe(true);
  });
});
