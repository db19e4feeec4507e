// One client connection: the SMTP protocol of RFC 5321 as a submission server speaks it (EHLO,
// STARTTLS, AUTH PLAIN/LOGIN, MAIL/RCPT/DATA with PIPELINING), read straight from the socket's
// buffers. It replaced smtp-server, whose parser, streams and per-reply writes were the largest
// JavaScript share of a message's CPU (docs/performance.md, "A client side of our own"). Its
// replies are smtp-server's, so clients see what they saw before.
//
// Replies are collected while a chunk of input is processed and leave in one write at its end: a
// pipelined MAIL/RCPT/DATA group gets its three replies in one segment (RFC 2920). The product's
// decisions (who may log in, which sender, what the relay answered) are the handler's
// (listener.ts); this file knows only the protocol.
import tls from 'node:tls';
import type net from 'node:net';
import type { SmtpReply } from '../shared/smtp-reply.js';
import { smtpReply } from '../shared/replies.js';
import { readSocket, type SocketInput } from '../shared/socket-input.js';
import { DataReader } from './wire/data-reader.js';
import { acceptableHeloName, parseAddressCommand, valuelessParam, type Params } from './wire/commands.js';

/** What the session asks of the product. */
export interface SessionHandler {
  /** AUTH: the mailbox (its address) or the reply refusing it */
  authenticate(
    s: SmtpSession,
    username: string,
    password: string,
    mechanism: string,
  ): Promise<string | SmtpReply>;
  /** MAIL FROM accepted by the protocol: undefined accepts it, a reply refuses it */
  mailFrom(s: SmtpSession, address: string, params: Params): SmtpReply | undefined;
  /** DATA starts (354 is on its way): where the message goes */
  data(s: SmtpSession): MessageSink;
  /** the connection is gone */
  closed(s: SmtpSession): void;
}

export interface MessageSink {
  /** content of the message, unstuffed, as it arrives (subarrays of the socket's buffers) */
  add(chunk: Buffer): void;
  /** the terminator arrived: the reply for the message (`tooBig`: past smtp.maxMessageSize) */
  end(bytes: number, tooBig: boolean): SmtpReply | Promise<SmtpReply>;
  /** the client went away, or was cut off, before the terminator */
  abort(): void;
}

export interface SessionSettings {
  hostname: string;
  banner: string;
  maxMessageSize: number;
  maxRecipients: number;
  /** STARTTLS is offered (a certificate is configured and the connection is not TLS yet) */
  starttls?: tls.SecureContext;
  /** AUTH only after STARTTLS (smtp.requireTls on this listener) */
  requireTls: boolean;
}

export interface DeadlineSettings {
  idleTimeoutMs: number;
  /** bytes per second a message must average on top of idleTimeout; 0 = no DATA deadline */
  minDataRate: number;
}

/**
 * command: reading a command line; data: receiving a message; waiting: for our reply (an AUTH
 * check, the relay's answer); tls: a STARTTLS handshake; closed.
 */
export type Phase = 'command' | 'data' | 'waiting' | 'tls' | 'closed';

export interface Envelope {
  from: string;
  params: Params;
  to: string[];
}

/** RFC 5321 4.5.3.1.4 says 512; AUTH PLAIN's initial response and long parameters need more. */
const MAX_COMMAND_LINE = 16 * 1024;
/** commands handled in one go before yielding to other connections */
const MAX_SYNC_COMMANDS = 100;
/** input held while a reply is pending (pipelined commands): past it the socket is paused */
const MAX_HELD_INPUT = 64 * 1024;
const MAX_UNRECOGNIZED = 10;
/** replies collected past this many characters are written before more input is handled */
const FLUSH_AT = 16 * 1024;
const HTTP_REQUEST = /^(OPTIONS|GET|HEAD|POST|PUT|DELETE|TRACE|CONNECT) \/.* HTTP\/\d\.\d$/i;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\x00-\x1F\x7F-\x9F]/g;
// eslint-disable-next-line no-control-regex
const HAS_CONTROL_CHARS = /[\x00-\x1F\x7F-\x9F]/;
const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3}$/;

