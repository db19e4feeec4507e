// A matrix step measured while other work or the VM's host took the cores is not worth keeping:
// run it again, a few times, and keep the quietest attempt (the machine-cpu.ts figures say which).
import type { BenchResult } from './report.js';
import { NOT_QUIET_PERCENT } from './machine-cpu.js';

/** what other work or the host took during the proxy run (100 = one core); 0 when not measured */
export function disturbance(r: BenchResult): number {
  return r.machine ? Math.max(r.machine.otherPercent, r.machine.stealPercent) : 0;
}

export function notQuiet(r: BenchResult): boolean {
  return disturbance(r) > NOT_QUIET_PERCENT;
}

/**
 * `run` up to `attempts` times while its result was not quiet; the quietest result, with how many
 * attempts it took. A run that throws ends the retries (the caller reports the failure).
 */
export async function runUntilQuiet(
  run: () => Promise<BenchResult>,
  attempts: number,
  log: (line: string) => void,
): Promise<{ result: BenchResult; attempts: number }> {
  let best = await run();
  let n = 1;
  while (notQuiet(best) && n < attempts) {
    log(
      `   not a quiet machine (${disturbance(best).toFixed(0)} % of a core taken): measuring the step again`,
    );
    const r = await run();
    n++;
    if (disturbance(r) < disturbance(best)) best = r;
  }
  return { result: best, attempts: n };
}
