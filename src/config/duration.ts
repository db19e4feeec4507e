// Durations in the config: a number of milliseconds, or a string such as "250ms", "30s", "5m",
// "1h", "1h30m" (components add up; decimals allowed: "1.5s").

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const COMPONENT = /\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)/y;

export const DURATION_HINT = 'a duration such as "250ms", "30s", "5m", "1h" or a number of milliseconds';

/** Milliseconds, or undefined when `value` is not a duration. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? Math.round(value) : undefined;
  if (typeof value !== 'string') return undefined;
  const s = value.trim();
  // A bare number in a string (e.g. from ${VAR}) means milliseconds, like a YAML number.
  if (/^\d+(?:\.\d+)?$/.test(s)) return Math.round(Number(s));
  if (!s) return undefined;
  COMPONENT.lastIndex = 0;
  let total = 0;
  while (COMPONENT.lastIndex < s.length) {
    const m = COMPONENT.exec(s);
    if (!m) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
  }
  return Math.round(total);
}

/** 300000 -> "5m", 1500 -> "1.5s", 5400000 -> "1h30m" (for summaries). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 1000) return `${ms}ms`;
  if (ms % 1000 !== 0) return `${ms / 1000}s`;
  let rest = ms / 1000;
  let out = '';
  for (const [unit, secs] of [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    if (rest >= secs) {
      out += `${Math.floor(rest / secs)}${unit}`;
      rest %= secs;
    }
  }
  return out;
}
