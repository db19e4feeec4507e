// Waiting in tests: a plain sleep, and polls that fail naming what they waited for (a poll is what
// holds on a loaded machine; a fixed sleep only guesses how long something takes).

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `name{labels}` -> value, labels in any order; one series is picked by name and label values. */
export function metricValue(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

/** Poll `f` until `ok` holds and return that value, or throw naming `what` (and the last value) after `ms`. */
export async function waitFor<T>(
  what: string,
  f: () => T | Promise<T>,
  ok: (v: T) => boolean,
  ms = 5000,
  everyMs = 20,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (ok(v)) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${describe(v)})`);
    await sleep(everyMs);
  }
}

/** Poll until `cond` holds, or throw naming `what` after `ms`. */
export async function until(
  cond: () => boolean | Promise<boolean>,
  ms = 3000,
  what = String(cond),
): Promise<void> {
  await waitFor(what, cond, (v) => v, ms, 10);
}

function describe(v: unknown): string {
  try {
    return JSON.stringify(v)?.slice(0, 200) ?? String(v);
  } catch {
    return String(v);
  }
}