export class SmtpSession {
  secure: boolean;
  /** the EHLO/HELO name, once given */
  helo?: string;
  /** the mailbox the client logged in as */
  user?: string;
  envelope?: Envelope;
  phase: Phase = 'command';
  /** when the current request started: the last reply, DATA's 354, a STARTTLS */
  requestAt = Date.now();

  private socket: net.Socket;
  private input!: SocketInput;
  private out = '';
  /** an incomplete command line */
  private partial: Buffer | undefined;
  /** input that arrived while phase was 'waiting' (pipelined after an AUTH or a message) */
  private held: Buffer[] = [];
  private heldBytes = 0;
  private paused = false;
  /** our replies are not being read: no more input is handled until they drain */
  private writeBlocked = false;
  private reader: DataReader | undefined;
  private sink: MessageSink | undefined;
  private auth: ((line: string) => void) | undefined;
  private unrecognized = 0;
  private closeAfterReply = false;
  private timedOut = false;

  constructor(
    socket: net.Socket,
    readonly remoteAddress: string,
    readonly remotePort: number,
    secure: boolean,
    private readonly settings: SessionSettings,
    private readonly handler: SessionHandler,
    /** the server is draining: new commands get this reply (a 421) */
    private readonly draining: () => SmtpReply | undefined,
  ) {
    this.socket = socket;
    this.secure = secure;
    this.attach(socket);
  }

  /** The 220 greeting, or a refusal (a 421 or 554) that closes the connection. */
  greet(refusal?: SmtpReply): void {
    if (refusal) return this.closeWith(refusal);
    this.line(220, '', `${this.settings.hostname} ESMTP ${this.settings.banner}`);
    this.flush();
  }

  /** bytes of the message being received (0 outside DATA) */
  get dataBytes(): number {
    return this.phase === 'data' && this.reader ? this.reader.bytes : 0;
  }

  /**
   * Drain: an idle connection gets `reply` (a 421) now; one receiving or relaying a message gets
   * it after that message's reply.
   */
  shutdown(reply: SmtpReply): void {
    if (this.phase === 'closed') return;
    // mid-handshake nothing can be written: plaintext would only corrupt it
    if (this.phase === 'tls') return void this.socket.destroy();
    if (this.phase === 'command') return this.closeWith(reply);
    this.closeAfterReply = true;
  }

  /** Past its deadline at `now`: told why (a 421) and closed. */
  checkDeadline(now: number, s: DeadlineSettings, command: SmtpReply, data: SmtpReply): void {
    if (this.timedOut) return;
    let late = false;
    if (this.phase === 'command' || this.phase === 'tls') late = now - this.requestAt > s.idleTimeoutMs;
    else if (this.phase === 'data' && s.minDataRate > 0)
      late = now - this.requestAt > s.idleTimeoutMs + (this.dataBytes * 1000) / s.minDataRate;
    if (!late) return;
    this.timedOut = true;
    if (this.phase === 'tls') return void this.socket.destroy(); // nothing can be written mid-handshake
    this.closeWith(this.phase === 'data' ? data : command);
  }

  /** Close at once (shutdown timeout). */
  destroy(): void {
    this.socket.destroy();
  }

  // ---- input

