// One upstream SMTP connection: connect (+TLS), EHLO, STARTTLS, AUTH XOAUTH2, then pipelined
// transactions. Replies are matched to requests FIFO; a request is "N replies expected" so a
// pipelined MAIL+RCPT*+DATA costs one write and one promise. Socket close/error kill the connection
// at once (no health-check round trips, docs/design.md, principle 2); the pool learns of it through
// onClose. Where the connection stands is one field, `state`, which only the pool changes.
import type { Lease } from '../coordination/types.js';
import net from 'node:net';
import tls from 'node:tls';
import type { UpstreamSmtpConfig } from '../config/types.js';
import { formatReply, type SmtpReply } from '../shared/smtp-reply.js';
import { ReplyParser } from './reply-parser.js';
import { writeDotStuffed } from './dot-stuff.js';
import { chunkOf, writeChunk } from './bdat.js';
import { withoutPeerCertificate } from './tls-session.js';
import { connectInput, readSocket, type SocketInput } from '../shared/socket-input.js';
import type { DeliveryResult, Envelope } from './types.js';

export interface ConnectionOptions {
  smtp: UpstreamSmtpConfig;
  ehloName: string;
  localAddress?: string;
  commandTimeoutMs: number;
  /** TLS state shared with other connections to the same upstream (sharedTlsReuse) */
  tls?: TlsReuse;
}

// Secure contexts by the CA they trust. Each is an OpenSSL SSL_CTX with its own certificate store:
// ~24 KB and ~0.26 ms to build, so one per mailbox was 24 MB at 1,000 mailboxes (docs/performance.md,
// "One secure context for all pools"). A client context holds nothing of a mailbox's (no client
// certificate; OpenSSL keeps no client-side session cache), so every pool with the same CA shares
// one. Bounded: a CA changed by reloads only ever adds a few, and pools keep the one they took.
const CONTEXTS = new Map<string, tls.SecureContext>();
const MAX_CONTEXTS = 16;

/** `map`'s value for `key`, made on first use; past `max` entries the oldest is forgotten. */
function cached<T>(map: Map<string, T>, max: number, key: string, make: () => T): T {
  let v = map.get(key);
  if (v === undefined) {
    v = make();
    if (map.size >= max) map.delete(map.keys().next().value!);
    map.set(key, v);
  }
  return v;
}

/** The shared client context that trusts `ca` (PEM; undefined: Node's root certificates). */
export function clientContext(ca: string | undefined): tls.SecureContext {
  // Gmail and Exchange Online speak TLS 1.2+; anything older is a downgrade
  return cached(CONTEXTS, MAX_CONTEXTS, ca ?? '', () =>
    tls.createSecureContext({ ca, minVersion: 'TLSv1.2' }),
  );
}

/**
 * What the TLS connections to one upstream share: the secure context (clientContext: the CA parsed
 * once for every pool that trusts it, not at every connect) and the last session ticket, so the
 * next handshake can resume instead of verifying the certificate chain again (the setup cost of a
 * connection: docs/performance.md).
 */
export class TlsReuse {
  private ctx: tls.SecureContext | undefined;
  /** the last session ticket, kept without the server's certificate (./tls-session.ts) */
  session: Buffer | undefined;
  constructor(private readonly smtp: UpstreamSmtpConfig) {}
  keep(session: Buffer): void {
    this.session = withoutPeerCertificate(session);
  }
  get context(): tls.SecureContext {
    return (this.ctx ??= clientContext(this.smtp.ca));
  }
}

// Session tickets by everything that decides how a handshake is verified and where it goes. A
// ticket resumes only the TLS channel: each mailbox still authenticates with its own token inside
// it, so the pools of every mailbox on one upstream share the last ticket, and the first connection
// of each pool resumes too instead of a full handshake, which leaves ~10 KB more with the
// connection for its life: 6-13 MiB less at 1,000 mailboxes (docs/performance.md, "One session
// ticket per upstream"). Apart: a pool that does not verify (a ticket it got resumes
// without verification), another CA, another source address (a shared ticket would tell the
// provider that two of the operator's addresses are one client). Bounded like CONTEXTS; a pool
// keeps the one it took.
const SESSIONS = new Map<string, TlsReuse>();
const MAX_SESSIONS = 64;

