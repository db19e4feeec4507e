// A lean SMTP client for load generation: one persistent connection, replies matched FIFO to what
// was sent, one write per pipelined envelope (MAIL + RCPTs + DATA) and one (corked) write per body.
// Deliberately small: no string decoding of message bytes, no per-command promises on the hot path.
import net from 'node:net';
import tls from 'node:tls';

export type Security = 'none' | 'starttls' | 'tls';

export type AuthSpec =
  | { mechanism: 'PLAIN'; user: string; password: string }
  | { mechanism: 'XOAUTH2'; user: string; token: string }
  | { mechanism: 'none'; user: string };

export interface ConnectOptions {
  host: string;
  port: number;
  security?: Security;
  /** CA (PEM), servername, rejectUnauthorized for TLS */
  tlsOptions?: tls.ConnectionOptions;
  auth: AuthSpec;
  ehloName?: string;
  /** connect, TLS and each reply during the handshake */
  connectTimeoutMs?: number;
  /** a reply that takes longer than this kills the connection (only while a reply is awaited) */
  replyTimeoutMs?: number;
}

export interface SmtpReply {
  code: number;
  /** all reply lines, CRLF removed, joined by "\n" (codes included) */
  text: string;
}

export type SmtpClientErrorCode = 'ECONNECTION' | 'ETIMEDOUT' | 'EPROTOCOL' | 'EAUTH' | 'ECLOSED';

export class SmtpClientError extends Error {
  constructor(
    readonly code: SmtpClientErrorCode,
    message: string,
    readonly reply?: SmtpReply,
  ) {
    super(message);
    this.name = 'SmtpClientError';
  }
}

interface Waiter {
  /** replies still expected */
  left: number;
  replies: SmtpReply[];
  resolve: (replies: SmtpReply[]) => void;
  reject: (err: Error) => void;
}

type State = 'connecting' | 'ready' | 'closed';

const CRLF_DOT_CRLF = Buffer.from('.\r\n', 'latin1');

export class BenchSmtpConnection {
  state: State = 'connecting';
  readonly user: string;
  /** ESMTP extensions from the last EHLO, upper-cased keywords */
  extensions = new Set<string>();
  private socket: net.Socket;
  private buf = '';
  private lines: string[] = [];
  private waiters: Waiter[] = [];
  private closeError: Error | undefined;
  private readonly replyTimeoutMs: number;

  private constructor(socket: net.Socket, user: string, replyTimeoutMs: number) {
    this.socket = socket;
    this.user = user;
    this.replyTimeoutMs = replyTimeoutMs;
    this.attach(socket);
  }

