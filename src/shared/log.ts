import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/** Paths that may hold secrets anywhere in a log object; pino replaces them. */
export const REDACT_PATHS = [
  'password',
  'passwordHash',
  'token',
  'accessToken',
  'access_token',
  'refreshToken',
  'refresh_token',
  'clientSecret',
  'client_secret',
  'secretKey',
  'adminToken',
  'authorization',
  'Authorization',
  '*.password',
  '*.passwordHash',
  '*.token',
  '*.accessToken',
  '*.access_token',
  '*.refreshToken',
  '*.refresh_token',
  '*.clientSecret',
  '*.client_secret',
  '*.secretKey',
  '*.adminToken',
  '*.authorization',
  '*.Authorization',
  'headers.authorization',
  'req.headers.authorization',
];

/**
 * Log lines are written in batches, at most this many ms after they were logged (or once
 * BATCH_CHARS have gathered): one write per line was the proxy's largest cost per message after
 * the sockets (docs/performance.md). Lines still waiting are written when the process exits.
 */
export const FLUSH_MS = 100;
const BATCH_CHARS = 16 * 1024;

export interface LogOptions {
  level?: string;
  /** human-readable output; default: when stdout is a terminal */
  pretty?: boolean;
  destination?: NodeJS.WritableStream;
  /** the file descriptor to write to when no destination is given (default 1, stdout) */
  fd?: number;
}

type LineSink = { write(line: string): unknown };

/** Where createLogger's loggers write, so the message line can skip pino (messageLog). */
const sinks = new WeakMap<Logger, LineSink>();

export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? process.env.XOAUTH2_PROXY_LOG_LEVEL ?? 'info';
  const pretty = opts.pretty ?? (process.stdout.isTTY === true && !opts.destination);
  const base = { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: undefined };
  if (pretty) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true } } });
  }
  const sink: LineSink & DestinationStream = opts.destination
    ? (opts.destination as LineSink & DestinationStream)
    : batchedDestination(opts.fd ?? 1);
  const log = pino(base, sink);
  sinks.set(log, sink);
  return log;
}

/** A logger that discards everything (tests, library use). */
export const silentLogger: Logger = pino({ level: 'silent' });

// ---- batched writes to a file descriptor

const pendingAtExit = new Set<() => void>();

function batchedDestination(fd: number): DestinationStream & { flush(cb?: () => void): void } {
  // registered before pino's own exit hook for the destination, so it runs first
  if (pendingAtExit.size === 0) process.once('exit', () => pendingAtExit.forEach((f) => f()));
  const out = pino.destination({ fd, sync: false });
  let buffered = '';
  let timer: NodeJS.Timeout | null = null;
  const writeOut = () => {
    if (timer) clearTimeout(timer);
    timer = null;
    if (buffered === '') return;
    out.write(buffered);
    buffered = '';
  };
  pendingAtExit.add(() => {
    writeOut();
    try {
      out.flushSync();
    } catch {
      // stdout closed, or not ready: nothing more can be done at exit
    }
  });
  return {
    write(line: string) {
      buffered += line;
      if (buffered.length >= BATCH_CHARS) writeOut();
      else if (timer === null) {
        timer = setTimeout(writeOut, FLUSH_MS);
        timer.unref();
      }
    },
    flush(cb?: () => void) {
      writeOut();
      out.flush(cb);
    },
  };
}

// ---- the line per relayed message

/** The fields of the line logged per relayed message (log.messages): fixed, and never a secret. */
export interface MessageLine {
  txid: string;
  account: string;
  rcpts: number;
  size: number;
  result: 'delivered' | 'rejected' | 'deferred';
  reply: string;
  upstream?: string;
  ms: number;
}

const INFO = 30;

/**
 * How to log the line per relayed message on `log`. For createLogger's loggers it is built by hand
 * in pino's format (the same JSON as `log.info(line, 'message')`) and written to the logger's
 * destination: its fields are fixed and hold no secret, so pino's redaction, which cost more than
 * the rest of the line, has nothing to do (docs/performance.md). Other loggers get log.info.
 */
export function messageLog(log: Logger): (line: MessageLine) => void {
  const sink = sinks.get(log);
  if (!sink) return (line) => log.info(line, 'message');
  return (line) => {
    if (log.isLevelEnabled('info')) sink.write(messageJson(line));
  };
}

function messageJson(l: MessageLine): string {
  let s =
    `{"level":${INFO},"time":${Date.now()},"txid":${JSON.stringify(l.txid)},` +
    `"account":${JSON.stringify(l.account)},"rcpts":${l.rcpts},"size":${l.size},` +
    `"result":"${l.result}","reply":${JSON.stringify(l.reply)}`;
  if (l.upstream !== undefined) s += `,"upstream":${JSON.stringify(l.upstream)}`;
  return `${s},"ms":${l.ms},"msg":"message"}\n`;
}