/** The TLS state shared by every pool that reaches `smtp` the same way from `localAddress`. */
export function sharedTlsReuse(smtp: UpstreamSmtpConfig, localAddress: string | undefined): TlsReuse {
  const key = [
    smtp.security,
    smtp.host,
    smtp.port,
    smtp.rejectUnauthorized,
    localAddress ?? '',
    smtp.ca ?? '',
  ].join('\0');
  return cached(SESSIONS, MAX_SESSIONS, key, () => new TlsReuse(smtp));
}

export interface Capabilities {
  pipelining: boolean;
  /** advertised SIZE limit; 0 = none advertised or no limit */
  size: number;
  sizeAdvertised: boolean;
  eightBitMime: boolean;
  smtputf8: boolean;
  /** CHUNKING (RFC 3030): BDAT */
  chunking: boolean;
  starttls: boolean;
  auth: string[];
}

export type AuthOutcome =
  | { kind: 'ok' }
  /** 535 (directly or after the 334 JSON challenge): the access token was not accepted */
  | { kind: 'token_rejected'; reply: SmtpReply }
  /** 4xx: try later, not a token problem */
  | { kind: 'temporary'; reply: SmtpReply }
  /** any other refusal */
  | { kind: 'failed'; reply: SmtpReply };

/** The connection broke, timed out or got 421 before the upstream's final reply: nothing was accepted. */
export class ConnectionLostError extends Error {
  readonly code = 'UPSTREAM_CONNECTION_LOST';
}

/** Connection setup failed before AUTH (connect, DNS, TLS, greeting, EHLO, STARTTLS). */
export class ConnectError extends Error {
  readonly code = 'UPSTREAM_UNREACHABLE';
  constructor(readonly reason: string) {
    super(reason);
  }
}

/**
 * Where a connection stands; changed only by AccountPool.transition, which keeps the pool's counters.
 * - connecting: being set up (token, connect, TLS, EHLO, AUTH); not yet usable
 * - idle: authenticated, on the pool's idle stack
 * - busy: carrying a transaction (or handed straight to the next waiter)
 * - retiring: at its message count or age, waiting to learn whether a replacement can authenticate;
 *   then closing, or back to work within its grace (pool.ts, RETIRE_GRACE_MS)
 * - closing: QUIT sent (or the socket cut); its slot counts until the socket has closed
 * - closed: the socket is gone; final
 */
export type ConnectionState = 'connecting' | 'idle' | 'busy' | 'retiring' | 'closing' | 'closed';

const CERT_ERROR = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|HOSTNAME|ALTNAME/;

export class UpstreamConnection {
  state: ConnectionState = 'connecting';
  readonly createdAt = Date.now();
  /** when it was set up and could carry its first message (set by the pool) */
  readyAt = 0;
  /** transactions started on this connection (counts toward maxMessagesPerConnection) */
  messages = 0;
  /** set by the pool: when a connection kept in service past its limits must retire (0 = not kept) */
  keptUntil = 0;
  /** set by the pool: the mailbox's global connection slot this connection holds (Coordinator) */
  lease: Lease | undefined = undefined;
  caps: Capabilities = emptyCaps();
  /** set by the pool */
  onClose: (() => void) | null = null;
  onIdleTimeout: (() => void) | null = null;

  private socket: net.Socket | undefined;
  private input: SocketInput | undefined;
  private reuse: TlsReuse | undefined;
  private readonly parser = new ReplyParser((r) => this.onReply(r));
  private phase = 'connect';
  /** why this connection must not carry another transaction (broken, 421 seen, aborted, out of sync) */
  private failure: Error | null = null;
  private batch: SmtpReply[] | null = null;
  private want = 0;
  private resolveBatch: ((r: SmtpReply[]) => void) | null = null;
  private rejectBatch: ((e: Error) => void) | null = null;
  private quitTimer: NodeJS.Timeout | null = null;
  private markClosed!: () => void;
  /** settles once the socket has closed */
  private readonly closed = new Promise<void>((resolve) => (this.markClosed = resolve));

