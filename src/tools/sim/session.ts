import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import tls from 'node:tls';
import type { SimState } from './state.js';
import { MAX_MESSAGE_SIZE, type SimStyle } from './types.js';

/** What every session of one simulator shares. */
export interface SessionContext {
  state: SimState;
  style: SimStyle;
  hostname: string;
  requireTls: boolean;
  secureContext: tls.SecureContext;
  idleTimeoutMs: number;
  /** CHUNKING (RFC 3030, BDAT) is advertised and BDAT accepted */
  chunking: boolean;
  /** open raw sockets, so close() can end them */
  sockets: Set<net.Socket>;
  /** open sessions, for the shared idle sweep */
  sessions: Set<SmtpSession>;
}

/**
 * - command: reading command lines
 * - sasl: the next line answers an AUTH challenge (handled by `saslStep`)
 * - data: reading the message until CRLF.CRLF
 * - bdat: reading the octets of a BDAT chunk (RFC 3030): counted, never parsed
 * - waiting: the end-of-DATA reply is delayed (latency fault); input is buffered until it is sent
 * - closed: the socket is gone or going; input is ignored
 */
type Phase = 'command' | 'sasl' | 'data' | 'bdat' | 'waiting' | 'closed';

type Outcome = 'store' | 'fail4xx' | 'fail5xx' | 'drop' | 'too-big';

const TERMINATOR = Buffer.from('\r\n.\r\n');
const BLANK_LINE = Buffer.from('\r\n\r\n');
/** Longest command line accepted (AUTH lines carry ~2 KB tokens). */
const MAX_LINE = 16 * 1024;
/** How much of the message is kept to find the Message-ID header; headers past this are not searched. */
const HEADER_CAP = 64 * 1024;
/** Pause reading when this much input waits behind a delayed reply. */
const MAX_BUFFERED = 1 << 20;
const MESSAGE_ID = /^message-id[ \t]*:[ \t]*(.*(?:\r\n[ \t].*)*)/im;

const GOOGLE_AUTH_MECHS = 'LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH';
const MICROSOFT_AUTH_MECHS = 'LOGIN XOAUTH2';
const GOOGLE_XOAUTH2_ERROR = Buffer.from(
  JSON.stringify({ status: '400', schemes: 'Bearer', scope: 'https://mail.google.com/' }),
).toString('base64');
const GOOGLE_OAUTHBEARER_ERROR = Buffer.from(
  JSON.stringify({ status: 'invalid_token', schemes: 'Bearer', scope: 'https://mail.google.com/' }),
).toString('base64');

let sessionSeq = 0;

export class SmtpSession {
  private socket: net.Socket;
  private phase: Phase = 'command';
  private secure: boolean;
  /** bytes of an incomplete line, or input that arrived while `waiting` */
  private pending: Buffer | null = null;
  /** replies collected while processing one input chunk; written in one go (pipelining) */
  private out = '';
  private saslStep: ((line: string) => void) | null = null;
  private greeted = false;
  /** authenticated user (lower-cased) */
  private user: string | null = null;
  private mailFrom: string | null = null;
  /** dropEvery fault: this transaction's connection is cut here */
  private dropAt: 'rcpt' | 'data' | undefined;
  private rcptCount = 0;
  private sizeOk = true;
  // DATA state
  private dataBytes = 0;
  private readonly tail = Buffer.alloc(4);
  private tailLen = 0;
  private readonly scratch = Buffer.alloc(8);
  private header: Buffer | null = null;
  // BDAT state: the transaction's message arrives in chunks (RFC 3030)
  /** the transaction has had an accepted BDAT chunk: DATA and RCPT are out of sequence (503) */
  private chunked = false;
  /** octets of the current chunk still to come */
  private chunkLeft = 0;
  private chunkSize = 0;
  private chunkLast = false;
  /** the reply refusing the current chunk (its octets are read and dropped); null = accepted */
  private chunkRefusal: string | null = null;
  /** octets of the accepted chunks so far: exactly the message (no stuffing, no terminator) */
  private messageBytes = 0;
  private headerEnd = -1;
  private timer: NodeJS.Timeout | null = null;
  private readonly idPrefix: string;
  private seq = 0;
  /** time without input, advanced by the simulator's idle sweep */
  private idleMs = 0;

