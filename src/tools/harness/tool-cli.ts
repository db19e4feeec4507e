// The shared frame of the test tools' command lines (npm run chaos / fuzz / soak): option numbers
// checked with a message naming the option, exit 2 on bad options, 1 on failure or a crash.

/** Parse `raw` as a number >= min (a whole one when `integer`), or throw naming `--name`. */
export function numberOption(name: string, raw: unknown, min: number, integer = false): number {
  const v = Number(raw);
  if (
    typeof raw !== 'string' ||
    raw.trim() === '' ||
    !Number.isFinite(v) ||
    v < min ||
    (integer && !Number.isInteger(v))
  )
    throw new Error(
      `--${name}: must be ${integer ? 'a whole number' : 'a number'} >= ${min}, got "${String(raw)}"`,
    );
  return v;
}

/** `raw` when it is one of `choices`, else an error naming the option and the choices. */
export function choiceOption<T extends string>(name: string, raw: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(raw))
    throw new Error(`--${name}: expected ${choices.join(' or ')}, got "${raw}"`);
  return raw as T;
}

/**
 * Run a tool when its module is the program (`metaUrl` = its import.meta.url): parse argv (a throw
 * is a usage error: exit 2), then `run`, whose result is the exit code.
 */
export function runTool<O>(
  metaUrl: string,
  name: string,
  usage: string,
  parse: (argv: string[]) => O,
  run: (opts: O, argv: string[]) => Promise<number>,
): void {
  if (metaUrl !== `file://${process.argv[1]}`) return;
  const argv = process.argv.slice(2);
  let opts: O;
  try {
    opts = parse(argv);
  } catch (err) {
    process.stderr.write(`error: ${(err as Error).message}\n${usage}\n`);
    process.exit(2);
  }
  run(opts, argv).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`${name}: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