  constructor(private readonly opts: ConnectionOptions) {}

  /** may carry another transaction: nothing has broken or spoiled it */
  get reusable(): boolean {
    return this.failure === null;
  }

  /** TCP (+TLS) connect, greeting, EHLO, STARTTLS + EHLO. Throws ConnectError. */
  async connect(): Promise<void> {
    const { smtp, localAddress, commandTimeoutMs } = this.opts;
    try {
      const { onread, input } = connectInput(this.onData);
      const base = { host: smtp.host, port: smtp.port, localAddress, onread };
      let sock: net.Socket;
      if (smtp.security === 'tls') {
        const t = tls.connect({ ...base, ...this.tlsOptions() });
        this.keepSessions(t);
        sock = t;
      } else sock = net.connect(base as net.NetConnectOpts);
      this.socket = sock;
      this.input = input;
      this.attach(sock);
      sock.setNoDelay(true);
      sock.setKeepAlive(true, 30_000);
      sock.setTimeout(commandTimeoutMs);
      const greeting = await this.expect('greeting');
      if (greeting.code !== 220) throw new ConnectError(`greeting was ${oneLine(greeting)}`);
      await this.ehlo();
      if (smtp.security === 'starttls') {
        if (!this.caps.starttls) throw new ConnectError('server does not offer STARTTLS');
        this.phase = 'STARTTLS';
        const [r] = await this.request('STARTTLS\r\n', 1);
        if (r.code !== 220) throw new ConnectError(`STARTTLS refused: ${oneLine(r)}`);
        // bytes after the 220 would be injected before TLS (CVE-2011-0411 style); refuse them
        if (this.parser.pending) throw new ConnectError('server sent data after its STARTTLS reply');
        this.upgrade();
        await this.ehlo();
      }
    } catch (err) {
      this.destroy();
      throw err instanceof ConnectError ? err : new ConnectError(this.describe(err));
    }
  }

  async authenticate(user: string, token: string): Promise<AuthOutcome> {
    this.phase = 'AUTH';
    const ir = Buffer.from(`user=${user}\x01auth=Bearer ${token}\x01\x01`).toString('base64');
    let [r] = await this.request(`AUTH XOAUTH2 ${ir}\r\n`, 1);
    // Google answers a bad token with 334 <base64 JSON>; the client sends an empty line, then gets 535
    if (r.code === 334) [r] = await this.request('\r\n', 1);
    if (r.code === 235) return { kind: 'ok' };
    if (r.code === 535) return { kind: 'token_rejected', reply: r };
    if (r.code === 421) this.spoil(`upstream closing the connection at AUTH: ${oneLine(r)}`);
    if (r.code >= 400 && r.code < 500) return { kind: 'temporary', reply: r };
    return { kind: 'failed', reply: r };
  }

  /**
   * One transaction. Resolves with the upstream's verdict; throws ConnectionLostError when the
   * connection broke, timed out or answered 421 before the final reply to the body.
   */
  send(env: Envelope, message: readonly Buffer[]): Promise<DeliveryResult> {
    this.messages++;
    this.phase = 'MAIL';
    const caps = this.caps;
    let mail = `MAIL FROM:<${env.from}>`;
    if (caps.sizeAdvertised) mail += ` SIZE=${env.size}`;
    if (env.body8bit && caps.eightBitMime) mail += ' BODY=8BITMIME';
    if (env.smtputf8 && caps.smtputf8) mail += ' SMTPUTF8';
    mail += '\r\n';
    // BDAT only pipelined: RFC 3030 allows it alone, but then it saves nothing over DATA
    // not async itself: each returns its own promise, with no extra one wrapping it
    if (caps.chunking && caps.pipelining && this.opts.smtp.chunking !== false)
      return this.sendChunked(mail, env.to, message);
    return this.sendData(mail, env.to, message);
  }

