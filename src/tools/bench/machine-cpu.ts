// The whole machine's CPU over the measured run, from /proc/stat. What the bench's own processes
// (proxy, simulator, generator) did not use was someone else's: a run that shared the cores with
// other work (a test suite, a build) is not a quiet run, and its figures say so.
import { readFile } from 'node:fs/promises';

/** jiffies of the aggregate `cpu` line, summed over every CPU */
export interface CpuTimes {
  busy: number;
  steal: number;
  total: number;
  cores: number;
}

/** the aggregate line and the CPU count of /proc/stat; null when it is not there */
export function parseProcStat(text: string): CpuTimes | null {
  const lines = text.split('\n');
  const head = lines[0];
  if (!head?.startsWith('cpu ')) return null;
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = head
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const cores = lines.filter((l) => /^cpu\d+ /.test(l)).length;
  const busy = user + nice + system + irq + softirq;
  return { busy, steal, total: busy + idle + iowait + steal, cores: Math.max(1, cores) };
}

/** percent of one core (100 = a core), as the per-process figures are */
export interface MachineCpu {
  cores: number;
  busyPercent: number;
  stealPercent: number;
}

export function machineCpuBetween(a: CpuTimes, b: CpuTimes): MachineCpu | null {
  const total = b.total - a.total;
  if (total <= 0) return null;
  const pct = (n: number) => Math.round(((n * b.cores) / total) * 1000) / 10;
  return { cores: b.cores, busyPercent: pct(b.busy - a.busy), stealPercent: pct(b.steal - a.steal) };
}

async function read(): Promise<CpuTimes | null> {
  try {
    return parseProcStat(await readFile('/proc/stat', 'latin1'));
  } catch {
    return null; // not Linux
  }
}

/** Start now; stop() gives the window's figures (null where /proc/stat cannot be read). */
export function sampleMachineCpu(): { stop(): Promise<MachineCpu | null> } {
  const first = read();
  return {
    async stop() {
      const [a, b] = [await first, await read()];
      return a && b ? machineCpuBetween(a, b) : null;
    },
  };
}

/** Above this share of a core taken by other processes (or stolen by the host), a run is not quiet. */
export const NOT_QUIET_PERCENT = 15;
