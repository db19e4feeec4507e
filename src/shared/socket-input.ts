// A socket's input handed to one function, without Node's Readable machinery where Node allows it.
//
// Every 'data' event goes through Readable.push, addChunk, the emit and a process.nextTick for
// maybeReadMore: 6-8 µs of user CPU per read in a micro benchmark on the 2026-12-03 VM, against the
// `onread` path (the handle reads into a buffer of ours and calls us); 2-8 % of a message's CPU end
// to end (docs/performance.md, "Reads without the stream"). A relayed message is three reads (two on
// the client's socket, one on the upstream's).
//
// Node 20 offers `onread` only to sockets it connects itself (net.connect, and tls.connect without
// `socket`). Accepted sockets and a TLS socket over an existing one (STARTTLS) get the same path by
// setting what `onread` sets: the socket's kBuffer / kBufferCb fields, found by their symbols'
// descriptions, and the handle's `useUserBuffer`. Where any of that is missing (another Node, a
// handle without it, input the stream already holds) the socket is read through 'data' as before.
import net from 'node:net';

/** One buffer for every socket: each read is copied out of it before anything else runs. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

interface Fields {
  buffer: symbol;
  callback: symbol;
  generator: symbol;
}

function findFields(): Fields | undefined {
  const probe = new net.Socket();
  const byName = new Map(Object.getOwnPropertySymbols(probe).map((s) => [s.description, s]));
  const [buffer, callback, generator] = ['kBuffer', 'kBufferCb', 'kBufferGen'].map((n) => byName.get(n));
  const p = probe as unknown as Record<symbol, unknown>;
  if (!buffer || !callback || !generator) return undefined;
  // they must be what net.Socket's constructor sets them to without `onread`
  if (p[buffer] !== null || p[callback] !== null || p[generator] !== null) return undefined;
  return { buffer, callback, generator };
}

const FIELDS = findFields();

export interface SocketInput {
  /** read through `onread` rather than 'data' events */
  readonly direct: boolean;
  /** hand no more input to the function (what is read after this is dropped) */
  stop(): void;
}

type Handle = { useUserBuffer?: (buf: Uint8Array) => void };

/**
 * For a socket we are about to connect (net.connect, or tls.connect without `socket`): the
 * `onread` option to pass, and the input it feeds. Each read is copied out of the shared buffer
 * before it is handed over.
 */
export function connectInput(onChunk: (chunk: Buffer) => void): {
  onread: net.OnReadOpts;
  input: SocketInput;
} {
  let stopped = false;
  // true: go on reading (pausing is the socket's pause(), as with 'data')
  const callback = (n: number, buf: Uint8Array): boolean => {
    if (stopped) return true;
    const chunk = Buffer.allocUnsafe(n);
    chunk.set(buf.subarray(0, n));
    onChunk(chunk);
    return true;
  };
  return { onread: { buffer: READ_BUFFER, callback }, input: { direct: true, stop: () => (stopped = true) } };
}

/** Deliver every chunk an existing `socket` reads to `onChunk`, which owns the Buffer it gets. */
export function readSocket(socket: net.Socket, onChunk: (chunk: Buffer) => void): SocketInput {
  const s = socket as unknown as Record<symbol, unknown> & { _handle?: Handle | null };
  const handle = s._handle;
  if (
    FIELDS &&
    handle &&
    typeof handle.useUserBuffer === 'function' &&
    !s[FIELDS.buffer] &&
    socket.readableLength === 0 &&
    socket.listenerCount('data') === 0
  ) {
    const { onread, input } = connectInput(onChunk);
    s[FIELDS.buffer] = READ_BUFFER;
    s[FIELDS.callback] = onread.callback;
    handle.useUserBuffer(READ_BUFFER);
    return input;
  }
  socket.on('data', onChunk);
  return { direct: false, stop: () => socket.removeListener('data', onChunk) };
}