  /** Connect, greet, EHLO, (STARTTLS, EHLO), AUTH. Rejects with SmtpClientError. */
  static async open(o: ConnectOptions): Promise<BenchSmtpConnection> {
    const connectTimeoutMs = o.connectTimeoutMs ?? 30_000;
    const security = o.security ?? 'none';
    const socket =
      security === 'tls'
        ? tls.connect({ host: o.host, port: o.port, servername: 'localhost', ...o.tlsOptions })
        : net.connect({ host: o.host, port: o.port });
    socket.setNoDelay(true);
    const conn = new BenchSmtpConnection(socket, o.auth.user, o.replyTimeoutMs ?? 60_000);
    const timer = setTimeout(
      () => conn.destroy(new SmtpClientError('ETIMEDOUT', `no SMTP session within ${connectTimeoutMs} ms`)),
      connectTimeoutMs,
    );
    try {
      await conn.expectOk('greeting', 220);
      const name = o.ehloName ?? 'bench.localhost';
      await conn.ehlo(name);
      if (security === 'starttls') {
        await conn.command('STARTTLS', 'STARTTLS', 220);
        await conn.upgrade({ servername: 'localhost', ...o.tlsOptions });
        await conn.ehlo(name);
      }
      await conn.authenticate(o.auth);
      conn.state = 'ready';
      return conn;
    } catch (err) {
      conn.destroy(err as Error);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * One transaction: MAIL + RCPTs + DATA in one write; on 354 the body (head + tail + ".") in one
   * corked write; resolves with the reply that decides the outcome: the final reply, or the first
   * failing reply of the envelope (after RSET). Rejects only if the connection fails.
   */
  async send(from: string, to: readonly string[], head: Buffer, tail: Buffer): Promise<SmtpReply> {
    const size = head.length + tail.length;
    let envelope = this.extensions.has('SIZE')
      ? `MAIL FROM:<${from}> SIZE=${size}\r\n`
      : `MAIL FROM:<${from}>\r\n`;
    for (const r of to) envelope += `RCPT TO:<${r}>\r\n`;
    envelope += 'DATA\r\n';
    const envelopeReplies = this.expect(to.length + 2);
    this.socket.write(envelope, 'latin1');
    const replies = await envelopeReplies;
    const closing = replies.find((r) => r.code === 421);
    if (closing) return closing; // the server closed the connection with it
    const data = replies[replies.length - 1]!;
    let failed: SmtpReply | undefined;
    for (let i = 0; i < replies.length - 1; i++) {
      if (replies[i]!.code >= 300) {
        failed = replies[i];
        break;
      }
    }
    if (data.code !== 354) {
      // Leave the session clean for the next transaction.
      const rset = this.expect(1);
      this.socket.write('RSET\r\n');
      await rset;
      return failed ?? data;
    }
    const final = this.expect(1);
    const s = this.socket;
    s.cork();
    s.write(head);
    if (tail.length) s.write(tail);
    s.write(CRLF_DOT_CRLF);
    s.uncork();
    const [reply] = await final;
    // A refused recipient with a 250 at the end means partial delivery: report the refusal.
    return failed && reply!.code < 300 ? failed : reply!;
  }

  /** QUIT politely, then close; never rejects. */
  async quit(timeoutMs = 1000): Promise<void> {
    if (this.state === 'closed') return;
    const done = this.expect(1).then(
      () => undefined,
      () => undefined,
    );
    this.socket.write('QUIT\r\n');
    const timer = setTimeout(() => this.destroy(new SmtpClientError('ECLOSED', 'closed')), timeoutMs);
    await done;
    clearTimeout(timer);
    this.destroy(new SmtpClientError('ECLOSED', 'closed'));
  }

  destroy(err: Error = new SmtpClientError('ECLOSED', 'closed')): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.closeError = err;
    this.socket.destroy();
    this.failWaiters(err);
  }

  // ---- internals ------------------------------------------------------------------------------

  private attach(socket: net.Socket): void {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: Error) => this.destroy(new SmtpClientError('ECONNECTION', `${err.message}`)));
    socket.on('close', () =>
      this.destroy(new SmtpClientError('ECONNECTION', 'connection closed by the server')),
    );
    socket.setTimeout(this.replyTimeoutMs, () => {
      if (this.waiters.length)
        this.destroy(new SmtpClientError('ETIMEDOUT', `no reply within ${this.replyTimeoutMs} ms`));
    });
  }

  private detach(socket: net.Socket): void {
    socket.removeAllListeners('data');
    socket.removeAllListeners('error');
    socket.removeAllListeners('close');
    socket.setTimeout(0);
  }

  private onData(chunk: Buffer): void {
    this.buf += chunk.toString('latin1');
    let start = 0;
    for (;;) {
      const end = this.buf.indexOf('\r\n', start);
      if (end < 0) break;
      const line = this.buf.slice(start, end);
      start = end + 2;
      if (line.length >= 4 && line.charCodeAt(3) === 45 /* - */) {
        this.lines.push(line);
        continue;
      }
      let text = line;
      if (this.lines.length) {
        this.lines.push(line);
        text = this.lines.join('\n');
        this.lines = [];
      }
      const code = Number(line.slice(0, 3));
      if (!Number.isInteger(code) || code < 200 || code > 599) {
        this.destroy(
          new SmtpClientError('EPROTOCOL', `not an SMTP reply: ${JSON.stringify(line.slice(0, 80))}`),
        );
        return;
      }
      const w = this.waiters[0];
      if (!w) {
        // An unsolicited 421 (e.g. the server shutting down) means the server is closing: the
        // connection must not start another transaction (RFC 5321 3.8). Other strays are ignored.
        if (code === 421) {
          this.destroy(new SmtpClientError('ECLOSED', `server closing: ${text}`));
          return;
        }
        continue;
      }
      w.replies.push({ code, text });
      if (code === 421) {
        // The server is closing: this reply decides what is waited for; nothing more will come.
        this.waiters.shift();
        w.resolve(w.replies);
        this.destroy(new SmtpClientError('ECLOSED', `server closing: ${text}`));
        return;
      }
      if (--w.left === 0) {
        this.waiters.shift();
        w.resolve(w.replies);
      }
    }
    this.buf = start === this.buf.length ? '' : this.buf.slice(start);
    if (this.buf.length > 65_536) this.destroy(new SmtpClientError('EPROTOCOL', 'reply line too long'));
  }

  private expect(n: number): Promise<SmtpReply[]> {
    if (this.state === 'closed') return Promise.reject(this.closeError);
    return new Promise((resolve, reject) => this.waiters.push({ left: n, replies: [], resolve, reject }));
  }

  private failWaiters(err: Error): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.reject(err);
  }

  private async expectOk(what: string, want: number): Promise<SmtpReply> {
    const [reply] = await this.expect(1);
    if (reply!.code !== want)
      throw new SmtpClientError('EPROTOCOL', `${what}: expected ${want}, got ${oneLine(reply!)}`, reply);
    return reply!;
  }

  private command(line: string, what: string, want: number): Promise<SmtpReply> {
    const p = this.expectOk(what, want);
    this.socket.write(line + '\r\n');
    return p;
  }

  private async ehlo(name: string): Promise<void> {
    const reply = await this.command(`EHLO ${name}`, 'EHLO', 250);
    this.extensions = new Set(
      reply.text
        .split('\n')
        .slice(1)
        .map((l) => l.slice(4).split(' ')[0]!.toUpperCase()),
    );
  }

  private upgrade(options: tls.ConnectionOptions): Promise<void> {
    const plain = this.socket;
    this.detach(plain);
    return new Promise((resolve, reject) => {
      const secure = tls.connect({ ...options, socket: plain }, () => resolve());
      secure.setNoDelay(true);
      this.socket = secure;
      this.attach(secure);
      secure.once('error', reject);
    });
  }

  private async authenticate(auth: AuthSpec): Promise<void> {
    if (auth.mechanism === 'none') return;
    const initial =
      auth.mechanism === 'PLAIN'
        ? Buffer.from(`\0${auth.user}\0${auth.password}`, 'utf8').toString('base64')
        : Buffer.from(`user=${auth.user}\x01auth=Bearer ${auth.token}\x01\x01`, 'utf8').toString('base64');
    const p = this.expect(1);
    this.socket.write(`AUTH ${auth.mechanism} ${initial}\r\n`);
    let [reply] = await p;
    if (reply!.code === 334) {
      // XOAUTH2 error challenge (Google): an empty line gets the final 535.
      const q = this.expect(1);
      this.socket.write('\r\n');
      [reply] = await q;
    }
    if (reply!.code !== 235)
      throw new SmtpClientError('EAUTH', `AUTH ${auth.mechanism} as ${auth.user}: ${oneLine(reply!)}`, reply);
  }
}

export function oneLine(reply: SmtpReply): string {
  const lines = reply.text.split('\n');
  return lines.length === 1 ? lines[0]! : `${lines[0]} (+${lines.length - 1} lines)`;
}
