// The one file that touches smtp-server's internals: its private fields and methods (`_socket`,
// `_parser`, `_dataStream`, `_onCommand`, `send`, `connections`, ...), which the reply patch, the
// request deadlines and drain need and its public API does not give. They are typed by
// smtp-server's own declarations, the dependency is pinned to one version in package.json, and
// checkSmtpServerInternals() verifies at start-up that every one of them is there: a different
// smtp-server fails loudly at once, naming what is missing, instead of misbehaving under load.
import { createRequire } from 'node:module';
import net from 'node:net';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { SmtpReply } from '../shared/smtp-reply.js';

/** The smtp-server version this file was written against; package.json pins exactly this one. */
export const SMTP_SERVER_VERSION = '3.21.6';

export type Connection = SMTPConnection;
type ReplyData = string | string[] | null | undefined;
export type SendReply = (this: Connection, code: number, data?: ReplyData, context?: string | false) => void;

// ---- connections of a server

/** The client connections a server has open now (with a session). */
export function connectionsOf(server: SMTPServer): ReadonlySet<Connection> {
  return server.connections;
}

/** Sockets accepted but without a session yet (PROXY header or implicit-TLS handshake pending). */
export function pendingSocketsOf(server: SMTPServer): IterableIterator<net.Socket> {
  return server._pendingSockets.keys();
}

export function sessionOf(conn: Connection): SMTPServerSession {
  return conn.session;
}

/**
 * Write one of our replies on a connection outside a command's callback (drain, a deadline): the
 * enhanced code goes in the text, which the reply patch keeps. A 421 also closes the connection.
 */
export function sendReply(conn: Connection, r: SmtpReply): void {
  conn.send(r.code, `${r.enhanced} ${r.text}`);
}

// ---- what a connection is doing

export function socketOf(conn: Connection): net.Socket {
  return conn._socket;
}

/** a STARTTLS upgrade is under way: the raw socket is being handed to TLS */
export function isUpgrading(conn: Connection): boolean {
  return conn._upgrading;
}

/** closing or closed: nothing more is to be written */
export function isClosing(conn: Connection): boolean {
  return conn._closing || conn._closed;
}

/** AUTH is refused on this connection until STARTTLS (smtp-server's own condition for its 538). */
export function authNeedsTls(conn: Connection): boolean {
  const o = conn._server?.options;
  return !conn.secure && o !== undefined && !o.allowInsecureAuth && !o.hideSTARTTLS;
}

/**
 * command: reading a command line; data: receiving a message; waiting: for our reply (an AUTH
 * check, the handler of a command, the end of a message's relay).
 */
export type ConnectionPhase = 'command' | 'data' | 'waiting';

export function phaseOf(conn: Connection): ConnectionPhase {
  if (conn._dataStream) return conn._parser && conn._parser._dataMode ? 'data' : 'waiting';
  return conn._handlerPending ? 'waiting' : 'command';
}

/** bytes of the message being received (0 outside DATA) */
export function dataBytesOf(conn: Connection): number {
  return (conn._dataStream && conn._dataStream.byteLength) || 0;
}

// ---- patches of SMTPConnection.prototype (once per process, by their callers)

/** Route every reply through `wrapper`, which calls `original` to write it. */
export function wrapSend(
  wrapper: (
    this: Connection,
    original: SendReply,
    code: number,
    data?: ReplyData,
    context?: string | false,
  ) => void,
): void {
  const proto = SMTPConnection.prototype;
  const original = proto.send as SendReply;
  proto.send = function (this: Connection, code: number, data?: ReplyData, context?: string | false) {
    wrapper.call(this, original, code, data, context);
  };
}

/** Call `fn` for every complete command line a connection reads, before it is handled. */
export function onCommandLine(fn: (conn: Connection) => void): void {
  const proto = SMTPConnection.prototype;
  const original = proto._onCommand;
  proto._onCommand = function (this: Connection, ...args: Parameters<typeof original>) {
    fn(this);
    return original.apply(this, args);
  };
}

// ---- the start-up check

