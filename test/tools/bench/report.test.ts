import os from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { LatencyRecorder } from '../../../src/tools/harness/latency.js';
import { parseBenchOptions } from '../../../src/tools/bench/options.js';
import {
  parseStatTicks,
  parseStatUserSystem,
  parseStatusRss,
  sampleProcess,
} from '../../../src/tools/harness/proc.js';
import { cpuUsPerMessage, formatSummary } from '../../../src/tools/bench/report.js';
import { runBench, warmupSteps, WARMUP_MESSAGES_MAX_SEC } from '../../../src/tools/bench/run.js';
import { FakeSmtpServer } from '../../helpers/fake-smtp-server.js';
import { sleep } from '../../helpers/wait.js';

let sink: FakeSmtpServer | undefined;
afterEach(async () => {
  await sink?.close();
  sink = undefined;
});

describe('LatencyRecorder', () => {
  it('reports percentiles in ms at microsecond resolution', () => {
    const l = new LatencyRecorder();
    for (let i = 1; i <= 1000; i++) l.recordMs(i / 100); // 0.01 .. 10 ms
    const s = l.summary();
    expect(l.count).toBe(1000);
    expect(s.p50).toBeCloseTo(5, 1);
    expect(s.p95).toBeCloseTo(9.5, 1);
    expect(s.p99).toBeCloseTo(9.9, 1);
    expect(s.max).toBeCloseTo(10, 1);
    expect(new LatencyRecorder().summary()).toEqual({ p50: 0, p95: 0, p99: 0, max: 0, mean: 0 });
  });
});

describe('proc parsing', () => {
  it('reads utime + stime even when the command name has spaces and parentheses', () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
    fields[11] = '700'; // field 14 utime
    fields[12] = '35'; // field 15 stime
    expect(parseStatTicks(`1234 (node (x) y) ${fields.join(' ')}`)).toBe(735);
    expect(parseStatUserSystem(`1234 (node (x) y) ${fields.join(' ')}`)).toEqual({ user: 700, system: 35 });
    expect(parseStatusRss('Name:\tnode\nVmRSS:\t  123456 kB\n')).toBe(123456 * 1024);
    expect(parseStatusRss('Name:\tzombie\n')).toBeUndefined();
  });

  it('samples this process', async () => {
    const s = sampleProcess(process.pid, 20);
    await sleep(60); // the first samples are in
    // burn 200 ms of CPU inside the window (CPU, not wall time: the machine may be busy)
    const from = process.cpuUsage();
    const end = Date.now() + 10_000;
    for (;;) {
      const used = process.cpuUsage(from);
      if (used.user + used.system >= 200_000 || Date.now() > end) break;
    }
    const m = await s.stop();
    expect(m.samples).toBeGreaterThanOrEqual(2);
    expect(m.rssMaxBytes).toBeGreaterThan(1024 * 1024);
    expect(m.cpuPercent).toBeGreaterThanOrEqual(0);
    expect(m.cpuSeconds).toBeGreaterThanOrEqual(0.15);
    // the burn ran on this (the main) thread
    expect(m.mainThreadCpuSeconds).toBeGreaterThanOrEqual(0.15);
    // the process's and the main thread's stat are two reads, not one snapshot: a tick apart at most
    expect(m.mainThreadCpuSeconds).toBeLessThanOrEqual(m.cpuSeconds + 0.011);
    expect(m.elapsedSec).toBeGreaterThanOrEqual(0.2);
    expect(await s.stop()).toBe(m); // idempotent
  });
});

describe('CPU per message', () => {
  it('is the CPU time over the messages answered, in µs; none without messages', () => {
    expect(cpuUsPerMessage(0.42, 1000)).toBe(420);
    expect(cpuUsPerMessage(1.5, 3)).toBe(500_000);
    expect(cpuUsPerMessage(0.3, 0)).toBeNull();
  });
});

