// The one frame of the tools' command lines (npm run chaos / fuzz / soak / bench, the simulator's
// throughput check): commander parses them, as it does the product's (src/cli.ts), and each tool
// checks its values with a message naming the option. Exit 2 on a bad option, 1 on a failure or a
// crash, 0 after --help.
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError, type OptionValues } from 'commander';
import { STYLES, type Style } from './env.js';

/** A bad command line: the message names the option. */
export class UsageError extends Error {}

/** --help was asked for and printed. */
export class HelpShown extends Error {}

export interface Tool<O> {
  /** the tool's command with its options; a fresh one per call (a command keeps what it parsed) */
  program(): Command;
  /** commander's values -> the tool's options; throws an Error naming the option */
  check(values: OptionValues): O;
}

/** A tool's command: `usage` is how it is run, e.g. `npm run chaos --`. */
export function toolCommand(usage: string, description: string): Command {
  return new Command(usage).description(description).allowExcessArguments(false);
}

/** Parse `argv` (the arguments only) into the tool's options, or throw UsageError / HelpShown. */
export function parseToolArgs<O>(tool: Tool<O>, argv: readonly string[]): O {
  const program = tool
    .program()
    .exitOverride()
    .configureOutput({ writeErr: () => undefined });
  try {
    program.parse([...argv], { from: 'user' });
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    if (err.exitCode === 0) throw new HelpShown(err.message);
    throw new UsageError(err.message.replace(/^error: /, ''));
  }
  try {
    return tool.check(program.opts());
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

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

/** A comma-separated list of `known` names (undefined when not given); an unknown one is an error. */
export function listOption<T extends string>(
  name: string,
  raw: unknown,
  known: readonly T[],
  what: string,
): T[] | undefined {
  if (raw === undefined) return undefined;
  const list = String(raw)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = list.filter((n) => !(known as readonly string[]).includes(n));
  if (unknown.length)
    throw new Error(`--${name}: unknown ${what} ${unknown.join(', ')} (known: ${known.join(', ')})`);
  return list as T[];
}

/** --seed: the given one, or a random one (the tool prints it, so a run can be replayed). */
export function seedOption(raw: unknown): number {
  return raw === undefined ? Math.floor(Math.random() * 2 ** 31) : numberOption('seed', raw, 0, true);
}

/** --upstream-tls and --style: the upstream leg a load tool runs its proxy against. */
export function upstreamOptions(cmd: Command): Command {
  return cmd
    .option('--upstream-tls', "the proxy's upstream leg over STARTTLS")
    .option(
      '--style <style>',
      'the provider the simulator plays: google or microsoft (rotating refresh tokens)',
    );
}

export function checkUpstreamOptions(v: OptionValues): { upstreamTls?: true; style?: Style } {
  return {
    ...(v.upstreamTls ? { upstreamTls: true as const } : {}),
    ...(v.style !== undefined ? { style: choiceOption('style', v.style as string, STYLES) } : {}),
  };
}

export interface ReportFiles {
  out?: string;
  json?: string;
}

/** --out and --json: where else a tool writes its report, besides stdout. */
export function reportOptions(cmd: Command): Command {
  return cmd
    .option('--out <file.md>', 'also write the markdown report here')
    .option('--json <file>', 'also write the JSON report here');
}

export function checkReportOptions(v: OptionValues): ReportFiles {
  return {
    ...(v.out ? { out: v.out as string } : {}),
    ...(v.json ? { json: v.json as string } : {}),
  };
}

/** Write the markdown (when there is one) and the JSON report to the files asked for. */
export function writeReports(files: ReportFiles, md: string | undefined, report: unknown): void {
  if (files.out && md !== undefined) fs.writeFileSync(files.out, md);
  if (files.json) fs.writeFileSync(files.json, JSON.stringify(report, null, 2) + '\n');
}

/** The file:// URL of the program node was started with (symlinks resolved, as import.meta.url has them). */
function mainUrl(): string | undefined {
  try {
    return process.argv[1] ? pathToFileURL(fs.realpathSync(process.argv[1])).href : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Run a tool when its module is the program (`metaUrl` = its import.meta.url): parse the command
 * line (a bad one: the error and the help on stderr, exit 2), then `run`, whose result is the exit
 * code (a crash: exit 1).
 */
export function runTool<O>(
  metaUrl: string,
  name: string,
  tool: Tool<O>,
  run: (opts: O, argv: string[]) => Promise<number>,
): void {
  if (metaUrl !== mainUrl()) return;
  const argv = process.argv.slice(2);
  let opts: O;
  try {
    opts = parseToolArgs(tool, argv);
  } catch (err) {
    if (err instanceof HelpShown) process.exit(0);
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`error: ${err.message}\n\n${tool.program().helpInformation()}`);
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
