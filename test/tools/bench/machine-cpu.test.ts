// The machine's CPU over a run, from /proc/stat (what tells a quiet run from one that shared the cores).
import { describe, expect, it } from 'vitest';
import { machineCpuBetween, parseProcStat } from '../../../src/tools/bench/machine-cpu.js';

// user nice system idle iowait irq softirq steal guest guest_nice
const stat = (user: number, system: number, idle: number, steal = 0) =>
  `cpu  ${user} 0 ${system} ${idle} 0 0 0 ${steal} 0 0\ncpu0 1 0 1 1 0 0 0 0 0 0\ncpu1 1 0 1 1 0 0 0 0 0 0\nintr 1 2 3\n`;

describe('machine CPU', () => {
  it('reads the aggregate line and counts the CPUs', () => {
    expect(parseProcStat(stat(100, 50, 1000, 7))).toEqual({ busy: 150, steal: 7, total: 1157, cores: 2 });
    expect(parseProcStat('intr 1 2\n')).toBeNull();
  });

  it('gives the window as percent of one core, steal apart', () => {
    // 2 cores for 1 s = 200 jiffies: 150 busy (75 % of the machine = 150 % of a core), 10 stolen
    const a = parseProcStat(stat(1000, 500, 10_000))!;
    const b = parseProcStat(stat(1100, 550, 10_040, 10))!;
    expect(machineCpuBetween(a, b)).toEqual({ cores: 2, busyPercent: 150, stealPercent: 10 });
    expect(machineCpuBetween(b, b)).toBeNull();
  });
});
