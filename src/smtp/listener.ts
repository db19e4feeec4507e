// The client-facing SMTP side: listeners, client AUTH, envelope checks, and the hand-off of each
// message (as Buffers) to the relay. The protocol itself is session.ts; this file decides.
import tls from 'node:tls';
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
import { SmtpServer } from './server.js';
import type { MessageSink, SessionHandler, SmtpSession } from './session.js';
import type { Params } from './wire/commands.js';

/** What the listeners read on every command; reload swaps it as a whole. */
export interface SmtpContext {
  config: Config;
  registry: AccountRegistry;
  trusted: TrustedNetworks;
}

export interface SmtpListenersOptions {
  context: () => SmtpContext;
  relay: Relay;
  metrics: Metrics;
  log: Logger;
  throttle?: AuthThrottle;
}

export class SmtpListeners {
  private readonly servers: SmtpServer[] = [];
  readonly addresses: { address: HostPort; tls: boolean }[] = [];
  private draining = false;
  private readonly throttle: AuthThrottle;
  /** the mailbox each session's transaction is for (set at MAIL FROM) */
  private readonly accounts = new WeakMap<SmtpSession, Account>();
  private readonly counted = new WeakSet<SmtpSession>();

  constructor(private readonly opts: SmtpListenersOptions) {
    this.throttle = opts.throttle ?? new AuthThrottle();
  }

  async listen(): Promise<void> {
    const { config } = this.opts.context();
    const smtp = config.smtp;
    const context = smtp.tls
      ? tls.createSecureContext({ key: smtp.tls.key, cert: smtp.tls.cert, minVersion: 'TLSv1.2' })
      : undefined;
    if (smtp.tlsListen.length && !context)
      throw new Error('smtp.tlsListen needs smtp.tls (a certificate and key)');
    for (const hp of smtp.listen) await this.start(hp, undefined, context);
    for (const hp of smtp.tlsListen) await this.start(hp, context, undefined);
  }

  private async start(
    hp: HostPort,
    implicitTls: tls.SecureContext | undefined,
    starttls: tls.SecureContext | undefined,
  ): Promise<void> {
    const smtp = this.opts.context().config.smtp;
    const server = new SmtpServer({
      host: hp.host,
      port: hp.port,
      implicitTls,
      proxyProtocol: smtp.proxyProtocol,
      maxClients: smtp.maxClients,
      session: {
        hostname: smtp.hostname,
        banner: 'xoauth2-proxy ESMTP ready',
        maxMessageSize: smtp.maxMessageSize,
        maxRecipients: smtp.maxRecipients,
        starttls,
        requireTls: smtp.requireTls ?? !isLoopback(hp.host),
      },
      handler: this.handler,
      accept: (session) => this.accept(session),
      draining: () => (this.draining ? smtpReply('SHUTTING_DOWN') : undefined),
      deadlines: () => this.opts.context().config.smtp,
      replies: { command: smtpReply('COMMAND_TIMEOUT'), data: smtpReply('DATA_TIMEOUT') },
    });
    const bound = await server.listen();
    const address = { host: hp.host, port: bound.port };
    this.servers.push(server);
    this.addresses.push({ address, tls: implicitTls !== undefined });
    this.opts.log.info({ listen: formatHostPort(address), tls: implicitTls !== undefined }, 'smtp listening');
  }

  private accept(session: SmtpSession): SmtpReply | undefined {
    const address = session.remoteAddress;
    const m = this.opts.metrics;
    m.smtpConnectionsTotal.inc({ result: this.draining ? 'refused' : 'accepted' });
    if (this.draining) return smtpReply('SHUTTING_DOWN');
    if (this.throttle.isRefused(address)) {
      m.authAttemptsTotal.inc({ result: 'throttled' });
      return smtpReply('AUTH_THROTTLED');
    }
    m.smtpConnectionsActive.inc();
    this.counted.add(session);
    return undefined;
  }

  private readonly handler: SessionHandler = {
    authenticate: (s, username, password, mechanism) => this.authenticate(username, password, mechanism, s),
    mailFrom: (s, address) => this.mailFrom(s, address),
    data: (s) => this.data(s),
    closed: (s) => {
      if (this.counted.has(s)) this.opts.metrics.smtpConnectionsActive.dec();
    },
  };

