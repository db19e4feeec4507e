import type { SimFaults } from './types.js';

export const NO_FAULTS: Readonly<SimFaults> = Object.freeze({
  latencyMs: 0,
  fail4xxRate: 0,
  fail5xxRate: 0,
  dropRate: 0,
  tokenErrorRate: 0,
  tokenResetRate: 0,
  tokenLatencyMs: 0,
  expireEarlySec: 0,
  dropEvery: 0,
  reject421Next: 0,
  slowDownNext: 0,
});

const RATES = new Set(['fail4xxRate', 'fail5xxRate', 'dropRate', 'tokenErrorRate', 'tokenResetRate']);
const COUNTS = new Set(['dropEvery', 'reject421Next', 'slowDownNext']);

/**
 * Validate a partial fault set (from the API, /control/faults or the CLI) and merge it into `base`.
 * Throws an Error naming the offending field, so HTTP callers get a 400 that says what is wrong.
 */
export function mergeFaults(base: SimFaults, patch: unknown): SimFaults {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) {
    throw new Error('faults must be a JSON object');
  }
  const next = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    if (!(key in NO_FAULTS)) {
      throw new Error(`unknown fault "${key}" (known: ${Object.keys(NO_FAULTS).join(', ')})`);
    }
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new Error(`${key}: must be a number >= 0, got ${JSON.stringify(value)}`);
    }
    if (RATES.has(key) && value > 1)
      throw new Error(`${key}: must be a probability between 0 and 1, got ${value}`);
    if (COUNTS.has(key) && !Number.isInteger(value))
      throw new Error(`${key}: must be a whole number, got ${value}`);
    next[key as keyof SimFaults] = value;
  }
  return next;
}
