// The message channel between a worker process and the primary: node's IPC (process.send in the
// worker, worker.send in the primary), wrapped so the coordinator and its host see one small shape
// and tests can use an in-memory pair. Messages are plain JSON (node's default IPC serialization).
import type { Unsubscribe } from './types.js';

export interface IpcChannel {
  /** best effort: a closed channel drops the message (the caller learns of it through onClose) */
  send(msg: object): void;
  onMessage(fn: (msg: unknown) => void): Unsubscribe;
  /** the other side is gone (process exited, channel disconnected) */
  onClose(fn: () => void): Unsubscribe;
  readonly connected: boolean;
}

/** Something with node's IPC surface: `process` in a worker, a cluster Worker or ChildProcess in the primary. */
export interface IpcPeer extends Pick<NodeJS.EventEmitter, 'on' | 'off'> {
  send?(msg: unknown, handle?: undefined, options?: object, cb?: (err: Error | null) => void): boolean;
  readonly connected?: boolean;
  isConnected?(): boolean;
}

function sub(peer: IpcPeer, event: string, fn: (...args: any[]) => void): Unsubscribe {
  peer.on(event, fn);
  return () => void peer.off(event, fn);
}

/** The channel over a node IPC peer: `process` (in a worker) or the primary's handle on a worker. */
export function peerChannel(peer: IpcPeer): IpcChannel {
  const connected = () => (peer.isConnected ? peer.isConnected() : peer.connected === true);
  return {
    send(msg) {
      if (!connected() || !peer.send) return;
      // with a callback, a send on a channel closing meanwhile is reported here, not thrown
      peer.send(msg, undefined, {}, () => undefined);
    },
    onMessage: (fn) => sub(peer, 'message', fn),
    onClose(fn) {
      let done = false;
      const once = () => {
        if (done) return;
        done = true;
        fn();
      };
      const a = sub(peer, 'disconnect', once);
      const b = sub(peer, 'exit', once);
      return () => {
        a();
        b();
      };
    },
    get connected() {
      return connected();
    },
  };
}

/**
 * Two connected in-memory ends (tests). Delivery is asynchronous and every message goes through
 * JSON, as over a real channel, so what does not survive JSON fails here too.
 */
export function channelPair(): [IpcChannel, IpcChannel, () => void] {
  const listeners = [new Set<(m: unknown) => void>(), new Set<(m: unknown) => void>()];
  const closers = [new Set<() => void>(), new Set<() => void>()];
  let open = true;
  const end = (me: 0 | 1): IpcChannel => ({
    send(msg) {
      if (!open) return;
      const text = JSON.stringify(msg);
      setImmediate(() => {
        if (!open) return;
        for (const fn of listeners[1 - me]!) fn(JSON.parse(text));
      });
    },
    onMessage(fn) {
      listeners[me]!.add(fn);
      return () => listeners[me]!.delete(fn);
    },
    onClose(fn) {
      closers[me]!.add(fn);
      return () => closers[me]!.delete(fn);
    },
    get connected() {
      return open;
    },
  });
  const close = () => {
    if (!open) return;
    open = false;
    for (const set of closers) for (const fn of set) fn();
  };
  return [end(0), end(1), close];
}
