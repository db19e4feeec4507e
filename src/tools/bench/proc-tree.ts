// CPU and RSS of a process and all its descendants (a `serve --workers N` primary and its workers),
// from /proc like harness/proc.ts: utime + stime of each process (all its threads), VmRSS, every
// 250 ms. Descendants are found through /proc/PID/task/TID/children at every sample, so a worker
// forked again during the window is counted from its first sample (its CPU before that, at most one
// interval, is missed; a process that exits between two samples loses its last interval).
import { readdir, readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { CLOCK_TICKS_PER_SEC, parseStatTicks, parseStatUserSystem, parseStatusRss } from '../harness/proc.js';

export interface TreeProcessMetrics {
  pid: number;
  /** 'primary' = the pid sampled, 'child' = a descendant (a worker) */
  role: 'primary' | 'child';
  /** utime + stime (all threads) in the window, seconds */
  cpuSeconds: number;
  /** the main thread's part of cpuSeconds, seconds */
  mainThreadCpuSeconds: number;
  rssMaxBytes: number;
  /** CPUs the process may run on (Cpus_allowed_list of /proc/PID/status), e.g. "0" or "0-1" */
  cpusAllowed: string | null;
}

export interface TreeMetrics {
  /** average CPU of the whole tree over the window, 100 = one full core */
  cpuPercent: number;
  /** highest CPU of the whole tree in any one sampling interval */
  cpuPercentMax: number;
  /** the peak of the summed VmRSS of all processes (one sample's sum, not a sum of peaks) */
  rssMaxBytes: number;
  cpuSeconds: number;
  /**
   * the utime part of cpuSeconds: on a VM whose host takes its CPU back, the stime part swells with
   * the kernel's waits on paravirtual locks, the utime part much less (docs/performance.md)
   */
  userCpuSeconds: number;
  /** sum of the main threads (each process's event loop) */
  mainThreadCpuSeconds: number;
  elapsedSec: number;
  samples: number;
  /** every process seen in the window, the sampled pid first */
  processes: TreeProcessMetrics[];
}

/** The pids in a /proc/PID/task/TID/children file ("123 456 "). */
export function parseChildren(text: string): number[] {
  return text
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0);
}

/** Cpus_allowed_list of /proc/PID/status ("0-1"), or null. */
export function parseCpusAllowed(status: string): string | null {
  return /^Cpus_allowed_list:\s*(\S+)/m.exec(status)?.[1] ?? null;
}

/** All descendants of pid (children of every thread, recursively), in breadth-first order. */
export async function descendants(pid: number): Promise<number[]> {
  const out: number[] = [];
  const queue = [pid];
  const seen = new Set([pid]);
  while (queue.length) {
    const p = queue.shift()!;
    let tids: string[];
    try {
      tids = await readdir(`/proc/${p}/task`);
    } catch {
      continue; // gone
    }
    for (const tid of tids) {
      let kids: number[];
      try {
        kids = parseChildren(await readFile(`/proc/${p}/task/${tid}/children`, 'latin1'));
      } catch {
        continue;
      }
      for (const k of kids)
        if (!seen.has(k)) {
          seen.add(k);
          out.push(k);
          queue.push(k);
        }
    }
  }
  return out;
}

/** Cpus_allowed_list of a running process, or null. */
export async function cpusAllowed(pid: number): Promise<string | null> {
  try {
    return parseCpusAllowed(await readFile(`/proc/${pid}/status`, 'latin1'));
  } catch {
    return null;
  }
}

export interface TreeSampler {
  stop(): Promise<TreeMetrics>;
}

type ProcSample = { ticks: number; userTicks: number; mainTicks: number; rss?: number; cpus: string | null };

async function readProc(pid: number): Promise<ProcSample | undefined> {
  try {
    const [stat, mainStat, status] = await Promise.all([
      readFile(`/proc/${pid}/stat`, 'latin1'),
      readFile(`/proc/${pid}/task/${pid}/stat`, 'latin1'),
      readFile(`/proc/${pid}/status`, 'latin1'),
    ]);
    const { user, system } = parseStatUserSystem(stat);
    return {
      ticks: user + system,
      userTicks: user,
      mainTicks: parseStatTicks(mainStat),
      rss: parseStatusRss(status),
      cpus: parseCpusAllowed(status),
    };
  } catch {
    return undefined;
  }
}

