// Slowloris defence. smtp-server's idle timeout is the socket's, which every received byte re-arms,
// so a client trickling one byte a second holds its connection (and a maxClients slot, and the
// message bytes it has sent so far) forever. Deadlines per request instead, as Postfix's
// smtpd_per_request_deadline / smtpd_min_data_rate do:
//   - a command line must be complete within `idleTimeout` of the previous reply;
//   - a message (DATA) must be complete within `idleTimeout` + bytes received / `minDataRate`,
//     so an honest client on a slow link gets as long as its bytes justify;
//   - before the session exists (a PROXY header still to come, an implicit-TLS handshake not done)
//     the socket gets `idleTimeout` in all: smtp-server's guard there is an idle timer too, so a
//     PROXY header of up to 1 KB trickled a byte per timeout held a pending slot for days.
// A client that misses one is told `421 4.4.2` and disconnected (before the session: just closed,
// nothing can be written yet); its message is not relayed.
// A client waiting for our reply (an AUTH check, the upstream's answer) is never timed out here.
import type { Socket } from 'node:net';
import type { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { smtpReply } from '../shared/replies.js';
import type { SmtpReply } from '../shared/smtp-reply.js';

export interface DeadlineSettings {
  idleTimeoutMs: number;
  /** bytes per second a message must average on top of idleTimeout; 0 = no DATA deadline */
  minDataRate: number;
}

interface ConnLike {
  /** when the current request started: the last complete command line, or the start of DATA */
  __xoRequestAt?: number;
  __xoInData?: boolean;
  __xoTimedOut?: boolean;
  _handlerPending?: boolean;
  _dataStream?: { byteLength?: number } | false | null;
  _parser?: { _dataMode?: boolean } | false;
  _closing?: boolean;
  _closed?: boolean;
  send(code: number, text: string): void;
}

let installed = false;

/** Stamp every complete command line (once per process: it patches smtp-server's prototype). */
function install(): void {
  if (installed) return;
  installed = true;
  const proto = (SMTPConnection as any).prototype;
  const original = proto._onCommand as (this: ConnLike, ...args: unknown[]) => unknown;
  proto._onCommand = function (this: ConnLike, ...args: unknown[]) {
    this.__xoRequestAt = Date.now();
    return original.apply(this, args);
  };
}

/** What a connection is doing, as far as deadlines go. */
function phase(c: ConnLike): 'command' | 'data' | 'waiting' {
  if (c._dataStream) return c._parser && c._parser._dataMode ? 'data' : 'waiting';
  return c._handlerPending ? 'waiting' : 'command';
}

/** The reply for a connection past its deadline at `t`, or undefined. */
function overdue(c: ConnLike, t: number, s: DeadlineSettings): SmtpReply | undefined {
  const p = phase(c);
  if (p === 'waiting' || c.__xoRequestAt === undefined) {
    c.__xoRequestAt = t; // a reply just went out, or the connection's first sight (at most a second late)
    c.__xoInData = false;
    return undefined;
  }
  if (p === 'data') {
    if (!c.__xoInData) {
      c.__xoInData = true;
      c.__xoRequestAt = t;
      return undefined;
    }
    if (s.minDataRate <= 0) return undefined;
    const bytes = (c._dataStream && c._dataStream.byteLength) || 0;
    const limit = s.idleTimeoutMs + (bytes * 1000) / s.minDataRate;
    return t - c.__xoRequestAt > limit ? smtpReply('DATA_TIMEOUT') : undefined;
  }
  c.__xoInData = false;
  return t - c.__xoRequestAt > s.idleTimeoutMs ? smtpReply('COMMAND_TIMEOUT') : undefined;
}

/** Check the connections of `servers` every second; returns the stop function. */
export function enforceRequestDeadlines(
  servers: readonly SMTPServer[],
  settings: () => DeadlineSettings,
  now: () => number = Date.now,
): () => void {
  install();
  const pendingSince = new WeakMap<Socket, number>();
  const timer = setInterval(() => {
    const t = now();
    const s = settings();
    for (const server of servers) {
      const inner = server as unknown as {
        connections?: Set<ConnLike>;
        _pendingSockets?: Map<Socket, Socket>;
      };
      for (const socket of inner._pendingSockets?.keys() ?? []) {
        const since = pendingSince.get(socket);
        if (since === undefined) pendingSince.set(socket, t);
        else if (t - since > s.idleTimeoutMs) socket.destroy();
      }
      const conns = inner.connections;
      if (!conns) continue;
      for (const c of conns) {
        if (c._closing || c._closed || c.__xoTimedOut) continue;
        const r = overdue(c, t, s);
        if (r) {
          c.__xoTimedOut = true;
          c.send(r.code, `${r.enhanced} ${r.text}`); // a 421 also closes
        }
      }
    }
  }, 1000);
  timer.unref();
  return () => clearInterval(timer);
}