  /** The transaction with DATA: pipelined MAIL, RCPTs and DATA in one write when the server allows. */
  private async sendData(
    mail: string,
    to: readonly string[],
    message: readonly Buffer[],
  ): Promise<DeliveryResult> {
    const caps = this.caps;
    let failures: { rcpt: string; reply: SmtpReply }[] | null = null;
    if (caps.pipelining) {
      let cmd = mail;
      for (let i = 0; i < to.length; i++) cmd += `RCPT TO:<${to[i]}>\r\n`;
      cmd += 'DATA\r\n';
      const rs = await this.request(cmd, to.length + 2);
      for (let i = 0; i < rs.length; i++) if (rs[i].code === 421) this.lost(rs[i]);
      const mailR = rs[0];
      const dataR = rs[rs.length - 1];
      for (let i = 0; i < to.length; i++) {
        const r = rs[i + 1];
        if (r.code >= 300) (failures ??= []).push({ rcpt: to[i], reply: r });
      }
      if (mailR.code >= 300 || failures) {
        // the upstream must not get a body: abort DATA by dropping the connection without the dot
        if (dataR.code === 354) this.abort();
        else if (mailR.code < 300) await this.rset();
        return mailR.code >= 300
          ? { kind: 'rejected', reply: mailR, failedRecipients: [] }
          : { kind: 'rejected', reply: combineFailures(failures!, to.length), failedRecipients: failures! };
      }
      if (dataR.code !== 354) {
        await this.rset();
        return { kind: 'rejected', reply: dataR, failedRecipients: [] };
      }
    } else {
      const [mailR] = await this.request(mail, 1);
      if (mailR.code === 421) this.lost(mailR);
      if (mailR.code >= 300) return { kind: 'rejected', reply: mailR, failedRecipients: [] };
      this.phase = 'RCPT';
      for (let i = 0; i < to.length; i++) {
        const [r] = await this.request(`RCPT TO:<${to[i]}>\r\n`, 1);
        if (r.code === 421) this.lost(r);
        if (r.code >= 300) (failures ??= []).push({ rcpt: to[i], reply: r });
      }
      if (failures) {
        await this.rset();
        return { kind: 'rejected', reply: combineFailures(failures, to.length), failedRecipients: failures };
      }
      this.phase = 'DATA';
      const [dataR] = await this.request('DATA\r\n', 1);
      if (dataR.code === 421) this.lost(dataR);
      if (dataR.code !== 354) {
        await this.rset();
        return { kind: 'rejected', reply: dataR, failedRecipients: [] };
      }
    }
    this.phase = 'end of data';
    const sock = this.socket!;
    const done = this.request(null, 1);
    // cork: the stuffed slices leave in one writev instead of one syscall each
    sock.cork();
    writeDotStuffed(sock, message);
    sock.uncork();
    const [fin] = await done;
    if (fin.code < 300) return { kind: 'delivered', reply: fin };
    if (fin.code === 421) this.spoil(`upstream closing the connection after the body: ${oneLine(fin)}`);
    return { kind: 'rejected', reply: fin, failedRecipients: [] };
  }

