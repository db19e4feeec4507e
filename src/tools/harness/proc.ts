// Process metrics of the system under test, read from /proc (Linux): CPU% from utime + stime
// (field 14 + 15 of /proc/PID/stat, in clock ticks of 1/100 s) and peak RSS (VmRSS of
// /proc/PID/status), sampled every 250 ms. Reads are async, so sampling never blocks the generator.
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';

export const CLOCK_TICKS_PER_SEC = 100;

export interface ProcMetrics {
  /** average CPU over the sampled window, 100 = one full core */
  cpuPercent: number;
  /** highest CPU of any one sampling interval */
  cpuPercentMax: number;
  rssMaxBytes: number;
  /** utime + stime spent in the sampled window, seconds (all threads: main, GC, libuv pool) */
  cpuSeconds: number;
  /** the part of cpuSeconds spent on the main thread (the JavaScript event loop), seconds */
  mainThreadCpuSeconds: number;
  /** length of the sampled window, seconds */
  elapsedSec: number;
  samples: number;
}

/** utime + stime in clock ticks; the command name (field 2) may contain spaces and parentheses. */
export function parseStatTicks(stat: string): number {
  const { user, system } = parseStatUserSystem(stat);
  return user + system;
}

/** utime and stime in clock ticks, apart. */
export function parseStatUserSystem(stat: string): { user: number; system: number } {
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state), so field n is rest[n - 3]
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error('unexpected /proc/PID/stat format');
  return { user: utime, system: stime };
}

/** VmRSS in bytes, or undefined if absent (a zombie has none). */
export function parseStatusRss(status: string): number | undefined {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return m ? Number(m[1]) * 1024 : undefined;
}

export interface ProcSampler {
  stop(): Promise<ProcMetrics>;
}

/** Start sampling pid now; stop() takes a last sample and returns the metrics of the window. */
export function sampleProcess(pid: number, intervalMs = 250): ProcSampler {
  type Sample = { ticks: number; mainTicks: number; rss?: number; at: number };
  const read = async (): Promise<Sample | undefined> => {
    try {
      const [stat, mainStat, status] = await Promise.all([
        readFile(`/proc/${pid}/stat`, 'latin1'),
        readFile(`/proc/${pid}/task/${pid}/stat`, 'latin1'), // the main thread's tid is the pid
        readFile(`/proc/${pid}/status`, 'latin1'),
      ]);
      return {
        ticks: parseStatTicks(stat),
        mainTicks: parseStatTicks(mainStat),
        rss: parseStatusRss(status),
        at: performance.now(),
      };
    } catch {
      return undefined; // process gone, or not Linux
    }
  };
  let first: Sample | undefined;
  let last: Sample | undefined;
  let rssMax = 0;
  let cpuMax = 0;
  let samples = 0;
  let busy: Promise<void> = Promise.resolve();
  const sample = () => {
    busy = busy.then(async () => {
      const s = await read();
      if (!s) return;
      samples++;
      if (s.rss !== undefined) rssMax = Math.max(rssMax, s.rss);
      if (last && s.at - last.at >= intervalMs * 0.8) {
        const pct = ((s.ticks - last.ticks) / CLOCK_TICKS_PER_SEC / ((s.at - last.at) / 1000)) * 100;
        cpuMax = Math.max(cpuMax, pct);
      }
      first ??= s;
      last = s;
    });
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  let result: Promise<ProcMetrics> | undefined;
  return {
    stop: () => (result ??= finish()),
  };
  async function finish(): Promise<ProcMetrics> {
    clearInterval(timer);
    sample();
    await busy;
    const elapsedSec = first && last ? (last.at - first.at) / 1000 : 0;
    const cpuSeconds = first && last ? (last.ticks - first.ticks) / CLOCK_TICKS_PER_SEC : 0;
    const mainThreadCpuSeconds = first && last ? (last.mainTicks - first.mainTicks) / CLOCK_TICKS_PER_SEC : 0;
    const cpu = elapsedSec > 0 ? (cpuSeconds / elapsedSec) * 100 : 0;
    return {
      cpuPercent: Math.round(cpu * 10) / 10,
      cpuPercentMax: Math.round(cpuMax * 10) / 10,
      rssMaxBytes: rssMax,
      cpuSeconds,
      mainThreadCpuSeconds,
      elapsedSec: Math.round(elapsedSec * 1000) / 1000,
      samples,
    };
  }
}