describe('runBench report', () => {
  it('has the documented report shape (against --target: no direct run, no loss check)', async () => {
    sink = await FakeSmtpServer.start();
    const opts = parseBenchOptions({
      target: `127.0.0.1:${sink.port}`,
      password: 'pw',
      proxyPid: String(process.pid),
      connections: '3',
      mailboxes: '2',
      count: '40',
      max: true,
      warmup: '0',
      warmupMessages: '0',
      quiet: true,
    });
    const r = await runBench(opts);
    expect(r).toMatchObject({
      sent: 40,
      accepted: 40,
      deferred: 0,
      rejected: 0,
      errors: 0,
      upstreamReceived: null,
      lost: null,
      direct: null,
      ratio: null,
      addedP99Ms: null,
      parameters: {
        mailboxes: 2,
        connections: 3,
        mode: 'max',
        count: 40,
        size: 2048,
        target: `127.0.0.1:${sink.port}`,
      },
    });
    for (const k of ['durationSec', 'throughputPerSec', 'generatorCpuPercent', 'loadAverage'] as const)
      expect(typeof r[k]).toBe('number');
    expect(Object.keys(r.latencyMs).sort()).toEqual(['max', 'mean', 'p50', 'p95', 'p99']);
    expect(Object.keys(r.eventLoopDelayMs).sort()).toEqual(['max', 'p50', 'p99']);
    expect(r.proxy).toEqual({
      cpuPercent: expect.any(Number),
      cpuPercentMax: expect.any(Number),
      cpuSeconds: expect.any(Number),
      cpuUsPerMessage: Math.round((r.proxy!.cpuSeconds * 1e6) / 40),
      mainThreadUsPerMessage: expect.any(Number),
      userUsPerMessage: expect.any(Number),
      rssMaxBytes: expect.any(Number),
      processes: expect.any(Array),
    });
    expect(r.proxy!.userUsPerMessage!).toBeLessThanOrEqual(r.proxy!.cpuUsPerMessage! + 1);
    // --proxy-pid names this test process: it is the primary of the sampled tree
    expect(r.proxy!.processes![0]).toMatchObject({ pid: process.pid, role: 'primary' });
    expect(r.loadAverages).toHaveLength(3);
    expect(r.parameters.proxyRun).toBeNull(); // not started by bench: unknown
    expect(sink.auths.map((a) => a.user).sort()).toEqual([
      'bench0@example.com',
      'bench0@example.com',
      'bench1@example.com',
    ]);
    // warm-up message per connection: 3 more messages reached the sink than were measured
    expect(sink.received).toHaveLength(43);
    expect(r.warmupAccepted).toBe(3);
    const text = formatSummary(r);
    expect(text).toMatch(/accepted 40/);
    expect(text).toMatch(/p99/);
    // the whole machine during the run, from /proc/stat
    expect(r.machine).toEqual({
      cores: os.cpus().length,
      busyPercent: expect.any(Number),
      otherPercent: expect.any(Number),
      stealPercent: expect.any(Number),
    });
    expect(r.machine!.busyPercent).toBeGreaterThan(0);
    expect(text).toMatch(
      /^machine: \d+ cores, [\d.]+ % of a core busy during the proxy run; other processes [\d.]+ %/m,
    );
    // a run that shared the cores says so
    const busy = formatSummary({ ...r, machine: { ...r.machine!, otherPercent: 42 } });
    expect(busy).toMatch(/^warning: not a quiet machine: other processes or the host took 42 % of a core/m);
    expect(formatSummary({ ...r, machine: { ...r.machine!, otherPercent: 3, stealPercent: 0 } })).not.toMatch(
      /warning: not a quiet machine/,
    );
    expect(r.warmup).toBeNull();
    expect(text).not.toMatch(/warm-up before it/);
    expect(JSON.parse(JSON.stringify(r))).toEqual(r);
  });

  it('warms up until the messages are reached, and reports the proxy CPU of the warm-up apart', async () => {
    sink = await FakeSmtpServer.start();
    const opts = parseBenchOptions({
      target: `127.0.0.1:${sink.port}`,
      password: 'pw',
      proxyPid: String(process.pid),
      connections: '2',
      mailboxes: '2',
      count: '10',
      max: true,
      warmup: '0',
      warmupMessages: '30',
      quiet: true,
    });
    const r = await runBench(opts);
    expect(r.accepted).toBe(10);
    expect(r.warmup).toEqual({
      messages: 30,
      durationSec: expect.any(Number),
      proxyCpuUsPerMessage: expect.any(Number),
    });
    expect(r.parameters.warmupMessages).toBe(30);
    // 30 warm-up messages and the 10 measured, each run after one message per connection
    expect(sink.received).toHaveLength(2 + 30 + 2 + 10);
    expect(formatSummary(r)).toMatch(
      /^ {8}warm-up before it \(not measured\): 30 messages in [\d.]+ s, \d+ µs CPU per message$/m,
    );
  });
});

describe('warm-up steps', () => {
  it('at a fixed rate: one run, the longer of the seconds and the messages still missing', () => {
    expect(warmupSteps(833, 1, 5000, 0)).toEqual([{ durationSec: 5000 / 833 }]);
    expect(warmupSteps(833, 10, 5000, 0)).toEqual([{ durationSec: 10 }]);
    // a proxy that already answered them (an earlier step of the matrix) needs only the seconds
    expect(warmupSteps(833, 1, 5000, 6000)).toEqual([{ durationSec: 1 }]);
    // the part for the messages is capped
    expect(warmupSteps(10, 1, 5000, 0)).toEqual([{ durationSec: WARMUP_MESSAGES_MAX_SEC }]);
    expect(warmupSteps(833, 0, 0, 0)).toEqual([]);
  });

  it('at the maximum: the seconds, then a run of the messages still missing', () => {
    expect(warmupSteps(undefined, 1, 5000, 1000)).toEqual([
      { durationSec: 1 },
      { durationSec: WARMUP_MESSAGES_MAX_SEC, count: 4000 },
    ]);
    expect(warmupSteps(undefined, 1, 5000, 5000)).toEqual([{ durationSec: 1 }]);
    expect(warmupSteps(undefined, 0, 0, 0)).toEqual([]);
  });
});