  constructor(
    private readonly ctx: SessionContext,
    private readonly raw: net.Socket,
    implicitTls: boolean,
  ) {
    this.socket = raw;
    this.secure = implicitTls;
    this.idPrefix = `${(++sessionSeq).toString(36)}${randomBytes(3).toString('hex')}`;
    const { state } = ctx;
    state.connectionsOpen++;
    state.connectionsTotal++;
    ctx.sockets.add(raw);
    ctx.sessions.add(this);
    raw.setNoDelay(true);
    raw.on('error', () => {});
    raw.on('close', () => this.onClose());
    raw.on('data', this.onData);
    this.reply(
      ctx.style === 'google'
        ? `220 ${ctx.hostname} ESMTP ${this.qid()} - gsmtp`
        : `220 ${ctx.hostname} Microsoft ESMTP MAIL Service ready at ${new Date().toUTCString()}`,
    );
    this.flush();
  }

  private qid(): string {
    return `${this.idPrefix}-${++this.seq}`;
  }

  private reply(line: string): void {
    this.out += line + '\r\n';
  }

  private flush(): void {
    if (this.out === '' || this.socket.destroyed) return;
    this.socket.write(this.out);
    this.out = '';
  }

  /** A fault: the connection dies without a reply to the current command (earlier replies go out first). */
  private dropConnection(): void {
    this.ctx.state.drops++;
    this.flush();
    this.close(false);
  }

