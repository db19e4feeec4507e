// One client-facing listener: accepts sockets, reads a PROXY header where one is expected, does the
// implicit-TLS handshake on a TLS listener, then hands the connection to an SmtpSession. It also
// holds every connection to its deadlines (a slowloris defence, as Postfix's
// smtpd_per_request_deadline / smtpd_min_data_rate):
//   - before the session exists (a PROXY header or an implicit-TLS handshake still to come), the
//     socket gets idleTimeout in all, however slowly its bytes trickle in;
//   - a command line must be complete within idleTimeout of the previous reply;
//   - a message must be complete within idleTimeout + bytes received / minDataRate;
//   - a client waiting for our reply (an AUTH check, the upstream's answer) is never timed out.
// A client that misses one is told `421 4.4.2` and disconnected (before the session: just closed).
import net from 'node:net';
import tls from 'node:tls';
import { plainPeerAddress } from '../shared/net.js';
import type { SmtpReply } from '../shared/smtp-reply.js';
import { MAX_PROXY_HEADER, parseProxyHeader } from './wire/proxy-header.js';
import { SmtpSession, type DeadlineSettings, type SessionHandler, type SessionSettings } from './session.js';

export interface SmtpServerOptions {
  host: string;
  port: number;
  /** TLS from the first byte (smtp.tlsListen), with this context */
  implicitTls?: tls.SecureContext;
  /** a PROXY protocol v1 header is expected: from every peer (true) or from these addresses */
  proxyProtocol: boolean | readonly string[];
  maxClients: number;
  session: SessionSettings;
  handler: SessionHandler;
  /** a connection is ready for its greeting: undefined welcomes it, a reply refuses it */
  accept(session: SmtpSession): SmtpReply | undefined;
  /** the server is draining: the reply for new commands */
  draining(): SmtpReply | undefined;
  deadlines(): DeadlineSettings;
  replies: { command: SmtpReply; data: SmtpReply };
}

export class SmtpServer {
  private readonly server: net.Server;
  readonly sessions = new Set<SmtpSession>();
  /** sockets without a session yet, and since when */
  private readonly pending = new Map<net.Socket, number>();
  private readonly timer: NodeJS.Timeout;
  private emptied: (() => void) | undefined;

  constructor(private readonly opts: SmtpServerOptions) {
    this.server = net.createServer({ noDelay: true }, (socket) => this.connection(socket));
    this.timer = setInterval(() => this.sweep(Date.now()), 1000);
    this.timer.unref();
  }

  listen(): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as net.AddressInfo);
      });
    });
  }

  /** Stop accepting; resolves once every session has ended, or after `timeoutMs` (then cut). */
  async close(timeoutMs: number): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.pending.keys()) s.destroy();
    this.pending.clear();
    if (this.sessions.size > 0) {
      const emptied = new Promise<void>((r) => (this.emptied = r));
      const cut = setTimeout(() => {
        for (const s of this.sessions) s.destroy();
      }, timeoutMs);
      await emptied;
      clearTimeout(cut);
    }
    clearInterval(this.timer);
    await closed;
  }

  private sweep(now: number): void {
    const d = this.opts.deadlines();
    for (const [socket, since] of this.pending) {
      if (now - since > d.idleTimeoutMs) {
        this.pending.delete(socket);
        socket.destroy();
      }
    }
    const { command, data } = this.opts.replies;
    for (const s of this.sessions) s.checkDeadline(now, d, command, data);
  }

  private connection(socket: net.Socket): void {
    socket.on('error', noop);
    const peer = socket.remoteAddress ?? '';
    if (this.sessions.size + this.pending.size >= this.opts.maxClients) {
      socket.end(`421 ${this.opts.session.hostname} Too many connected clients, try again in a moment\r\n`);
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    this.pending.set(socket, Date.now());
    socket.once('close', () => this.pending.delete(socket));
    const pp = this.opts.proxyProtocol;
    const expectHeader = pp === true || (Array.isArray(pp) && pp.includes(plainPeerAddress(peer)));
    if (!expectHeader) return this.secureThenStart(socket, plainPeerAddress(peer), socket.remotePort ?? 0);
    readProxyHeader(socket, (header) => {
      if (!header.ok) {
        this.pending.delete(socket);
        socket.end(
          `421 4.3.0 Expected a valid PROXY protocol header (smtp.proxyProtocol): ${header.reason}\r\n`,
        );
        setTimeout(() => socket.destroy(), 1000).unref();
        return;
      }
      this.secureThenStart(
        socket,
        header.address ?? plainPeerAddress(peer),
        header.port ?? socket.remotePort ?? 0,
      );
    });
  }

  private secureThenStart(socket: net.Socket, address: string, port: number): void {
    const context = this.opts.implicitTls;
    if (!context) return this.start(socket, socket, address, port, false);
    const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: context });
    secure.on('error', () => socket.destroy());
    secure.once('secure', () => this.start(socket, secure, address, port, true));
  }

  private start(raw: net.Socket, socket: net.Socket, address: string, port: number, secure: boolean): void {
    if (!this.pending.delete(raw) || socket.destroyed) return; // cut off by its deadline meanwhile
    const session = new SmtpSession(
      socket,
      address,
      port,
      secure,
      this.opts.session,
      this.sessionHandler,
      this.opts.draining,
    );
    this.sessions.add(session);
    session.greet(this.opts.accept(session));
    socket.resume();
  }

  /** the handler, plus the server's own bookkeeping when a session ends */
  private readonly sessionHandler: SessionHandler = {
    authenticate: (s, u, p, m) => this.opts.handler.authenticate(s, u, p, m),
    mailFrom: (s, a, p) => this.opts.handler.mailFrom(s, a, p),
    data: (s) => this.opts.handler.data(s),
    closed: (s) => {
      this.sessions.delete(s);
      this.opts.handler.closed(s);
      if (this.sessions.size === 0 && this.emptied) this.emptied();
    },
  };
}

/** Read the PROXY header line; whatever follows it is put back for the session (or TLS). */
function readProxyHeader(socket: net.Socket, done: (h: ReturnType<typeof parseProxyHeader>) => void): void {
  let got = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    got = Buffer.concat([got, chunk]);
    const lf = got.indexOf(0x0a);
    if (lf < 0) {
      if (got.length > MAX_PROXY_HEADER) finish({ ok: false, reason: 'header line too long' });
      return;
    }
    if (lf + 1 > MAX_PROXY_HEADER) return finish({ ok: false, reason: 'header line too long' });
    const rest = got.subarray(lf + 1);
    finish(parseProxyHeader(got.subarray(0, lf).toString('latin1')), rest);
  };
  const finish = (h: ReturnType<typeof parseProxyHeader>, rest?: Buffer) => {
    socket.removeListener('data', onData);
    socket.pause();
    if (rest && rest.length) socket.unshift(rest);
    done(h);
  };
  socket.on('data', onData);
}

function noop(): void {}
