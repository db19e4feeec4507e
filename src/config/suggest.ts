// "did you mean" hints for unknown keys and provider names.

/** Optimal-string-alignment distance: Levenshtein plus adjacent transpositions ("gmial" -> "gmail" = 1). */
export function editDistance(a: string, b: string): number {
  const m = a.length;
  const n = b.length;
  const d: number[][] = Array.from({ length: m + 1 }, (_, i) => {
    const row = new Array<number>(n + 1).fill(0);
    row[0] = i;
    return row;
  });
  for (let j = 0; j <= n; j++) d[0]![j] = j;
  for (let i = 1; i <= m; i++) {
    for (let j = 1; j <= n; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[m]![n]!;
}

/**
 * The closest candidate to `input`, if it is close enough to be a plausible typo.
 * `aliases` maps other spellings to a candidate (e.g. "gmail" -> "google"), so a typo of an alias
 * still points at the real name.
 */
export function closest(
  input: string,
  candidates: readonly string[],
  aliases: Readonly<Record<string, string>> = {},
): string | undefined {
  const needle = input.toLowerCase();
  const limit = Math.max(2, Math.floor(needle.length / 3));
  let best: string | undefined;
  let bestDist = Infinity;
  const consider = (spelling: string, target: string) => {
    const dist = editDistance(needle, spelling.toLowerCase());
    if (dist <= limit && dist < bestDist) {
      best = target;
      bestDist = dist;
    }
  };
  for (const c of candidates) consider(c, c);
  for (const [alias, target] of Object.entries(aliases))
    if (candidates.includes(target)) consider(alias, target);
  return best;
}

/** ` (did you mean "x"?)` or an empty string. */
export function didYouMean(
  input: string,
  candidates: readonly string[],
  aliases?: Readonly<Record<string, string>>,
): string {
  const c = closest(input, candidates, aliases);
  return c === undefined ? '' : ` (did you mean "${c}"?)`;
}
