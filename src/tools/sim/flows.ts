// Timings of the interactive flows: how long an authorization code and a device code live, and the
// device polling interval. Defaults are the providers'; tests shorten them through /control/flows.
import type { SimFlowSettings } from './types.js';

export const DEFAULT_FLOWS: Readonly<SimFlowSettings> = Object.freeze({
  codeLifetimeSec: 60,
  deviceCodeLifetimeSec: 900,
  deviceIntervalMs: 5000,
});

/** Validate a partial flow setting (API, CLI or /control/flows) and merge it; errors name the field. */
export function mergeFlows(base: SimFlowSettings, patch: unknown): SimFlowSettings {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch))
    throw new Error('flows must be a JSON object');
  const next = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    if (!(key in DEFAULT_FLOWS))
      throw new Error(`unknown flow setting "${key}" (known: ${Object.keys(DEFAULT_FLOWS).join(', ')})`);
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0)
      throw new Error(`${key}: must be a number > 0, got ${JSON.stringify(value)}`);
    next[key as keyof SimFlowSettings] = value;
  }
  return next;
}
