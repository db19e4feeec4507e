// `bench` options: raw strings (from the command line or a caller) -> validated BenchOptions.
// Every error names the option it is about, so `bench --rate abc` says `--rate: ...`.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { HostPort } from '../../config/types.js';
import { parseHostPort } from '../../shared/net.js';

export interface BenchOptions {
  /** mailboxes (accounts) the connections are spread over: connection i sends as user i % mailboxes */
  mailboxes: number;
  /** client connections */
  connections: number;
  /** offered load in msg/s (open loop); undefined = max (each connection sends back to back) */
  rate?: number;
  /** stop after this many seconds (of scheduled sending); at least one of durationSec / count is set */
  durationSec?: number;
  /** stop after this many messages */
  count?: number;
  /** approximate message size in bytes (headers + body) */
  size: number;
  /** recipients per message */
  recipients: number;
  /** upstream (proxy -> simulator) over TLS: the simulator's implicit-TLS listener */
  tls: boolean;
  /** an already running proxy; nothing is started, there is no direct baseline and no loss check */
  target?: HostPort;
  /** users are `${userPrefix}${i}@${userDomain}` */
  userPrefix: string;
  userDomain: string;
  /** pid of the --target proxy, to sample its CPU and RSS */
  proxyPid?: number;
  /** the client password of every mailbox (required with target) */
  password?: string;
  /** run the direct baseline (generator straight to the simulator) before the proxy run */
  direct: boolean;
  /** unmeasured warm-up at the same load before each measured run (JIT, tokens, pools), seconds; 0 = none */
  warmupSec: number;
  /**
   * the warm-up also lasts until this many messages were sent (0 = seconds alone): V8 keeps
   * compiling the message path for the first few thousand messages (docs/performance.md)
   */
  warmupMessages: number;
  /** write the JSON result here */
  json?: string;
  quiet: boolean;
  /**
   * start the proxy with `serve --workers N`, one run per entry ([1, 2] compares them in one
   * invocation); undefined = plain `serve` (its config's default)
   */
  workers?: number[];
  /** CPU list (taskset -c) for the proxy and its workers */
  pinProxy?: string;
  /** CPU list for the load: the generator (this process) and the simulator */
  pinLoad?: string;
  /** extra flags for the simulator (e.g. --no-chunking) */
  simArgs?: string[];
}

/** What the command line hands over: strings and booleans, as commander parsed them. */
export interface RawBenchOptions {
  mailboxes?: string | number;
  connections?: string | number;
  rate?: string | number;
  max?: boolean;
  duration?: string | number;
  count?: string | number;
  size?: string | number;
  recipients?: string | number;
  tls?: boolean;
  target?: string;
  userPrefix?: string;
  userDomain?: string;
  password?: string;
  proxyPid?: string | number;
  direct?: boolean;
  warmup?: string | number;
  warmupMessages?: string | number;
  json?: string;
  quiet?: boolean;
  workers?: string | number;
  pinProxy?: string;
  pinLoad?: string;
  simArg?: string[];
}

export class BenchOptionError extends Error {
  readonly code = 'EBENCHOPTION';
  constructor(
    readonly option: string,
    message: string,
  ) {
    super(`${option}: ${message}`);
    this.name = 'BenchOptionError';
  }
}

export const BENCH_DEFAULTS = {
  mailboxes: 100,
  connections: 50,
  durationSec: 10,
  warmupSec: 1,
  warmupMessages: 5000,
  size: 2048,
  recipients: 1,
  userPrefix: 'bench',
  userDomain: 'example.com',
} as const;

/** Smallest message the generator can build (headers alone). */
export const MIN_SIZE = 256;
export const MAX_SIZE = 35 * 1024 * 1024;

function num(
  option: string,
  v: string | number | undefined,
  o: { min: number; max?: number; integer?: boolean },
): number | undefined {
  if (v === undefined) return undefined;
  const n = typeof v === 'number' ? v : v.trim() === '' ? NaN : Number(v);
  const what = o.integer ? 'an integer' : 'a number';
  const range = o.max === undefined ? `>= ${o.min}` : `from ${o.min} to ${o.max}`;
  if (
    !Number.isFinite(n) ||
    (o.integer && !Number.isInteger(n)) ||
    n < o.min ||
    (o.max !== undefined && n > o.max)
  )
    throw new BenchOptionError(option, `expected ${what} ${range}, got ${JSON.stringify(String(v))}`);
  return n;
}

/** A taskset CPU list ("0", "0,1", "0-1"): every CPU must exist on this machine. */
export function parseCpuList(option: string, v: string, cores = os.cpus().length): string {
  const s = v.trim();
  if (!/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(s))
    throw new BenchOptionError(
      option,
      `expected a CPU list such as 0 or 0,1 or 0-1, got ${JSON.stringify(v)}`,
    );
  for (const part of s.split(',')) {
    const [a, b = a] = part.split('-').map(Number) as [number, number?];
    if (b! < a) throw new BenchOptionError(option, `range ${part} is backwards`);
    if (b! >= cores)
      throw new BenchOptionError(option, `CPU ${b} does not exist (this machine has CPUs 0-${cores - 1})`);
  }
  return s;
}