  private close(graceful: boolean): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    if (graceful) {
      this.flush();
      this.socket.end();
      // A peer that never closes its side must not keep the socket forever.
      setTimeout(() => this.raw.destroy(), 2000).unref();
    } else {
      this.raw.destroy();
    }
  }

  /**
   * Called by one shared timer instead of socket.setTimeout, which re-arms a timer on every read and
   * write and cost ~12% of throughput. A delayed reply (latency fault) is not the client's idleness.
   */
  idleTick(elapsedMs: number): void {
    if (this.phase === 'waiting' || this.phase === 'closed') return;
    this.idleMs += elapsedMs;
    if (this.idleMs < this.ctx.idleTimeoutMs) return;
    this.reply(`421 4.4.2 ${this.ctx.hostname} Error: timeout exceeded`);
    this.close(true);
  }

  private onClose(): void {
    this.ctx.sessions.delete(this);
    this.phase = 'closed';
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.ctx.sockets.delete(this.raw);
    this.ctx.state.connectionsOpen--;
    this.logout();
  }

  private logout(): void {
    if (this.user !== null) this.ctx.state.authConnections.dec(this.user);
    this.user = null;
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.phase === 'closed') return;
    this.idleMs = 0;
    if (this.pending) {
      chunk = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    if (this.phase === 'waiting') {
      this.hold(chunk);
      return;
    }
    this.process(chunk);
    this.flush();
  };

  private hold(rest: Buffer): void {
    this.pending = rest;
    if (rest.length > MAX_BUFFERED) this.socket.pause();
  }

  /** Run every complete command (and message body) in `buf`, in order. */
  private process(buf: Buffer): void {
    let pos = 0;
    while (pos < buf.length) {
      const phase = this.phase;
      if (phase === 'data') {
        pos = this.consumeData(buf, pos);
        continue;
      }
      if (phase === 'bdat') {
        pos = this.consumeChunk(buf, pos);
        continue;
      }
      if (phase !== 'command' && phase !== 'sasl') break;
      const nl = buf.indexOf(10, pos);
      if (nl < 0) break;
      const end = nl > pos && buf[nl - 1] === 13 ? nl - 1 : nl;
      const line = buf.toString('utf8', pos, end);
      pos = nl + 1;
      if (phase === 'sasl') {
        const step = this.saslStep!;
        this.saslStep = null;
        this.phase = 'command';
        step(line);
      } else if (this.command(line) === 'starttls') {
        return; // anything pipelined after STARTTLS is discarded (RFC 3207)
      }
    }
    if (pos >= buf.length || this.phase === 'closed') return;
    const rest = buf.subarray(pos);
    if (this.phase === 'waiting') return this.hold(rest);
    if (rest.length > MAX_LINE) {
      this.reply('500 5.5.2 Line too long');
      this.close(true);
      return;
    }
    this.pending = rest;
  }

  /** Returns 'starttls' when the socket is being upgraded and the rest of the input must be dropped. */
  private command(line: string): 'starttls' | void {
    const sp = line.indexOf(' ');
    const verb = (sp < 0 ? line : line.slice(0, sp)).toUpperCase();
    const arg = sp < 0 ? '' : line.slice(sp + 1).trim();
    switch (verb) {
      case 'EHLO':
        return this.ehlo(arg, true);
      case 'HELO':
        return this.ehlo(arg, false);
      case 'STARTTLS':
        return this.starttls();
      case 'AUTH':
        return this.auth(arg);
      case 'MAIL':
        return this.mail(arg);
      case 'RCPT':
        return this.rcpt(arg);
      case 'DATA':
        return this.data();
      case 'BDAT':
        if (this.ctx.chunking) return this.bdat(arg);
        break;
      case 'RSET':
        this.resetTransaction();
        return this.reply(this.google ? `250 2.1.5 Flushed ${this.qid()} - gsmtp` : '250 2.0.0 Resetting');
      case 'NOOP':
        return this.reply(this.google ? `250 2.0.0 OK ${this.qid()} - gsmtp` : '250 2.0.0 OK');
      case 'QUIT':
        this.reply(
          this.google
            ? `221 2.0.0 closing connection ${this.qid()} - gsmtp`
            : '221 2.0.0 Service closing transmission channel',
        );
        return this.close(true);
    }
    return this.reply(
      this.google
        ? `502 5.5.1 Unrecognized command. ${this.qid()} - gsmtp`
        : '502 5.5.1 Unrecognized command',
    );
  }

  private get google(): boolean {
    return this.ctx.style === 'google';
  }

  private ehlo(arg: string, extended: boolean): void {
    if (!arg) return this.reply(`501 5.5.4 Empty HELO/EHLO argument not allowed`);
    this.greeted = true;
    this.resetTransaction();
    const host = this.ctx.hostname;
    const ip = this.raw.remoteAddress ?? '127.0.0.1';
    const hello = this.google ? `${host} at your service, [${ip}]` : `${host} Hello [${ip}]`;
    if (!extended) return this.reply(`250 ${hello}`);
    const lines = [hello, `SIZE ${MAX_MESSAGE_SIZE}`, '8BITMIME'];
    if (!this.secure) lines.push('STARTTLS');
    if (this.authAllowed()) lines.push(`AUTH ${this.google ? GOOGLE_AUTH_MECHS : MICROSOFT_AUTH_MECHS}`);
    // the order of smtp.gmail.com's list; BINARYMIME (Exchange Online offers it) is not simulated
    lines.push('ENHANCEDSTATUSCODES', 'PIPELINING');
    if (this.ctx.chunking) lines.push('CHUNKING');
    lines.push('SMTPUTF8');
    for (let i = 0; i < lines.length; i++) this.reply(`250${i === lines.length - 1 ? ' ' : '-'}${lines[i]}`);
  }

  private authAllowed(): boolean {
    return this.secure || !this.ctx.requireTls;
  }

  private starttls(): 'starttls' | void {
    if (this.secure) {
      this.reply('503 5.5.1 TLS already active');
      return;
    }
    this.reply('220 2.0.0 Ready to start TLS');
    this.flush();
    this.raw.removeListener('data', this.onData);
    this.pending = null;
    const secured = new tls.TLSSocket(this.raw, { isServer: true, secureContext: this.ctx.secureContext });
    secured.on('error', () => this.raw.destroy());
    secured.on('data', this.onData);
    this.socket = secured;
    this.secure = true;
    // A fresh session (RFC 3207): the client must EHLO again and authenticate over TLS.
    this.greeted = false;
    this.logout();
    this.resetTransaction();
    return 'starttls';
  }

  // ---- AUTH ----------------------------------------------------------------------------------

  private auth(arg: string): void {
    if (!this.greeted) return this.reply('503 5.5.1 EHLO/HELO first.');
    if (this.user !== null) return this.reply('503 5.5.1 Already authenticated.');
    if (!this.authAllowed()) return this.reply('530 5.7.0 Must issue a STARTTLS command first.');
    const sp = arg.indexOf(' ');
    const mech = (sp < 0 ? arg : arg.slice(0, sp)).toUpperCase();
    const initial = sp < 0 ? undefined : arg.slice(sp + 1).trim();
    const challenge = (prompt: string, step: (line: string) => void) => {
      this.reply(`334 ${prompt}`);
      this.phase = 'sasl';
      this.saslStep = (line) => (line === '*' ? this.reply('501 5.7.0 Authentication aborted') : step(line));
    };
    const withInitial = (step: (response: string) => void) =>
      initial === undefined ? challenge('', step) : step(initial === '=' ? '' : initial);

    if (mech === 'XOAUTH2') return withInitial((r) => this.bearer(r, 'xoauth2'));
    if (mech === 'OAUTHBEARER' && this.google) return withInitial((r) => this.bearer(r, 'oauthbearer'));
    // Password mechanisms exist only to fail the way the providers do with basic auth.
    if (mech === 'LOGIN') {
      const askPassword = () => challenge('UGFzc3dvcmQ6', () => this.basicAuthFailure());
      return initial === undefined ? challenge('VXNlcm5hbWU6', askPassword) : askPassword();
    }
    if (mech === 'PLAIN' && this.google) return withInitial(() => this.basicAuthFailure());
    return this.reply('504 5.7.4 Unrecognized authentication type.');
  }

  private basicAuthFailure(): void {
    this.ctx.state.authFailures++;
    this.reply(
      this.google
        ? this.google535()
        : `535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [${this.ctx.hostname}]`,
    );
  }

  private google535(): string {
    return (
      '535-5.7.8 Username and Password not accepted. For more information, go to\r\n' +
      `535 5.7.8  https://support.google.com/mail/?p=BadCredentials ${this.qid()} - gsmtp`
    );
  }

  /** XOAUTH2 (`user=U\x01auth=Bearer T\x01\x01`) and OAUTHBEARER (`n,a=U,\x01...auth=Bearer T\x01\x01`). */
  private bearer(response: string, mech: 'xoauth2' | 'oauthbearer'): void {
    const { state } = this.ctx;
    const decoded = Buffer.from(response, 'base64').toString('utf8');
    const parts = decoded.split('\x01');
    let user: string | undefined;
    let token: string | undefined;
    for (const part of parts) {
      if (mech === 'xoauth2' && part.startsWith('user=')) user = part.slice(5);
      else if (part.startsWith('auth=')) {
        const m = /^auth=Bearer\s+(\S+)$/i.exec(part);
        if (m) token = m[1];
      }
    }
    if (mech === 'oauthbearer') {
      const a = /(?:^|,)a=([^,]*)/.exec(parts[0] ?? '');
      if (a) user = a[1]!.replace(/=2C/gi, ',').replace(/=3D/gi, '=');
    }
    if (!user || !token) {
      state.authFailures++;
      return this.reply(
        this.google
          ? `501 5.5.2 Cannot Decode response ${this.qid()} - gsmtp`
          : '501 5.5.2 Cannot decode response',
      );
    }
    const check = state.checkAccessToken(token, user);
    if (check !== 'ok') {
      state.authFailures++;
      if (!this.google) {
        return this.reply(`535 5.7.3 Authentication unsuccessful [${this.ctx.hostname}]`);
      }
      // Gmail answers a bad token with a JSON challenge and fails only after the client's reply.
      this.reply(`334 ${mech === 'xoauth2' ? GOOGLE_XOAUTH2_ERROR : GOOGLE_OAUTHBEARER_ERROR}`);
      this.phase = 'sasl';
      this.saslStep = () => this.reply(this.google535());
      return;
    }
    const lower = user.toLowerCase();
    if (!state.admitConnection(lower)) {
      return this.reply(
        this.google
          ? `432 4.3.2 Concurrent connections limit exceeded ${this.qid()} - gsmtp`
          : '432 4.3.2 Concurrent connections limit exceeded',
      );
    }
    state.authSuccesses++;
    this.user = lower;
    this.reply(this.google ? '235 2.7.0 Accepted' : '235 2.7.0 Authentication successful');
  }

  // ---- transaction ---------------------------------------------------------------------------

  private resetTransaction(): void {
    this.mailFrom = null;
    this.dropAt = undefined;
    this.rcptCount = 0;
    this.sizeOk = true;
    this.chunked = false;
    this.messageBytes = 0;
  }

  /** why a transaction command is refused before authentication; null = it may go on */
  private authRefusal(): string | null {
    if (!this.greeted) return '503 5.5.1 EHLO/HELO first.';
    if (this.user === null) {
      return this.google
        ? `530 5.7.0 Authentication Required. For more information, go to https://support.google.com/mail/?p=WantAuthError ${this.qid()} - gsmtp`
        : '530 5.7.57 Client not authenticated to send mail. Error: 530 5.7.0 Authentication Required';
    }
    return null;
  }

  private requireAuth(): boolean {
    const refusal = this.authRefusal();
    if (refusal !== null) this.reply(refusal);
    return refusal === null;
  }

  private mail(arg: string): void {
    if (!this.requireAuth()) return;
    if (this.mailFrom !== null) return this.reply('503 5.5.1 Nested MAIL command.');
    const m = /^FROM:\s*<([^>]*)>\s*(.*)$/i.exec(arg);
    if (!m) return this.reply('555 5.5.2 Syntax error.');
    const size = /(?:^|\s)SIZE=(\d+)/i.exec(m[2]!);
    if (size && Number(size[1]) > MAX_MESSAGE_SIZE) {
      return this.reply('552 5.3.4 Message size exceeds fixed maximum message size');
    }
    if (this.ctx.state.take421()) {
      this.reply('421 4.7.0 Try again later, closing connection. (MAIL) - gsmtp');
      return this.close(true);
    }
    const drop = this.ctx.state.dropPointForNewTransaction();
    if (drop === 'mail') return this.dropConnection();
    if (!this.ctx.state.admitMessage(this.user!)) {
      return this.reply(
        this.google
          ? `451 4.7.0 Temporary rate limit exceeded ${this.qid()} - gsmtp`
          : '451 4.7.0 Temporary rate limit exceeded',
      );
    }
    this.mailFrom = m[1]!;
    this.dropAt = drop;
    this.reply(this.google ? `250 2.1.0 OK ${this.qid()} - gsmtp` : '250 2.1.0 Sender OK');
  }

  private rcpt(arg: string): void {
    if (!this.requireAuth()) return;
    if (this.mailFrom === null) return this.reply('503 5.5.1 MAIL first.');
    if (this.chunked) return this.reply('503 5.5.1 RCPT after BDAT.');
    const m = /^TO:\s*<([^>]+)>/i.exec(arg);
    if (!m) return this.reply('555 5.5.2 Syntax error.');
    if (this.dropAt === 'rcpt') return this.dropConnection();
    const addr = m[1]!;
    const at = addr.lastIndexOf('@');
    const local = (at < 0 ? addr : addr.slice(0, at)).toLowerCase();
    const { state } = this.ctx;
    if (local.startsWith('reject')) {
      state.rcptRejected++;
      return this.reply(
        `550 5.1.1 The email account that you tried to reach does not exist. ${this.qid()} - gsmtp`,
      );
    }
    if (local.startsWith('tempfail')) {
      state.rcptTempfailed++;
      return this.reply(
        `450 4.2.1 The user you are trying to contact is receiving mail too quickly. ${this.qid()} - gsmtp`,
      );
    }
    state.rcptAccepted++;
    this.rcptCount++;
    this.reply(this.google ? `250 2.1.5 OK ${this.qid()} - gsmtp` : '250 2.1.5 Recipient OK');
  }

  private data(): void {
    if (!this.requireAuth()) return;
    if (this.mailFrom === null) return this.reply('503 5.5.1 MAIL first.');
    // RFC 3030 section 2: DATA after BDAT in one transaction is a 503; the transaction stands
    if (this.chunked) return this.reply('503 5.5.1 DATA after BDAT.');
    if (this.rcptCount === 0) return this.reply('554 5.5.1 No valid recipients');
    this.reply(
      this.google ? `354 Go ahead ${this.qid()} - gsmtp` : '354 Start mail input; end with <CRLF>.<CRLF>',
    );
    this.phase = 'data';
    this.dataBytes = 0;
    // The CRLF that ended the DATA line counts as the start of the terminator: "DATA\r\n.\r\n" is empty.
    this.tail[0] = 13;
    this.tail[1] = 10;
    this.tailLen = 2;
    this.header = null;
    this.headerEnd = -1;
  }

  /**
   * `BDAT <size> [LAST]` (RFC 3030). The verdict on a chunk is known from the state before its
   * octets, but it is answered after them; a refused chunk is still read to its end (the octets
   * are the client's, not commands) and ends the transaction, so chunks pipelined behind it get
   * 503 too. The message is the accepted chunks' octets as sent: no dot-stuffing to undo.
   */
  private bdat(arg: string): void {
    const m = /^(\d{1,15})(?:[ \t]+(LAST))?[ \t]*$/i.exec(arg);
    if (!m) {
      // without a size the chunk's end is unknown: the rest of the input cannot be read as commands
      this.reply('501 5.5.4 Syntax error in BDAT parameters');
      return this.close(true);
    }
    const size = Number(m[1]);
    let refusal = this.authRefusal();
    if (refusal === null) {
      if (this.mailFrom === null) refusal = '503 5.5.1 MAIL first.';
      else if (this.rcptCount === 0) refusal = '554 5.5.1 No valid recipients';
      else if (this.messageBytes + size > MAX_MESSAGE_SIZE)
        refusal = `552 5.3.4 Your message exceeded the message size limit. ${this.qid()} - gsmtp`;
    }
    if (refusal === null && !this.chunked) {
      this.chunked = true;
      this.messageBytes = 0;
      this.header = null;
      this.headerEnd = -1;
    }
    this.chunkRefusal = refusal;
    this.chunkSize = this.chunkLeft = size;
    this.chunkLast = m[2] !== undefined;
    this.phase = 'bdat';
    if (size === 0) this.endOfChunk();
  }

  private consumeChunk(buf: Buffer, pos: number): number {
    const n = Math.min(this.chunkLeft, buf.length - pos);
    if (this.chunkRefusal === null) {
      this.collectHeader(buf, pos, pos + n);
      this.messageBytes += n;
    }
    this.chunkLeft -= n;
    if (this.chunkLeft === 0) this.endOfChunk();
    return pos + n;
  }

  private endOfChunk(): void {
    this.phase = 'command';
    const refusal = this.chunkRefusal;
    if (refusal !== null) {
      this.chunkRefusal = null;
      if (this.mailFrom !== null) {
        this.header = null;
        this.resetTransaction();
      }
      return this.reply(refusal);
    }
    if (!this.chunkLast) {
      return this.reply(
        this.google
          ? `250 2.0.0 OK ${this.chunkSize} octets received ${this.qid()} - gsmtp`
          : `250 2.0.0 ${this.chunkSize} octets received`,
      );
    }
    this.endOfMessage(this.messageBytes);
  }

  /**
   * Consume message bytes from buf[pos..]; returns the position after the terminator, or buf.length.
   * Work per chunk is one native indexOf plus an 8-byte check for a terminator split across chunks;
   * only the header block is kept (to find Message-ID), the body is counted and dropped.
   */
  private consumeData(buf: Buffer, pos: number): number {
    // termAt: index in buf where CRLF.CRLF starts; negative or < pos when it began in an earlier chunk.
    let termAt = 0;
    let found = false;
    if (this.tailLen > 0) {
      const s = this.scratch;
      const head = Math.min(4, buf.length - pos);
      this.tail.copy(s, 0, 0, this.tailLen);
      buf.copy(s, this.tailLen, pos, pos + head);
      const i = s.subarray(0, this.tailLen + head).indexOf(TERMINATOR);
      if (i >= 0 && i < this.tailLen) {
        termAt = pos - this.tailLen + i;
        found = true;
      }
    }
    if (!found) {
      termAt = buf.indexOf(TERMINATOR, pos);
      found = termAt >= 0;
    }
    if (!found) {
      this.collectHeader(buf, pos, buf.length);
      this.dataBytes += buf.length - pos;
      this.keepTail(buf, pos);
      return buf.length;
    }
    const end = termAt + 5;
    this.collectHeader(buf, pos, Math.max(pos, termAt + 2));
    this.dataBytes += end - pos;
    this.endOfData();
    return end;
  }

  /** Remember the last (up to) 4 bytes seen, for a terminator that straddles two chunks. */
  private keepTail(buf: Buffer, pos: number): void {
    const n = buf.length - pos;
    if (n >= 4) {
      buf.copy(this.tail, 0, buf.length - 4);
      this.tailLen = 4;
      return;
    }
    const keep = Math.min(this.tailLen, 4 - n);
    this.tail.copy(this.tail, 0, this.tailLen - keep, this.tailLen);
    buf.copy(this.tail, keep, pos);
    this.tailLen = keep + n;
  }

  private collectHeader(buf: Buffer, from: number, to: number): void {
    if (this.headerEnd >= 0 || to <= from) return;
    const prev = this.header;
    const prevLen = prev ? prev.length : 0;
    const take = buf.subarray(from, Math.min(to, from + HEADER_CAP - prevLen));
    // The first piece is a view of the socket's chunk; only headers split across chunks are copied.
    const h = prev ? Buffer.concat([prev, take]) : take;
    this.header = h;
    if (h.length >= 2 && h[0] === 13 && h[1] === 10) {
      this.headerEnd = 0; // no headers at all
      return;
    }
    const i = h.indexOf(BLANK_LINE, Math.max(0, prevLen - 3));
    if (i >= 0) this.headerEnd = i + 2;
    else if (h.length >= HEADER_CAP) this.headerEnd = h.length;
  }

  /**
   * Message-ID from the header block. Dot-stuffing cannot affect it: a stuffed line starts with ".",
   * which neither a header name nor a folded continuation (whitespace) does.
   */
  private messageId(): string | undefined {
    const h = this.header;
    if (!h) return undefined;
    const text = h.toString('utf8', 0, this.headerEnd >= 0 ? this.headerEnd : h.length);
    const m = MESSAGE_ID.exec(text);
    if (!m) return undefined;
    const id = m[1]!.replace(/\r\n[ \t]+/g, ' ').trim();
    return id === '' ? undefined : id;
  }

  private endOfData(): void {
    this.phase = 'command';
    this.endOfMessage(this.dataBytes - 3); // without the final ".\r\n"
  }

  /** The end of DATA or of BDAT LAST: the faults decide the reply; `size` as counted. */
  private endOfMessage(size: number): void {
    const { state } = this.ctx;
    const faults = state.faults;
    const id = this.messageId();
    const user = this.user!;
    const dropHere = this.dropAt === 'data';
    this.header = null;
    this.resetTransaction();
    let outcome: Outcome = 'store';
    if (size > MAX_MESSAGE_SIZE) outcome = 'too-big';
    else if (dropHere) outcome = 'drop';
    else if (faults.dropRate > 0 && Math.random() < faults.dropRate) outcome = 'drop';
    else if (faults.fail4xxRate > 0 && Math.random() < faults.fail4xxRate) outcome = 'fail4xx';
    else if (faults.fail5xxRate > 0 && Math.random() < faults.fail5xxRate) outcome = 'fail5xx';
    if (faults.latencyMs <= 0) {
      this.finishData(outcome, user, id, size);
      return;
    }
    this.phase = 'waiting';
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.phase !== 'waiting') return;
      this.phase = 'command';
      this.finishData(outcome, user, id, size);
      const rest = this.pending;
      this.pending = null;
      if (rest && this.phase === 'command') {
        this.socket.resume();
        this.process(rest);
      }
      this.flush();
    }, faults.latencyMs);
  }

  private finishData(outcome: Outcome, user: string, id: string | undefined, size: number): void {
    const { state } = this.ctx;
    switch (outcome) {
      case 'drop':
        state.drops++;
        return this.close(false);
      case 'fail4xx':
        state.fail4xx++;
        return this.reply(`451 4.3.0 Mail server temporarily rejected message. ${this.qid()} - gsmtp`);
      case 'fail5xx':
        state.fail5xx++;
        return this.reply(
          `550 5.7.1 This message was rejected by policy (simulated fault). ${this.qid()} - gsmtp`,
        );
      case 'too-big':
        return this.reply(`552 5.3.4 Your message exceeded the message size limit. ${this.qid()} - gsmtp`);
      case 'store': {
        // A message counts as delivered exactly when its 250 is written.
        state.storeMessage(user, id, size);
        const qid = this.qid();
        return this.reply(
          this.google
            ? `250 2.0.0 OK ${qid} - gsmtp`
            : `250 2.0.0 OK ${id ?? `<${qid}@${this.ctx.hostname}>`} [Hostname=${this.ctx.hostname}]`,
        );
      }
    }
  }
}
