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
import { smtpReply } from '../shared/replies.js';
import type { SmtpReply } from '../shared/smtp-reply.js';
import {
  connectionsOf,
  dataBytesOf,
  isClosing,
  onCommandLine,
  pendingSocketsOf,
  phaseOf,
  sendReply,
  type Connection,
} from './smtp-server-internals.js';

export interface DeadlineSettings {
  idleTimeoutMs: number;
  /** bytes per second a message must average on top of idleTimeout; 0 = no DATA deadline */
  minDataRate: number;
}

interface Deadline {
  /** when the current request started: the last complete command line, or the start of DATA */
  requestAt?: number;
  inData: boolean;
  timedOut: boolean;
}

const deadlines = new WeakMap<Connection, Deadline>();
let installed = false;

function deadlineOf(c: Connection): Deadline {
  let d = deadlines.get(c);
  if (!d) deadlines.set(c, (d = { inData: false, timedOut: false }));
  return d;
}

/** Stamp every complete command line (once per process: it patches smtp-server). */
function install(): void {
  if (installed) return;
  installed = true;
  onCommandLine((c) => {
    deadlineOf(c).requestAt = Date.now();
  });
}

/** The reply for a connection past its deadline at `t`, or undefined. */
function overdue(c: Connection, d: Deadline, t: number, s: DeadlineSettings): SmtpReply | undefined {
  const p = phaseOf(c);
  if (p === 'waiting' || d.requestAt === undefined) {
    d.requestAt = t; // a reply just went out, or the connection's first sight (at most a second late)
    d.inData = false;
    return undefined;
  }
  if (p === 'data') {
    if (!d.inData) {
      d.inData = true;
      d.requestAt = t;
      return undefined;
    }
    if (s.minDataRate <= 0) return undefined;
    const limit = s.idleTimeoutMs + (dataBytesOf(c) * 1000) / s.minDataRate;
    return t - d.requestAt > limit ? smtpReply('DATA_TIMEOUT') : undefined;
  }
  d.inData = false;
  return t - d.requestAt > s.idleTimeoutMs ? smtpReply('COMMAND_TIMEOUT') : undefined;
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
      for (const socket of pendingSocketsOf(server)) {
        const since = pendingSince.get(socket);
        if (since === undefined) pendingSince.set(socket, t);
        else if (t - since > s.idleTimeoutMs) socket.destroy();
      }
      for (const c of connectionsOf(server)) {
        if (isClosing(c)) continue;
        const d = deadlineOf(c);
        if (d.timedOut) continue;
        const r = overdue(c, d, t, s);
        if (r) {
          d.timedOut = true;
          sendReply(c, r); // a 421 also closes
        }
      }
    }
  }, 1000);
  timer.unref();
  return () => clearInterval(timer);
}