  /**
   * The transaction with BDAT. One recipient: MAIL, RCPT and `BDAT <n> LAST` with the body leave in
   * one write and come back as one batch of replies (one round trip). Several: the envelope first,
   * and the body only once every RCPT was accepted, since a BDAT LAST sent along would deliver to
   * the accepted recipients while we refuse the whole message (README, "SMTP replies"); the same
   * two round trips as DATA, without dot-stuffing and without a 354 to wait for.
   */
  private async sendChunked(
    mail: string,
    to: readonly string[],
    message: readonly Buffer[],
  ): Promise<DeliveryResult> {
    if (this.failure) throw this.failure;
    const { size, addCrlf } = chunkOf(message);
    const sock = this.socket!;
    const bdat = `BDAT ${size} LAST\r\n`;
    let failures: { rcpt: string; reply: SmtpReply }[] | null = null;
    let rcpts = mail;
    for (let i = 0; i < to.length; i++) rcpts += `RCPT TO:<${to[i]}>\r\n`;
    if (to.length === 1) {
      this.phase = 'MAIL, RCPT and BDAT';
      const done = this.request(null, 3);
      // cork: commands and body leave in one writev
      sock.cork();
      writeChunk(sock, rcpts + bdat, message, addCrlf);
      sock.uncork();
      const [mailR, rcptR, fin] = await done;
      // a 421 before the body's reply: nothing was taken (the pool may retry on another connection)
      if (mailR.code === 421) this.lost(mailR);
      if (rcptR.code === 421) this.lost(rcptR);
      if (mailR.code >= 300 || rcptR.code >= 300) {
        // the chunk went to a transaction without a recipient: its reply must be a refusal
        if (fin.code < 300) this.spoil(`upstream accepted BDAT without a recipient: ${oneLine(fin)}`);
        else if (fin.code !== 421) await this.rset();
        else this.spoil(`upstream closing the connection after BDAT: ${oneLine(fin)}`);
        if (mailR.code >= 300) return { kind: 'rejected', reply: mailR, failedRecipients: [] };
        failures = [{ rcpt: to[0], reply: rcptR }];
        return { kind: 'rejected', reply: combineFailures(failures, 1), failedRecipients: failures };
      }
      return this.chunkVerdict(fin);
    }
    const rs = await this.request(rcpts, to.length + 1);
    for (let i = 0; i < rs.length; i++) if (rs[i].code === 421) this.lost(rs[i]);
    const mailR = rs[0];
    if (mailR.code >= 300) return { kind: 'rejected', reply: mailR, failedRecipients: [] };
    for (let i = 0; i < to.length; i++) {
      const r = rs[i + 1];
      if (r.code >= 300) (failures ??= []).push({ rcpt: to[i], reply: r });
    }
    if (failures) {
      await this.rset();
      return { kind: 'rejected', reply: combineFailures(failures, to.length), failedRecipients: failures };
    }
    this.phase = 'BDAT';
    const done = this.request(null, 1);
    sock.cork();
    writeChunk(sock, bdat, message, addCrlf);
    sock.uncork();
    return this.chunkVerdict((await done)[0]);
  }

  /** The reply to BDAT LAST is the verdict on the message, as the reply after DATA's dot is. */
  private chunkVerdict(fin: SmtpReply): DeliveryResult | Promise<DeliveryResult> {
    if (fin.code < 300) return { kind: 'delivered', reply: fin };
    const rejected: DeliveryResult = { kind: 'rejected', reply: fin, failedRecipients: [] };
    if (fin.code === 421) {
      this.spoil(`upstream closing the connection after BDAT: ${oneLine(fin)}`);
      return rejected;
    }
    // a refused chunk may leave MAIL and RCPT standing at some servers (RFC 3030 does not say)
    return this.rset().then(() => rejected);
  }

  /** Socket inactivity limit: commandTimeoutMs while busy, the idle limit while pooled (0 = none). */
  setTimeout(ms: number): void {
    if (this.socket && !this.socket.destroyed) this.socket.setTimeout(ms);
  }

  /** QUIT politely (or just close when the connection is spoiled or mid-command); resolves once the socket closed. */
  quit(): Promise<void> {
    const sock = this.socket;
    if (!sock) return Promise.resolve(); // never connected
    if (this.phase !== 'QUIT') {
      if (this.failure || this.batch) {
        this.destroy();
      } else {
        this.phase = 'QUIT';
        sock.write('QUIT\r\n');
        sock.end();
        this.quitTimer = setTimeout(() => this.destroy(), this.opts.commandTimeoutMs);
        this.quitTimer.unref();
      }
    }
    return this.closed;
  }

  destroy(): void {
    this.socket?.destroy();
  }

  // -- internals ---------------------------------------------------------------------------------

  private tlsOptions(): tls.ConnectionOptions {
    const { smtp } = this.opts;
    const reuse = (this.reuse ??= this.opts.tls ?? new TlsReuse(smtp));
    return {
      // SNI must not be an IP address (RFC 6066); Node still verifies the IP against the certificate
      servername: net.isIP(smtp.host) ? undefined : smtp.host,
      secureContext: reuse.context,
      session: reuse.session,
      rejectUnauthorized: smtp.rejectUnauthorized,
    };
  }

