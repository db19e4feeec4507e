import { describe, expect, it } from 'vitest';
import type { BenchResult } from '../../../src/tools/bench/report.js';
import { disturbance, notQuiet, runUntilQuiet } from '../../../src/tools/bench/quiet-retry.js';

const result = (otherPercent: number, stealPercent = 0, tag = ''): BenchResult =>
  ({
    machine: { cores: 2, busyPercent: 50, otherPercent, stealPercent },
    startedAt: tag,
  }) as BenchResult;

describe('a matrix step on a machine that was not quiet', () => {
  it('is judged by what other work or the host took, whichever is more', () => {
    expect(disturbance(result(3, 40))).toBe(40);
    expect(notQuiet(result(3, 40))).toBe(true);
    expect(notQuiet(result(15, 2))).toBe(false);
    expect(notQuiet({} as BenchResult)).toBe(false); // not measured: nothing to judge by
  });

  it('is measured again until quiet, at most `attempts` times', async () => {
    const seen: string[] = [];
    const runs = [result(60, 0, 'a'), result(2, 0, 'b'), result(1, 0, 'c')];
    const r = await runUntilQuiet(
      async () => runs.shift()!,
      3,
      (l) => seen.push(l),
    );
    expect(r.attempts).toBe(2);
    expect(r.result.startedAt).toBe('b');
    expect(seen).toEqual(['   not a quiet machine (60 % of a core taken): measuring the step again']);
  });

  it('keeps the quietest attempt when none was quiet', async () => {
    const runs = [result(60, 0, 'a'), result(20, 30, 'b'), result(45, 0, 'c')];
    const r = await runUntilQuiet(
      async () => runs.shift()!,
      3,
      () => {},
    );
    expect(r).toMatchObject({ attempts: 3, result: { startedAt: 'b' } });
  });

  it('a quiet first run is the only one', async () => {
    let n = 0;
    const r = await runUntilQuiet(
      async () => (n++, result(0)),
      3,
      () => {},
    );
    expect(n).toBe(1);
    expect(r.attempts).toBe(1);
  });
});