/** Start sampling pid and its descendants now; stop() takes a last sample and returns the window. */
export function sampleProcessTree(pid: number, intervalMs = 250): TreeSampler {
  type Track = {
    pid: number;
    first?: ProcSample;
    last?: ProcSample;
    /** a process first seen after the first sample: its whole CPU time is in the window */
    lateStart: boolean;
    rssMax: number;
  };
  const tracks = new Map<number, Track>();
  let firstAt: number | undefined;
  let lastAt: number | undefined;
  let lastTotal: number | undefined;
  let cpuMax = 0;
  let rssSumMax = 0;
  let samples = 0;
  let busy: Promise<void> = Promise.resolve();
  const sample = () => {
    busy = busy.then(async () => {
      const pids = [pid, ...(await descendants(pid))];
      const read = await Promise.all(pids.map(readProc));
      const at = performance.now();
      let total = 0;
      let rssSum = 0;
      let any = false;
      pids.forEach((p, i) => {
        const s = read[i];
        if (!s) return;
        any = true;
        let t = tracks.get(p);
        if (!t) {
          t = { pid: p, lateStart: firstAt !== undefined, rssMax: 0 };
          tracks.set(p, t);
        }
        t.first ??= s;
        t.last = s;
        if (s.rss !== undefined) {
          t.rssMax = Math.max(t.rssMax, s.rss);
          rssSum += s.rss;
        }
      });
      if (!any) return;
      for (const t of tracks.values()) total += used(t);
      samples++;
      rssSumMax = Math.max(rssSumMax, rssSum);
      if (lastAt !== undefined && lastTotal !== undefined && at - lastAt >= intervalMs * 0.8) {
        const pct = ((total - lastTotal) / CLOCK_TICKS_PER_SEC / ((at - lastAt) / 1000)) * 100;
        cpuMax = Math.max(cpuMax, pct);
      }
      firstAt ??= at;
      lastAt = at;
      lastTotal = total;
    });
  };
  const used = (t: Track) => (t.first && t.last ? t.last.ticks - (t.lateStart ? 0 : t.first.ticks) : 0);
  const usedUser = (t: Track) =>
    t.first && t.last ? t.last.userTicks - (t.lateStart ? 0 : t.first.userTicks) : 0;
  const usedMain = (t: Track) =>
    t.first && t.last ? t.last.mainTicks - (t.lateStart ? 0 : t.first.mainTicks) : 0;
  sample();
  const timer = setInterval(sample, intervalMs);
  let result: Promise<TreeMetrics> | undefined;
  return { stop: () => (result ??= finish()) };
  async function finish(): Promise<TreeMetrics> {
    clearInterval(timer);
    sample();
    await busy;
    const elapsedSec = firstAt !== undefined && lastAt !== undefined ? (lastAt - firstAt) / 1000 : 0;
    const processes: TreeProcessMetrics[] = [...tracks.values()].map((t) => ({
      pid: t.pid,
      role: t.pid === pid ? 'primary' : 'child',
      cpuSeconds: used(t) / CLOCK_TICKS_PER_SEC,
      // two reads, not one snapshot: the main thread may be a tick ahead of the whole process
      mainThreadCpuSeconds: Math.min(usedMain(t), used(t)) / CLOCK_TICKS_PER_SEC,
      rssMaxBytes: t.rssMax,
      cpusAllowed: t.last?.cpus ?? null,
    }));
    const cpuSeconds = processes.reduce((n, p) => n + p.cpuSeconds, 0);
    const userTicks = [...tracks.values()].reduce((n, t) => n + usedUser(t), 0);
    const mainThreadCpuSeconds = processes.reduce((n, p) => n + p.mainThreadCpuSeconds, 0);
    const cpu = elapsedSec > 0 ? (cpuSeconds / elapsedSec) * 100 : 0;
    return {
      cpuPercent: Math.round(cpu * 10) / 10,
      cpuPercentMax: Math.round(cpuMax * 10) / 10,
      rssMaxBytes: rssSumMax,
      cpuSeconds: Math.round(cpuSeconds * 100) / 100,
      userCpuSeconds: Math.round((userTicks / CLOCK_TICKS_PER_SEC) * 100) / 100,
      mainThreadCpuSeconds: Math.round(mainThreadCpuSeconds * 100) / 100,
      elapsedSec: Math.round(elapsedSec * 1000) / 1000,
      samples,
      processes,
    };
  }
}