  /** keep the session tickets the upstream sends, for the pool's next connection */
  private keepSessions(sock: tls.TLSSocket): void {
    const reuse = this.reuse;
    if (reuse) sock.on('session', (s: Buffer) => reuse.keep(s));
  }

  private upgrade(): void {
    const raw = this.socket!;
    this.input!.stop();
    raw.setTimeout(0);
    this.phase = 'TLS handshake';
    const sec = tls.connect({ socket: raw, host: this.opts.smtp.host, ...this.tlsOptions() });
    this.keepSessions(sec);
    this.attach(sec);
    sec.setTimeout(this.opts.commandTimeoutMs);
    this.input = readSocket(sec, this.onData);
    // writes before secureConnect are queued by the TLS socket, so EHLO can follow at once
    this.socket = sec;
  }

  private attach(sock: net.Socket | undefined): void {
    if (!sock) return;
    sock.on('error', this.onError);
    sock.on('close', this.onSocketClose);
    sock.on('timeout', this.onTimeout);
  }

  private async ehlo(): Promise<void> {
    this.phase = 'EHLO';
    const [r] = await this.request(`EHLO ${this.opts.ehloName}\r\n`, 1);
    if (r.code !== 250) throw new ConnectError(`EHLO refused: ${oneLine(r)}`);
    this.caps = parseCapabilities(r.text);
  }

  private async expect(phase: string): Promise<SmtpReply> {
    this.phase = phase;
    const [r] = await this.request(null, 1);
    return r;
  }

  /** write `data` (if any) and resolve with the next `n` replies */
  private request(data: string | null, n: number): Promise<SmtpReply[]> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.batch = [];
      this.want = n;
      this.resolveBatch = resolve;
      this.rejectBatch = reject;
      if (data !== null) this.socket!.write(data);
    });
  }

  private async rset(): Promise<void> {
    try {
      const [r] = await this.request('RSET\r\n', 1);
      if (r.code !== 250) this.spoil(`RSET refused: ${oneLine(r)}`);
    } catch {
      // the verdict we already have stands; this connection is just not reusable
      this.spoil('RSET failed');
    }
  }

  /** never reuse this connection; the transaction at hand keeps its verdict */
  private spoil(reason: string): void {
    this.fail(new ConnectionLostError(reason));
  }

  private lost(r: SmtpReply): never {
    const err = new ConnectionLostError(
      `upstream closing the connection during ${this.phase}: ${oneLine(r)}`,
    );
    this.fail(err);
    this.destroy();
    throw err;
  }

  private abort(): void {
    this.spoil(`transaction aborted during ${this.phase}`);
    this.destroy();
  }

  private readonly onData = (chunk: Buffer): void => {
    try {
      this.parser.push(chunk);
    } catch (err) {
      this.fail(err as Error);
      this.destroy();
    }
  };

  private onReply(r: SmtpReply): void {
    const batch = this.batch;
    if (batch) {
      batch.push(r);
      if (batch.length >= this.want) {
        const resolve = this.resolveBatch!;
        this.batch = this.resolveBatch = this.rejectBatch = null;
        resolve(batch);
      }
      return;
    }
    // unsolicited: 221 after QUIT is expected; 421 means the server is dropping us; anything else
    // means the reply stream is out of step with our commands
    if (this.phase === 'QUIT') return;
    this.spoil(`unsolicited reply: ${oneLine(r)}`);
    if (r.code === 421) this.destroy();
  }

  private fail(err: Error): void {
    if (!this.failure) this.failure = err;
    const reject = this.rejectBatch;
    if (reject) {
      this.batch = this.resolveBatch = this.rejectBatch = null;
      reject(this.failure);
    }
  }

  private readonly onError = (err: Error): void => {
    this.fail(
      this.state === 'connecting' ? err : new ConnectionLostError(this.describe(err), { cause: err }),
    );
  };

  private readonly onTimeout = (): void => {
    if (this.batch || this.state === 'connecting') {
      this.fail(new TimeoutError(`no reply within ${this.opts.commandTimeoutMs} ms (${this.phase})`));
      this.destroy();
    } else if (this.state === 'idle' && this.onIdleTimeout) {
      this.onIdleTimeout();
    }
  };

  // fires for the TLS socket and for its raw parent: everything here is idempotent
  private readonly onSocketClose = (): void => {
    this.socket?.destroy(); // the TLS socket or its raw parent may still be half-open
    if (this.quitTimer) clearTimeout(this.quitTimer);
    this.fail(new ConnectionLostError(`connection closed by upstream during ${this.phase}`));
    this.markClosed();
    const onClose = this.onClose;
    this.onClose = null;
    onClose?.();
  };

  private describe(err: unknown): string {
    const e = err as NodeJS.ErrnoException;
    const code = e?.code ?? '';
    const { localAddress } = this.opts;
    if (err instanceof TimeoutError) return `timed out: ${e.message}`;
    if (err instanceof ConnectionLostError) return e.message;
    if (code === 'ECONNREFUSED') return 'connection refused';
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
      return `DNS lookup of ${this.opts.smtp.host} failed (${code})`;
    if (localAddress && (code === 'EADDRNOTAVAIL' || code === 'EINVAL' || code === 'EADDRINUSE')) {
      return `cannot use source address ${localAddress} (${code})`;
    }
    if (CERT_ERROR.test(code)) return `TLS certificate verification failed: ${e.message} (${code})`;
    if (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || this.phase === 'TLS handshake') {
      return `TLS handshake failed: ${e.message}`;
    }
    return `${e?.message ?? String(err)} during ${this.phase}`;
  }
}

