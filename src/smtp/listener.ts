// The client-facing SMTP side, on smtp-server: listeners, client AUTH, envelope checks, and the
// hand-off of each message (as Buffers) to the relay.
import { SMTPServer, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import type { Config, HostPort } from '../config/types.js';
import { normalizeEmail } from '../shared/email.js';
import type { Logger } from '../shared/log.js';
import type { Metrics } from '../metrics/metrics.js';
import { formatHostPort, isLoopback } from '../shared/net.js';
import type { Account, AccountRegistry } from '../accounts/registry.js';
import { newTransactionId, type Relay } from '../relay/relay.js';
import { smtpReply } from '../shared/replies.js';
import type { SmtpReply } from '../shared/smtp-reply.js';
import { AuthThrottle } from './auth-throttle.js';
import { TrustedNetworks } from './trusted-networks.js';
import { installReplyPatch } from './reply-patch.js';
import { checkSmtpServerInternals, connectionsOf, sendReply, sessionOf } from './smtp-server-internals.js';
import { enforceRequestDeadlines } from './request-deadline.js';

/** What the listeners read on every command; reload swaps it as a whole. */
export interface SmtpContext {
  config: Config;
  registry: AccountRegistry;
  trusted: TrustedNetworks;
}

interface SessionState {
  account?: Account;
  inTransaction: boolean;
}

type Session = SMTPServerSession & { xo?: SessionState };

function serverError(r: SmtpReply): Error & { responseCode: number } {
  const e = new Error(r.enhanced ? `${r.enhanced} ${r.text}` : r.text) as Error & { responseCode: number };
  e.responseCode = r.code;
  return e;
}

function state(session: Session): SessionState {
  return (session.xo ??= { inTransaction: false });
}

export interface SmtpListenersOptions {
  context: () => SmtpContext;
  relay: Relay;
  metrics: Metrics;
  log: Logger;
  throttle?: AuthThrottle;
}

export class SmtpListeners {
  private readonly servers: SMTPServer[] = [];
  readonly addresses: { address: HostPort; tls: boolean }[] = [];
  private draining = false;
  private stopDeadline?: () => void;
  private readonly throttle: AuthThrottle;

  constructor(private readonly opts: SmtpListenersOptions) {
    checkSmtpServerInternals(); // fails loudly now, not under load, if smtp-server changed
    installReplyPatch();
    this.throttle = opts.throttle ?? new AuthThrottle();
  }

  async listen(): Promise<void> {
    const { config } = this.opts.context();
    const smtp = config.smtp;
    for (const hp of smtp.listen) await this.start(hp, false);
    for (const hp of smtp.tlsListen) await this.start(hp, true);
    this.stopDeadline = enforceRequestDeadlines(this.servers, () => this.opts.context().config.smtp);
  }

  private serverOptions(hp: HostPort, implicitTls: boolean): SMTPServerOptions {
    const { config } = this.opts.context();
    const smtp = config.smtp;
    const requireTls = smtp.requireTls ?? !isLoopback(hp.host);
    const hasTls = smtp.tls !== undefined;
    return {
      secure: implicitTls,
      minVersion: 'TLSv1.2',
      useProxy: smtp.proxyProtocol === false ? undefined : smtp.proxyProtocol,
      key: smtp.tls?.key,
      cert: smtp.tls?.cert,
      hideSTARTTLS: !hasTls || implicitTls,
      name: smtp.hostname,
      banner: 'xoauth2-proxy ESMTP ready',
      size: smtp.maxMessageSize,
      maxClients: smtp.maxClients,
      maxRecipients: smtp.maxRecipients,
      socketTimeout: smtp.idleTimeoutMs,
      closeTimeout: config.shutdownTimeoutMs,
      authMethods: ['PLAIN', 'LOGIN'],
      authOptional: true, // enforced per session in onMailFrom: trusted networks may skip AUTH
      allowInsecureAuth: !requireTls,
      disableReverseLookup: true,
      hideDSN: true,
      hideENHANCEDSTATUSCODES: false, // smtp-server hides them by default; we advertise them
      hideREQUIRETLS: true,
      logger: false,
      disabledCommands: [],
      onConnect: (session, cb) => {
        this.opts.metrics.smtpConnectionsTotal.inc({ result: this.draining ? 'refused' : 'accepted' });
        if (this.draining) return cb(serverError(smtpReply('SHUTTING_DOWN')));
        if (this.throttle.isRefused(session.remoteAddress)) {
          this.opts.metrics.authAttemptsTotal.inc({ result: 'throttled' });
          return cb(serverError(smtpReply('AUTH_THROTTLED')));
        }
        this.opts.metrics.smtpConnectionsActive.inc();
        (session as Session).xo = { inTransaction: false };
        cb();
      },
      onClose: (session) => {
        if ((session as Session).xo) this.opts.metrics.smtpConnectionsActive.dec();
      },
      onAuth: (auth, session, cb) => {
        this.authenticate(auth.username ?? '', auth.password ?? '', auth.method, session as Session).then(
          (r) => cb(r.error ?? null, r.user ? { user: r.user } : undefined),
          (err) => cb(err as Error),
        );
      },
      onMailFrom: (address, session, cb) => {
        const s = state(session as Session);
        if (this.draining) return cb(serverError(smtpReply('SHUTTING_DOWN')));
        const ctx = this.opts.context();
        let account: Account | undefined;
        if (session.user) {
          account = ctx.registry.get(String(session.user));
          // removed by a reload since AUTH: it stops working at once
          if (!account) return cb(serverError(smtpReply('AUTH_REQUIRED')));
        } else if (ctx.trusted.has(session.remoteAddress)) {
          account = ctx.registry.get(normalizeEmail(address.address));
          if (!account) return cb(serverError(smtpReply('SENDER_NOT_A_MAILBOX', address.address)));
        } else {
          return cb(serverError(smtpReply('AUTH_REQUIRED')));
        }
        if (this.opts.relay.overloaded()) return cb(serverError(smtpReply('OVERLOADED')));
        s.account = account;
        s.inTransaction = true;
        cb();
      },
      onRcptTo: (_address, _session, cb) => {
        cb();
      },
      onData: (stream, session, cb) => {
        this.onData(stream, session as Session, cb);
      },
    };
  }

  private async authenticate(
    username: string,
    password: string,
    mechanism: string,
    session: Session,
  ): Promise<{ user?: string; error?: Error }> {
    const addr = session.remoteAddress;
    const { metrics } = this.opts;
    if (this.throttle.isRefused(addr)) {
      metrics.authAttemptsTotal.inc({ result: 'throttled' });
      return { error: serverError(smtpReply('AUTH_THROTTLED')) };
    }
    const account = await this.opts.context().registry.authenticate(normalizeEmail(username), password);
    if (account) {
      this.throttle.recordSuccess(addr);
      metrics.authAttemptsTotal.inc({ result: 'success' });
      this.opts.relay.prepare(account);
      return { user: account.email };
    }
    metrics.authAttemptsTotal.inc({ result: 'failure' });
    // for fail2ban and the like: who tried which mailbox from where (never the password)
    this.opts.log.warn(
      { event: 'auth_failed', remoteAddress: addr, username: username.slice(0, 256), mechanism },
      'client authentication failed',
    );
    const delay = this.throttle.recordFailure(addr);
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    // Never say whether the mailbox exists: one reply for unknown mailbox and wrong password.
    return { error: serverError(smtpReply('AUTH_INVALID')) };
  }

  private onData(
    stream: NodeJS.ReadableStream & { sizeExceeded?: boolean },
    session: Session,
    cb: (err?: Error | null, message?: string) => void,
  ): void {
    const s = state(session);
    const account = s.account;
    const relay = this.opts.relay;
    const reservation = relay.reserve();
    stream.on('data', (chunk: Buffer) => {
      if (!stream.sizeExceeded) reservation.add(chunk);
    });
    const giveUp = () => {
      reservation.release();
      s.inTransaction = false;
    };
    // A client gone mid-DATA (or cut off by a deadline): smtp-server destroys the stream without
    // 'end', so nothing is relayed and the reservation is released here. After 'end' the message
    // is the relay's until its reply (finish), whatever the stream does.
    let ended = false;
    stream.once('close', () => ended || giveUp());
    stream.once('end', () => {
      ended = true;
      const finish = (r: SmtpReply) => {
        giveUp();
        if (r.code < 300) cb(null, `${r.enhanced} ${r.text}`);
        else cb(serverError(r));
        if (this.draining) setImmediate(() => this.closeSession(session));
      };
      if (stream.sizeExceeded)
        return finish(smtpReply('MESSAGE_TOO_BIG', this.opts.context().config.smtp.maxMessageSize));
      if (!account) return finish(smtpReply('AUTH_REQUIRED'));
      const env = session.envelope;
      const mailFrom = env.mailFrom ? env.mailFrom : undefined;
      const args = (mailFrom && (mailFrom.args as Record<string, string> | false)) || {};
      const envelope = {
        from: mailFrom ? mailFrom.address : '',
        to: env.rcptTo.map((r) => r.address),
        size: reservation.bytes,
        smtputf8: 'SMTPUTF8' in args,
        body8bit: String(args.BODY ?? '').toUpperCase() === '8BITMIME',
      };
      relay
        .send(account, envelope, reservation, newTransactionId())
        .then(finish, () => finish(smtpReply('INTERNAL_ERROR')));
    });
  }

  private async start(hp: HostPort, implicitTls: boolean): Promise<void> {
    const server = new SMTPServer(this.serverOptions(hp, implicitTls));
    server.on('error', (err) => this.opts.log.warn({ err: String(err) }, 'smtp connection error'));
    const listening = server.listen(hp.port, hp.host);
    await new Promise<void>((resolve, reject) => {
      listening.once('error', reject);
      listening.once('listening', () => {
        listening.off('error', reject);
        resolve();
      });
    });
    const addr = listening.address();
    const bound = typeof addr === 'object' && addr ? { host: hp.host, port: addr.port } : hp;
    this.servers.push(server);
    this.addresses.push({ address: bound, tls: implicitTls });
    this.opts.log.info({ listen: formatHostPort(bound), tls: implicitTls }, 'smtp listening');
  }

  private closeSession(session: SMTPServerSession): void {
    for (const server of this.servers) {
      for (const conn of connectionsOf(server)) {
        if (sessionOf(conn).id === session.id) sendReply(conn, smtpReply('SHUTTING_DOWN'));
      }
    }
  }

  /**
   * Stop accepting; close idle client connections with `421 4.3.2`; connections inside a
   * transaction get their reply first, then the 421. Resolves when every listener has closed.
   */
  async drain(): Promise<void> {
    this.draining = true;
    this.stopDeadline?.();
    const closing = this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    for (const server of this.servers) {
      for (const conn of connectionsOf(server)) {
        const st = (sessionOf(conn) as Session).xo;
        if (!st?.inTransaction) sendReply(conn, smtpReply('SHUTTING_DOWN'));
      }
    }
    await Promise.all(closing);
  }

  get connectionCount(): number {
    let n = 0;
    for (const s of this.servers) n += connectionsOf(s).size;
    return n;
  }
}