  private attach(socket: net.Socket): void {
    this.input = readSocket(socket, this.onData);
    socket.on('error', noop); // a reset peer: 'close' follows
    socket.once('close', this.onClose);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.phase === 'waiting' || this.heldBytes > 0) return this.hold(chunk);
    this.process(chunk);
    this.flush();
  };

  private readonly onClose = (): void => {
    if (this.phase === 'closed') return;
    const sink = this.phase === 'data' ? this.sink : undefined;
    this.phase = 'closed';
    this.sink = undefined;
    this.reader = undefined;
    sink?.abort();
    this.handler.closed(this);
  };

  private hold(chunk: Buffer): void {
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    this.updateFlow();
  }

  /** The rest of a chunk being processed: older than anything held, so it goes first. */
  private holdFirst(rest: Buffer): void {
    this.held.unshift(rest);
    this.heldBytes += rest.length;
    this.updateFlow();
  }

  /** Carry on with held input after a pending reply went out. */
  private resume(): void {
    while (
      this.held.length &&
      !this.writeBlocked &&
      this.phase !== 'waiting' &&
      this.phase !== 'closed' &&
      this.phase !== 'tls'
    ) {
      const chunk = this.held.shift()!;
      this.heldBytes -= chunk.length;
      this.process(chunk);
    }
    if (this.phase === 'closed' || this.phase === 'tls') {
      this.held = [];
      this.heldBytes = 0;
    }
    this.flush();
    this.updateFlow();
  }

  /**
   * Read from the socket only while it is worth it: not while more than MAX_HELD_INPUT waits for a
   * pending reply, nor while our replies are not being read (a client pipelining EHLOs without
   * reading would otherwise make us hold ~20 bytes of reply per byte it sends).
   */
  private updateFlow(): void {
    const stop = this.phase !== 'closed' && (this.writeBlocked || this.heldBytes > MAX_HELD_INPUT);
    if (stop === this.paused) return;
    this.paused = stop;
    if (stop) this.socket.pause();
    else this.socket.resume();
  }

  private readonly onDrain = (): void => {
    this.writeBlocked = false;
    if (this.phase === 'closed') return;
    if (this.phase === 'command') this.resume();
    else this.updateFlow();
  };

  private process(input: Buffer): void {
    let buf = input;
    let handled = 0;
    while (buf.length > 0) {
      if (this.phase === 'data') {
        const rest = this.reader!.feed(buf);
        if (rest === undefined) return;
        this.endOfMessage();
        buf = rest;
        continue;
      }
      // a long pipelined run: hand its replies over as they pile up, so backpressure is seen
      if (this.out.length >= FLUSH_AT) this.flush();
      if (this.phase !== 'command' || this.writeBlocked) {
        if (this.phase === 'waiting' || this.writeBlocked) this.holdFirst(buf);
        return; // tls: what was pipelined after STARTTLS is dropped (RFC 3207 5; CVE-2011-0411)
      }
      if (++handled > MAX_SYNC_COMMANDS) {
        // a chunk full of pipelined commands: let other connections in, go on in the next turn
        this.holdFirst(buf);
        this.phase = 'waiting';
        setImmediate(() => {
          if (this.phase !== 'waiting') return;
          this.phase = 'command';
          this.resume();
        });
        return;
      }
      const lf = buf.indexOf(0x0a);
      if (lf < 0) {
        const p = this.partial ? Buffer.concat([this.partial, buf]) : Buffer.from(buf);
        this.partial = p;
        // a trailing CR may be the first half of the line break, which does not count
        if (p.length - (p[p.length - 1] === 0x0d ? 1 : 0) > MAX_COMMAND_LINE) this.lineTooLong();
        return;
      }
      let line = buf.subarray(0, lf);
      buf = buf.subarray(lf + 1);
      if (this.partial) {
        line = Buffer.concat([this.partial, line]);
        this.partial = undefined;
      }
      const end = line.length > 0 && line[line.length - 1] === 0x0d ? line.length - 1 : line.length;
      if (end > MAX_COMMAND_LINE) return this.lineTooLong(); // the line break does not count
      this.requestAt = Date.now();
      this.command(line.toString('utf8', 0, end));
    }
  }

  private lineTooLong(): void {
    this.partial = undefined;
    // smtp-server's reply, which clients saw before
    this.closeWith({ code: 421, enhanced: '4.4.2', text: 'Error: Command line too long' });
  }

  // ---- commands

  private command(line: string): void {
    // as smtp-server: a drain and an HTTP request line are refused even as an AUTH continuation
    const shutting = this.draining();
    if (shutting) return this.closeWith(shutting);
    if (HTTP_REQUEST.test(line))
      return this.closeWith({ code: 421, enhanced: '4.4.2', text: 'HTTP requests not allowed' });
    if (this.auth) {
      const step = this.auth;
      this.auth = undefined;
      return step(line);
    }
    const sp = line.indexOf(' ');
    const verb = (sp < 0 ? line : line.slice(0, sp)).toUpperCase();
    switch (verb) {
      case 'EHLO':
        return this.ehlo(line, true);
      case 'HELO':
        return this.ehlo(line, false);
      case 'MAIL':
        return this.mail(line);
      case 'RCPT':
        return this.rcpt(line);
      case 'DATA':
        return this.dataCommand();
      case 'RSET':
        this.envelope = undefined;
        return this.line(250, '2.0.0', 'Flushed');
      case 'NOOP':
        return this.line(250, '2.0.0', 'OK');
      case 'QUIT':
        return this.closeWith({ code: 221, enhanced: '2.0.0', text: 'Bye' });
      case 'HELP':
        return this.line(214, '2.0.0', 'See https://tools.ietf.org/html/rfc5321 for details');
      case 'VRFY':
        if (sp < 0 || !line.slice(sp + 1).trim())
          return this.line(501, '5.5.4', 'Error: Syntax: VRFY address');
        return this.line(252, '2.1.5', 'Try to send something. No promises though');
      case 'STARTTLS':
        return this.startTls(line);
      case 'AUTH':
        return this.authCommand(line);
      default:
        if (++this.unrecognized >= MAX_UNRECOGNIZED)
          return this.closeWith({
            code: 421,
            enhanced: '4.4.2',
            text: 'Error: too many unrecognized commands',
          });
        return this.line(500, '5.5.2', 'Error: command not recognized');
    }
  }

  private ehlo(line: string, extended: boolean): void {
    const parts = line.trim().split(/\s+/);
    const name = parts[1] ?? '';
    if (parts.length !== 2)
      return this.line(501, '', extended ? 'Error: syntax: EHLO hostname' : 'Error: Syntax: HELO hostname');
    if (!acceptableHeloName(name)) return this.line(501, '', 'Error: Bad hostname syntax');
    this.helo = name.toLowerCase();
    this.envelope = undefined; // EHLO is RSET too
    const first = `${this.settings.hostname} Nice to meet you, [${this.remoteAddress}]`;
    if (!extended) return this.line(250, '', first);
    const lines = [first, 'PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES'];
    // RFC 3207 4.2 / RFC 4954 4: offer AUTH only where it would be accepted
    if (!this.user && !this.authNeedsTls()) lines.push('AUTH PLAIN LOGIN');
    if (this.starttlsOffered()) lines.push('STARTTLS');
    if (this.settings.maxMessageSize) lines.push(`SIZE ${this.settings.maxMessageSize}`);
    let text = '';
    for (let i = 0; i < lines.length; i++)
      text += `250${i < lines.length - 1 ? '-' : ' '}${clean(lines[i]!)}\r\n`;
    this.out += text;
  }

  private mail(line: string): void {
    if (!this.helo) return this.line(503, '5.5.1', 'Error: send HELO/EHLO first');
    const parsed = parseAddressCommand(line, false);
    if ('error' in parsed) {
      if (parsed.error === 'duplicate')
        return this.line(501, '5.5.4', `Error: duplicate ${parsed.param} parameter`);
      return this.line(501, '5.1.7', 'Error: Bad sender address syntax');
    }
    const valueless = valuelessParam(parsed.params);
    if (valueless) return this.line(501, '5.5.4', `Error: ${valueless} parameter requires a value`);
    if (this.envelope) return this.line(503, '5.5.1', 'Error: nested MAIL command');
    const bad = this.badMailParam(parsed.params);
    if (bad) return this.reply(bad);
    const refused = this.handler.mailFrom(this, parsed.address, parsed.params);
    if (refused) return this.reply(refused);
    this.envelope = { from: parsed.address, params: parsed.params, to: [] };
    this.line(250, '2.1.0', 'Accepted');
  }

  private badMailParam(p: Params): SmtpReply | undefined {
    const max = this.settings.maxMessageSize;
    if (p.SIZE !== undefined) {
      if (typeof p.SIZE !== 'string' || !/^\d{1,20}$/.test(p.SIZE))
        return { code: 501, enhanced: '5.5.4', text: 'Error: Bad message size syntax' };
      if (max && Number(p.SIZE) > max)
        return {
          code: 552,
          enhanced: '5.3.4',
          text: `Error: message exceeds fixed maximum message size ${max}`,
        };
    }
    if (p.BODY !== undefined) {
      const body = String(p.BODY).toLowerCase();
      if (body !== '7bit' && body !== '8bitmime')
        return {
          code: 501,
          enhanced: '5.5.4',
          text: 'Invalid BODY parameter value. Must be 7BIT or 8BITMIME',
        };
    }
    if (p.SMTPUTF8 !== undefined && p.SMTPUTF8 !== true)
      return {
        code: 501,
        enhanced: '5.5.4',
        text: 'Invalid SMTPUTF8 parameter. This flag does not accept a value',
      };
    // not offered: the upstream leg cannot promise it (RFC 8689 4.1)
    if (p.REQUIRETLS !== undefined)
      return { code: 555, enhanced: '5.5.4', text: 'REQUIRETLS is not supported' };
    return undefined;
  }

  private rcpt(line: string): void {
    if (!this.helo) return this.line(503, '5.5.1', 'Error: send HELO/EHLO first');
    const parsed = parseAddressCommand(line, true);
    if ('error' in parsed) {
      if (parsed.error === 'duplicate')
        return this.line(501, '5.5.4', `Error: duplicate ${parsed.param} parameter`);
      return this.line(501, '5.1.3', 'Error: Bad recipient address syntax');
    }
    if (!parsed.address) return this.line(501, '5.1.3', 'Error: Bad recipient address syntax');
    const valueless = valuelessParam(parsed.params, true);
    if (valueless) return this.line(501, '5.5.4', `Error: ${valueless} parameter requires a value`);
    const env = this.envelope;
    if (!env) return this.line(503, '5.5.1', 'Error: need MAIL command');
    // a repeated recipient (compared case-insensitively) is accepted once
    const key = parsed.address.toLowerCase();
    let seen = false;
    for (const r of env.to) if (r.toLowerCase() === key) seen = true;
    if (!seen) {
      const max = this.settings.maxRecipients;
      if (max && env.to.length >= max) return this.reply(smtpReply('TOO_MANY_RECIPIENTS'));
      env.to.push(parsed.address);
    }
    this.line(250, '2.1.5', 'Accepted');
  }

  private dataCommand(): void {
    if (!this.helo) return this.line(503, '5.5.1', 'Error: send HELO/EHLO first');
    if (!this.envelope || this.envelope.to.length === 0)
      return this.line(503, '5.5.1', 'Error: need RCPT command');
    const sink = this.handler.data(this);
    const max = this.settings.maxMessageSize;
    this.sink = sink;
    this.reader = new DataReader((chunk) => {
      if (!max || this.reader!.bytes <= max) sink.add(chunk);
    });
    this.phase = 'data';
    this.line(354, '', 'End data with <CR><LF>.<CR><LF>');
    this.requestAt = Date.now();
  }

  private endOfMessage(): void {
    const sink = this.sink!;
    const bytes = this.reader!.bytes;
    const max = this.settings.maxMessageSize;
    this.sink = undefined;
    this.reader = undefined;
    this.phase = 'waiting';
    let r: SmtpReply | Promise<SmtpReply>;
    try {
      r = sink.end(bytes, max > 0 && bytes > max);
    } catch {
      r = { code: 451, enhanced: '4.3.0', text: 'Error: internal server error' };
    }
    if (r instanceof Promise) r.then(this.messageReplied, () => this.messageReplied(internalError()));
    // a reply at once: the caller's loop goes on with the rest of its chunk, which is older than
    // anything held (resuming here would answer the held input first)
    else this.answer(r);
  }

  private readonly messageReplied = (r: SmtpReply): void => {
    if (this.answer(r)) this.resume();
  };

  /** The message's reply is in: false if the connection is gone or now closing. */
  private answer(r: SmtpReply): boolean {
    if (this.phase === 'closed') return false;
    this.envelope = undefined;
    this.unrecognized = 0;
    this.phase = 'command';
    this.reply(r);
    if (this.drainNow()) return false;
    this.requestAt = Date.now();
    return true;
  }

  /** A drain began while a reply was pending; that reply is out: say goodbye now. */
  private drainNow(): boolean {
    if (!this.closeAfterReply || this.phase === 'closed') return false;
    const shutting = this.draining();
    if (shutting) this.closeWith(shutting);
    return shutting !== undefined;
  }

  // ---- STARTTLS

  private starttlsOffered(): boolean {
    return this.settings.starttls !== undefined && !this.secure;
  }

  /** AUTH is refused on this connection until STARTTLS */
  private authNeedsTls(): boolean {
    return this.settings.requireTls && this.starttlsOffered();
  }

  private startTls(line: string): void {
    if (line.trim().split(/\s+/).length > 1) return this.line(501, '5.5.4', 'Error: syntax: STARTTLS');
    if (this.secure) return this.line(503, '5.5.1', 'Error: TLS already active');
    const context = this.settings.starttls;
    if (!context) return this.line(502, '5.5.1', 'Error: STARTTLS not available');
    this.line(220, '2.0.0', 'Ready to start TLS');
    this.flush();
    if (this.writeBlocked) {
      // the raw socket is TLS's from now on: its drain is none of ours
      this.socket.removeListener('drain', this.onDrain);
      this.writeBlocked = false;
    }
    this.phase = 'tls';
    this.requestAt = Date.now();
    this.partial = undefined;
    const raw = this.socket;
    this.input.stop();
    raw.removeListener('close', this.onClose);
    const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: context });
    secure.on('error', noop);
    secure.once('close', this.onClose);
    secure.once('secure', () => {
      if (this.phase !== 'tls') return;
      // a new session (RFC 3207 4.2): nothing learnt before the handshake counts
      this.socket = secure;
      this.secure = true;
      this.helo = undefined;
      this.user = undefined;
      this.envelope = undefined;
      this.phase = 'command';
      this.requestAt = Date.now();
      this.input = readSocket(secure, this.onData);
    });
  }

  // ---- AUTH

  private authCommand(line: string): void {
    const args = line.trim().split(/\s+/);
    const mechanism = (args[1] ?? '').toUpperCase();
    if (!this.helo) return this.line(503, '5.5.1', 'Error: send HELO/EHLO first');
    if (this.authNeedsTls()) return this.line(538, '5.7.0', 'Error: Must issue a STARTTLS command first');
    if (this.user) return this.line(503, '5.5.1', 'Error: No identity changes permitted');
    if (mechanism === 'PLAIN') {
      if (args.length > 3) return this.line(501, '5.5.4', 'Error: syntax: AUTH PLAIN token');
      if (args.length === 3) return this.plain(args[2]!, false);
      this.line(334, '', '');
      this.auth = (l) => this.plain(l.trim(), true);
      return;
    }
    if (mechanism === 'LOGIN') {
      if (args.length > 3) return this.line(501, '5.5.4', 'Error: syntax: AUTH LOGIN');
      if (args.length === 3) return this.loginUser(args[2]!, false);
      this.line(334, '', 'VXNlcm5hbWU6');
      this.auth = (l) => this.loginUser(l.trim(), true);
      return;
    }
    this.line(504, '5.5.4', 'Error: Unrecognized authentication type');
  }

  // As smtp-server's sasl.js: "*" aborts only as a continuation (an initial response of "*" is a
  // bad token); a PLAIN authcid left empty falls back to the authzid (clients that put the
  // username there); control characters in a username are refused before any check.

  private plain(token: string, canAbort: boolean): void {
    if (canAbort && token === '*') return this.line(501, '5.5.4', 'Authentication aborted');
    const parts = Buffer.from(token, 'base64').toString('utf8').split('\u0000');
    if (parts.length !== 3) return this.line(501, '5.5.4', 'Error: invalid userdata');
    const authzid = parts[0]!;
    const username = parts[1] || authzid;
    if (HAS_CONTROL_CHARS.test(username) || HAS_CONTROL_CHARS.test(authzid))
      return this.line(501, '5.5.4', 'Error: invalid userdata');
    this.check(username, parts[2]!, 'PLAIN');
  }

  private loginUser(token: string, canAbort: boolean): void {
    if (canAbort && token === '*') return this.line(501, '5.5.4', 'Authentication aborted');
    const username = Buffer.from(token, 'base64').toString('utf8');
    if (!username) return this.line(501, '5.5.4', 'Error: missing username');
    if (HAS_CONTROL_CHARS.test(username)) return this.line(501, '5.5.4', 'Error: invalid userdata');
    this.line(334, '', 'UGFzc3dvcmQ6');
    this.auth = (l) => {
      const t = l.trim();
      if (t === '*') return this.line(501, '5.5.4', 'Authentication aborted');
      this.check(username, Buffer.from(t, 'base64').toString('utf8'), 'LOGIN');
    };
  }

  private check(username: string, password: string, mechanism: string): void {
    this.phase = 'waiting';
    const done = (r: string | SmtpReply) => {
      if (this.phase === 'closed') return;
      this.phase = 'command';
      if (typeof r === 'string') {
        this.user = r;
        this.line(235, '2.7.0', 'Authentication successful');
      } else {
        this.reply(r);
      }
      if (this.drainNow()) return;
      this.requestAt = Date.now();
      this.resume();
    };
    this.handler.authenticate(this, username, password, mechanism).then(done, () => done(internalError()));
  }

  // ---- output

  /** A reply of ours or the relay's; a 421 also closes the connection. */
  private reply(r: SmtpReply): void {
    if (r.code === 421) return this.closeWith(r);
    this.line(r.code, ENHANCED.test(r.enhanced) ? r.enhanced : '', r.text);
  }

  private line(code: number, enhanced: string, text: string): void {
    if (code === 334) {
      this.out += `334 ${text}\r\n`; // RFC 4954 4: a space even before an empty challenge
      return;
    }
    this.out += `${code}${enhanced ? ' ' + enhanced : ''}${text ? ' ' + clean(text) : ''}\r\n`;
  }

  private flush(): void {
    if (!this.out) return;
    const s = this.out;
    this.out = '';
    if (this.phase === 'closed' || this.socket.destroyed || !this.socket.writable) return;
    if (!this.socket.write(s) && !this.writeBlocked && this.phase !== 'tls') {
      this.writeBlocked = true;
      this.socket.once('drain', this.onDrain);
      this.updateFlow();
    }
  }

  /** reply bytes written but not yet taken by the kernel (the client is not reading) */
  get bufferedReplyBytes(): number {
    return this.socket.writableLength;
  }

  /** Say `r` and close (221, 421, a refusal); whatever was pipelined after is not read. */
  private closeWith(r: SmtpReply): void {
    const enhanced = ENHANCED.test(r.enhanced) ? r.enhanced : '';
    this.out += `${r.code}${enhanced ? ' ' + enhanced : ''} ${clean(r.text)}\r\n`;
    const s = this.out;
    this.out = '';
    const wasData = this.phase === 'data';
    const sink = this.sink;
    this.sink = undefined;
    this.reader = undefined;
    this.held = [];
    this.heldBytes = 0;
    this.partial = undefined;
    if (this.phase !== 'closed') {
      this.phase = 'closed';
      if (wasData) sink?.abort();
      this.handler.closed(this);
    }
    this.input.stop();
    if (!this.socket.destroyed && this.socket.writable) this.socket.end(s);
    else this.socket.destroy();
    // a peer that never reads its 421 must not hold the socket open
    const socket = this.socket;
    setTimeout(() => socket.destroy(), 2000).unref();
  }
}

function clean(text: string): string {
  // a reply line must never carry a control character (the text may hold upstream or client bytes)
  return HAS_CONTROL_CHARS.test(text) ? text.replace(CONTROL_CHARS, ' ') : text;
}

function internalError(): SmtpReply {
  return { code: 451, enhanced: '4.3.0', text: 'Error: internal server error' };
}

function noop(): void {}