/** Whether an executable of this name is on PATH. */
export function onPath(name: string, envPath = process.env.PATH ?? ''): boolean {
  return envPath
    .split(path.delimiter)
    .filter(Boolean)
    .some((dir) => {
      try {
        fs.accessSync(path.join(dir, name), fs.constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
}

/** "1,2" -> [1, 2]: the worker counts to run, each once, in this order. */
function parseWorkersList(v: string | number): number[] {
  const parts = String(v).split(',');
  const list = parts.map((p) => num('--workers', p, { min: 1, max: 1024, integer: true })!);
  if (new Set(list).size !== list.length)
    throw new BenchOptionError('--workers', `${JSON.stringify(String(v))} names a count twice`);
  return list;
}

export function parseBenchOptions(raw: RawBenchOptions): BenchOptions {
  const mailboxes = num('--mailboxes', raw.mailboxes, { min: 1, max: 1_000_000, integer: true });
  const connections = num('--connections', raw.connections, { min: 1, max: 100_000, integer: true });
  const rate = num('--rate', raw.rate, { min: 0.001, max: 10_000_000 });
  if (rate !== undefined && raw.max)
    throw new BenchOptionError('--rate', 'give either --rate or --max, not both');
  if (rate === undefined && !raw.max) throw new BenchOptionError('--rate', 'give --rate <msg/s> or --max');
  const durationSec = num('--duration', raw.duration, { min: 0.1, max: 86_400 });
  const count = num('--count', raw.count, { min: 1, max: 1_000_000_000, integer: true });
  const size = num('--size', raw.size, { min: MIN_SIZE, max: MAX_SIZE, integer: true });
  const recipients = num('--recipients', raw.recipients, { min: 1, max: 1000, integer: true });
  let target: HostPort | undefined;
  if (raw.target !== undefined) {
    try {
      target = parseHostPort(raw.target);
    } catch (err) {
      throw new BenchOptionError('--target', (err as Error).message);
    }
    if (raw.password === undefined || raw.password === '')
      throw new BenchOptionError(
        '--password',
        'required with --target (the client password of the mailboxes)',
      );
    if (raw.tls)
      throw new BenchOptionError(
        '--tls',
        'only when bench starts the proxy itself (it sets the upstream security); not with --target',
      );
  }
  const proxyPid = num('--proxy-pid', raw.proxyPid, { min: 1, max: 4_194_304, integer: true });
  if (proxyPid !== undefined && !target)
    throw new BenchOptionError(
      '--proxy-pid',
      'only with --target (bench knows the pid of a proxy it starts)',
    );
  const userPrefix = raw.userPrefix ?? BENCH_DEFAULTS.userPrefix;
  if (!/^[A-Za-z0-9._+-]*$/.test(userPrefix))
    throw new BenchOptionError(
      '--user-prefix',
      `"${userPrefix}" may only contain letters, digits and . _ + -`,
    );
  const userDomain = raw.userDomain ?? BENCH_DEFAULTS.userDomain;
  if (!/^[A-Za-z0-9.-]+$/.test(userDomain))
    throw new BenchOptionError('--user-domain', `"${userDomain}" is not a domain name`);
  const warmupSec = num('--warmup', raw.warmup, { min: 0, max: 3600 });
  const warmupMessages = num('--warmup-messages', raw.warmupMessages, {
    min: 0,
    max: 10_000_000,
    integer: true,
  });
  if (raw.json === '') throw new BenchOptionError('--json', 'expected a file name');
  const workers = raw.workers === undefined ? undefined : parseWorkersList(raw.workers);
  if (workers && target)
    throw new BenchOptionError('--workers', 'only when bench starts the proxy itself; not with --target');
  const pinProxy = raw.pinProxy === undefined ? undefined : parseCpuList('--pin-proxy', raw.pinProxy);
  const pinLoad = raw.pinLoad === undefined ? undefined : parseCpuList('--pin-load', raw.pinLoad);
  if (pinProxy && target)
    throw new BenchOptionError('--pin-proxy', 'only when bench starts the proxy itself; not with --target');
  const simArgs = raw.simArg ?? [];
  for (const a of simArgs)
    if (!a.startsWith('--'))
      throw new BenchOptionError('--sim-arg', `expected a simulator flag such as --no-chunking, got "${a}"`);
  if (simArgs.length && target)
    throw new BenchOptionError('--sim-arg', 'only when bench starts the simulator itself; not with --target');
  if ((pinProxy || pinLoad) && !onPath('taskset'))
    throw new BenchOptionError(pinProxy ? '--pin-proxy' : '--pin-load', 'needs taskset (util-linux) on PATH');
  return {
    mailboxes: mailboxes ?? BENCH_DEFAULTS.mailboxes,
    connections: connections ?? BENCH_DEFAULTS.connections,
    rate,
    durationSec: durationSec ?? (count === undefined ? BENCH_DEFAULTS.durationSec : undefined),
    count,
    size: size ?? BENCH_DEFAULTS.size,
    recipients: recipients ?? BENCH_DEFAULTS.recipients,
    tls: raw.tls ?? false,
    target,
    userPrefix,
    userDomain,
    password: raw.password,
    proxyPid,
    direct: target ? false : (raw.direct ?? true),
    warmupSec: warmupSec ?? BENCH_DEFAULTS.warmupSec,
    warmupMessages: warmupMessages ?? BENCH_DEFAULTS.warmupMessages,
    json: raw.json,
    quiet: raw.quiet ?? false,
    ...(workers ? { workers } : {}),
    ...(pinProxy ? { pinProxy } : {}),
    ...(pinLoad ? { pinLoad } : {}),
    ...(simArgs.length ? { simArgs } : {}),
  };
}

export function benchUser(opts: Pick<BenchOptions, 'userPrefix' | 'userDomain'>, i: number): string {
  return `${opts.userPrefix}${i}@${opts.userDomain}`;
}