class TimeoutError extends Error {}

function emptyCaps(): Capabilities {
  return {
    pipelining: false,
    size: 0,
    sizeAdvertised: false,
    eightBitMime: false,
    smtputf8: false,
    chunking: false,
    starttls: false,
    auth: [],
  };
}

export function parseCapabilities(ehloText: string): Capabilities {
  const caps = emptyCaps();
  const lines = ehloText.split('\n');
  for (let i = 1; i < lines.length; i++) {
    const words = lines[i].trim().split(/\s+/);
    const kw = words[0].toUpperCase();
    if (kw === 'PIPELINING') caps.pipelining = true;
    else if (kw === '8BITMIME') caps.eightBitMime = true;
    else if (kw === 'SMTPUTF8') caps.smtputf8 = true;
    else if (kw === 'CHUNKING') caps.chunking = true;
    else if (kw === 'STARTTLS') caps.starttls = true;
    else if (kw === 'SIZE') {
      caps.sizeAdvertised = true;
      caps.size = Number(words[1]) || 0;
    } else if (kw === 'AUTH' || kw.startsWith('AUTH=')) {
      for (const m of kw === 'AUTH' ? words.slice(1) : [kw.slice(5)]) caps.auth.push(m.toUpperCase());
    }
  }
  return caps;
}

/**
 * The verdict for refused recipients: 5xx only if every refusal was permanent. With several
 * recipients the text names the refused ones (README, "SMTP replies"), so the client knows which to fix.
 */
export function combineFailures(failures: { rcpt: string; reply: SmtpReply }[], recipients = 1): SmtpReply {
  if (failures.length === 1) {
    const only = failures[0];
    return recipients > 1 ? { ...only.reply, text: `<${only.rcpt}> ${only.reply.text}` } : only.reply;
  }
  const temporary = failures.filter((f) => f.reply.code < 500);
  const decisive = temporary.length > 0 ? temporary : failures;
  const cls = temporary.length > 0 ? 4 : 5;
  const code = decisive.every((f) => f.reply.code === decisive[0].reply.code)
    ? decisive[0].reply.code
    : cls === 4
      ? 451
      : 550;
  const enh = decisive[0].reply.enhanced;
  const enhanced = enh && decisive.every((f) => f.reply.enhanced === enh) ? enh : `${cls}.0.0`;
  const text =
    `${failures.length} recipients refused: ` +
    failures.map((f) => `<${f.rcpt}> ${oneLine(f.reply)}`).join('; ');
  return { code, enhanced, text };
}

export function oneLine(r: SmtpReply): string {
  return formatReply(r).replace(/\s*\n\s*/g, ' / ');
}