/** What the check constructs and inspects; the installed smtp-server unless a test says otherwise. */
export interface SmtpServerLibrary {
  Server: new (options: ConstructorParameters<typeof SMTPServer>[0]) => SMTPServer;
  Connection: new (server: SMTPServer, socket: net.Socket) => Connection;
}

type Kind = 'function' | 'object' | 'boolean' | 'string' | 'number';
const PROTOTYPE_METHODS = ['send', '_onCommand'] as const;
const CONNECTION_FIELDS: [string, Kind | 'false'][] = [
  ['id', 'string'],
  ['session', 'object'],
  ['secure', 'boolean'],
  ['_socket', 'object'],
  ['_server', 'object'],
  ['_upgrading', 'boolean'],
  ['_parser', 'object'],
  ['_dataStream', 'false'],
  ['_handlerPending', 'boolean'],
  ['_closing', 'boolean'],
  ['_closed', 'boolean'],
];

export class SmtpServerInternalsError extends Error {
  constructor(what: string) {
    super(
      `smtp-server internals changed: ${what}. xoauth2-proxy relies on them (src/smtp/smtp-server-internals.ts) ` +
        `and is pinned to smtp-server ${SMTP_SERVER_VERSION}; installed: ${installedVersion()}. ` +
        `Install the pinned version (npm ci).`,
    );
    this.name = 'SmtpServerInternalsError';
  }
}

function installedVersion(): string {
  try {
    return String(createRequire(import.meta.url)('smtp-server/package.json').version);
  } catch {
    return 'unknown';
  }
}

function kindOf(v: unknown): string {
  return v === null ? 'null' : typeof v;
}

/** Throws unless `ok`, naming `owner`'s `field`, what it should be and what it is. */
function need(ok: boolean, owner: string, field: string, want: string, value: unknown): void {
  if (ok) return;
  const got = value === undefined ? 'it is missing' : `it is ${kindOf(value)}`;
  throw new SmtpServerInternalsError(`${owner} "${field}" should be ${want}, ${got}`);
}

function needKind(owner: string, field: string, value: unknown, kind: Kind | 'false'): void {
  const want = kind === 'false' ? 'false' : kind === 'object' ? 'an object' : `a ${kind}`;
  need(kind === 'false' ? value === false : kindOf(value) === kind, owner, field, want, value);
}

let checked = false;

/**
 * Verify that every internal this file uses is there, on a probe server and connection that never
 * touch the network; throws SmtpServerInternalsError naming the first one missing. Cheap after the
 * first success.
 */
export function checkSmtpServerInternals(
  lib: SmtpServerLibrary = { Server: SMTPServer, Connection: SMTPConnection },
): void {
  const real = lib.Server === SMTPServer && lib.Connection === SMTPConnection;
  if (real && checked) return;
  const proto = lib.Connection.prototype as unknown as Record<string, unknown>;
  for (const m of PROTOTYPE_METHODS) needKind('SMTPConnection.prototype', m, proto[m], 'function');

  const server = new lib.Server({ logger: false, hideSTARTTLS: true, disabledCommands: ['STARTTLS'] });
  const s = server as unknown as Record<string, unknown>;
  need(s.connections instanceof Set, 'SMTPServer', 'connections', 'a Set', s.connections);
  need(s._pendingSockets instanceof Map, 'SMTPServer', '_pendingSockets', 'a Map', s._pendingSockets);

  const socket = new net.Socket();
  try {
    const c = new lib.Connection(server, socket) as unknown as Record<string, unknown>;
    for (const [field, kind] of CONNECTION_FIELDS) needKind('SMTPConnection', field, c[field], kind);
    const options = (c._server as { options?: unknown }).options;
    needKind('SMTPConnection._server', 'options', options, 'object');
    const parser = c._parser as Record<string, unknown>;
    needKind('SMTPConnection._parser', '_dataMode', parser._dataMode, 'boolean');
    needKind('SMTPConnection._parser', 'startDataMode', parser.startDataMode, 'function');
    const data = (parser.startDataMode as () => Record<string, unknown>).call(parser);
    needKind('the DATA stream', 'byteLength', data.byteLength, 'number');
  } finally {
    socket.destroy();
  }
  if (real) checked = true;
}
