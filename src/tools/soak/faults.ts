// The soak's fault schedule: seeded, so a run that found something can be replayed. One fault at a
// time, each for a random short time, then every fault cleared.
import { NO_FAULTS } from '../sim/faults.js';
import type { SimFaults } from '../sim/types.js';
import { seededRandom } from '../harness/random.js';

export { seededRandom };

export type FaultName =
  'latency-spike' | '4xx-burst' | 'drops' | 'token-errors' | 'token-unreachable' | 'token-slow';

export interface FaultPlan {
  name: FaultName;
  faults: Partial<SimFaults>;
  durationSec: number;
}

export { NO_FAULTS };

const between = (rnd: () => number, lo: number, hi: number) => lo + rnd() * (hi - lo);

/** The next fault: which, how strong, how long. */
export function pickFault(rnd: () => number): FaultPlan {
  const kinds: ((r: () => number) => FaultPlan)[] = [
    (r) => ({
      name: 'latency-spike',
      faults: { latencyMs: Math.round(between(r, 500, 2000)) },
      durationSec: between(r, 5, 15),
    }),
    (r) => ({
      name: '4xx-burst',
      faults: { fail4xxRate: Math.round(between(r, 0.2, 0.5) * 100) / 100 },
      durationSec: between(r, 5, 15),
    }),
    (r) => ({
      name: 'drops',
      faults: { dropRate: Math.round(between(r, 0.05, 0.2) * 100) / 100 },
      durationSec: between(r, 10, 20),
    }),
    (r) => ({ name: 'token-errors', faults: { tokenErrorRate: 1 }, durationSec: between(r, 10, 30) }),
    (r) => ({ name: 'token-unreachable', faults: { tokenResetRate: 1 }, durationSec: between(r, 10, 30) }),
    (r) => ({
      name: 'token-slow',
      faults: { tokenLatencyMs: Math.round(between(r, 1000, 3000)) },
      durationSec: between(r, 10, 30),
    }),
  ];
  const plan = kinds[Math.floor(rnd() * kinds.length)]!(rnd);
  return { ...plan, durationSec: Math.round(plan.durationSec * 10) / 10 };
}

/** Seconds of quiet before the next fault: exponential around `meanSec`, at least 5 s. */
export function quietSec(rnd: () => number, meanSec: number): number {
  return Math.max(5, Math.round(-Math.log(1 - rnd()) * meanSec * 10) / 10);
}
