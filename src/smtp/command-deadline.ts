// Slowloris defence. smtp-server's idle timeout is the socket's, which every received byte re-arms,
// so a client trickling one byte a second holds its connection (and a maxClients slot) forever.
// Here a client gets at most `idleTimeoutMs` to complete each command line; one that does not is
// told `421 4.4.2` and disconnected. DATA is left to the socket timeout (bytes of a message are
// progress), and so is a client waiting for our reply.
import type { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

interface ConnLike {
  __xoCommandAt?: number;
  __xoTimedOut?: boolean;
  _handlerPending?: boolean;
  _dataStream?: unknown;
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
    this.__xoCommandAt = Date.now();
    return original.apply(this, args);
  };
}

/** Check the connections of `servers` every second; returns the stop function. */
export function enforceCommandDeadline(
  servers: readonly SMTPServer[],
  idleTimeoutMs: () => number,
  now: () => number = Date.now,
): () => void {
  install();
  const timer = setInterval(() => {
    const t = now();
    const limit = idleTimeoutMs();
    for (const server of servers) {
      const conns = (server as unknown as { connections?: Set<ConnLike> }).connections;
      if (!conns) continue;
      for (const c of conns) {
        if (c._closing || c._closed || c.__xoTimedOut) continue;
        // the connection's first sight counts as its start (at most a second late)
        if (c.__xoCommandAt === undefined || c._handlerPending || c._dataStream) {
          c.__xoCommandAt ??= t;
          if (c._handlerPending || c._dataStream) c.__xoCommandAt = t;
          continue;
        }
        if (t - c.__xoCommandAt > limit) {
          c.__xoTimedOut = true;
          c.send(421, '4.4.2 Error: timeout exceeded, no complete command'); // a 421 also closes
        }
      }
    }
  }, 1000);
  timer.unref();
  return () => clearInterval(timer);
}