  private mailFrom(s: SmtpSession, address: string): SmtpReply | undefined {
    if (this.draining) return smtpReply('SHUTTING_DOWN');
    const ctx = this.opts.context();
    let account: Account | undefined;
    if (s.user) {
      account = ctx.registry.get(s.user);
      // removed by a reload since AUTH: it stops working at once
      if (!account) return smtpReply('AUTH_REQUIRED');
    } else if (ctx.trusted.has(s.remoteAddress)) {
      account = ctx.registry.get(normalizeEmail(address));
      if (!account) return smtpReply('SENDER_NOT_A_MAILBOX', address);
    } else {
      return smtpReply('AUTH_REQUIRED');
    }
    if (this.opts.relay.overloaded()) return smtpReply('OVERLOADED');
    this.accounts.set(s, account);
    return undefined;
  }

  private async authenticate(
    username: string,
    password: string,
    mechanism: string,
    session: SmtpSession,
  ): Promise<string | SmtpReply> {
    const addr = session.remoteAddress;
    const { metrics } = this.opts;
    if (this.throttle.isRefused(addr)) {
      metrics.authAttemptsTotal.inc({ result: 'throttled' });
      return smtpReply('AUTH_THROTTLED');
    }
    const account = await this.opts.context().registry.authenticate(normalizeEmail(username), password);
    if (account) {
      this.throttle.recordSuccess(addr);
      metrics.authAttemptsTotal.inc({ result: 'success' });
      this.opts.relay.prepare(account);
      return account.email;
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
    return smtpReply('AUTH_INVALID');
  }

  /**
   * DATA: the message goes into a relay reservation as it arrives. A client gone mid-DATA (or cut
   * off by a deadline) aborts it: nothing is relayed and the reservation is released. After the
   * terminator the message is the relay's until its reply.
   */
  private data(s: SmtpSession): MessageSink {
    const account = this.accounts.get(s);
    const env = s.envelope!;
    const relay = this.opts.relay;
    const reservation = relay.reserve();
    return {
      add: (chunk) => reservation.add(chunk),
      abort: () => reservation.release(),
      end: (bytes, tooBig) => {
        if (tooBig) {
          reservation.release();
          return smtpReply('MESSAGE_TOO_BIG', this.opts.context().config.smtp.maxMessageSize);
        }
        if (!account) {
          reservation.release();
          return smtpReply('AUTH_REQUIRED');
        }
        const envelope = {
          from: env.from,
          to: env.to,
          size: bytes,
          smtputf8: env.params.SMTPUTF8 === true,
          body8bit: bodyIs8bit(env.params),
        };
        // send() answers every message itself; a rejection would be a bug, still answered
        return relay.send(account, envelope, reservation, newTransactionId()).catch(() => {
          reservation.release();
          return smtpReply('INTERNAL_ERROR');
        });
      },
    };
  }

  /**
   * Stop accepting; close idle client connections with `421 4.3.2`; connections inside a
   * transaction get their reply first, then the 421. Resolves when every listener has closed.
   */
  async drain(): Promise<void> {
    this.draining = true;
    const timeout = this.opts.context().config.shutdownTimeoutMs;
    const closing = this.servers.map((s) => s.close(timeout));
    const bye = smtpReply('SHUTTING_DOWN');
    for (const server of this.servers) for (const s of server.sessions) s.shutdown(bye);
    await Promise.all(closing);
  }

  /** reply bytes written to clients and not yet taken by the kernel (clients not reading) */
  get bufferedReplyBytes(): number {
    let n = 0;
    for (const server of this.servers) for (const s of server.sessions) n += s.bufferedReplyBytes;
    return n;
  }

  get connectionCount(): number {
    let n = 0;
    for (const s of this.servers) n += s.sessions.size;
    return n;
  }
}

function bodyIs8bit(p: Params): boolean {
  return typeof p.BODY === 'string' && p.BODY.toUpperCase() === '8BITMIME';
}
