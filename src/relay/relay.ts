// One message transaction: global budgets, then the upstream, then the honest reply.
// The client reply is derived only from the upstream's verdict or a precise local failure;
// `250` is returned only when the upstream answered 2xx after the body (docs/design.md, principle 10).
import { messageLog, type Logger, type MessageLine } from '../shared/log.js';
import type { Metrics } from '../metrics/metrics.js';
import { SmtpError, type SmtpReply } from '../shared/smtp-reply.js';
import { smtpReply } from '../shared/replies.js';
import { passThrough } from './pass-through.js';
import { Reservation, type ByteBudget } from './reservation.js';
import type { Account } from '../accounts/registry.js';

// The upstream side's types are the contract between relay and pools: one definition of each.
import type { DeliveryResult, Envelope } from '../upstream/types.js';
export type { DeliveryResult, Envelope };

export interface Deliverer {
  deliver(email: string, envelope: Envelope, message: readonly Buffer[]): Promise<DeliveryResult>;
  /** a client of `email` logged in: get ready to deliver for it (open an upstream connection) */
  prepare?(email: string): void;
}

export interface MessageObserver {
  record(durationMs: number, result: 'delivered' | 'rejected' | 'deferred'): void;
  recordError?(email: string, text: string): void;
}

export interface RelayOptions {
  deliverer: Deliverer;
  metrics: Metrics;
  log: Logger;
  logMessages: boolean;
  maxInflightMessages: number;
  maxInflightBytes: number;
  observer?: MessageObserver;
}

let txCounter = 0;
const txPrefix = Math.floor(Math.random() * 36 ** 4)
  .toString(36)
  .padStart(4, '0');

export function newTransactionId(): string {
  return txPrefix + (++txCounter).toString(36);
}

export class Relay {
  /** the one count of messages being relayed (docs/design.md, principle 9); the gauge reads it */
  private inflight = 0;
  /** bytes held by reservations, from DATA start to the reply; the gauge reads it */
  private heldBytes = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly budget: ByteBudget = {
    take: (n) => (this.heldBytes += n) <= this.opts.maxInflightBytes,
    give: (n) => {
      this.heldBytes -= n;
    },
  };

  private logMessage: (line: MessageLine) => void;

  constructor(private opts: RelayOptions) {
    this.logMessage = messageLog(opts.log);
    // the inflight gauges are read from this relay at scrape time
    opts.metrics.addInflightSource(this);
  }

  /** swap settings on reload; in-flight transactions keep the objects they captured */
  update(opts: Partial<RelayOptions>): void {
    if (opts.metrics && opts.metrics !== this.opts.metrics) opts.metrics.addInflightSource(this);
    this.opts = { ...this.opts, ...opts };
    this.logMessage = messageLog(this.opts.log);
  }

  get inflightMessages(): number {
    return this.inflight;
  }

  get inflightBytes(): number {
    return this.heldBytes;
  }

  /** A client logged in as `account`: its mail will follow, so the upstream side gets ready now. */
  prepare(account: Account): void {
    if (!account.unusable) this.opts.deliverer.prepare?.(account.email);
  }

  /** true when a new transaction must be refused with `452 4.3.1` */
  overloaded(): boolean {
    return this.inflight >= this.opts.maxInflightMessages || this.heldBytes >= this.opts.maxInflightBytes;
  }

  /**
   * The reservation for a message whose DATA starts now: the caller adds the bytes as they come
   * and releases it if it gives the message up; send() releases it once the reply is known.
   */
  reserve(): Reservation {
    return new Reservation(this.budget, this.overloaded());
  }

  /**
   * Relay the message of `reservation` and release it; resolves to the client's reply, never
   * throws. A reservation the budget refused gets `452 4.3.1` without being relayed or counted.
   */
  async send(
    account: Account,
    envelope: Envelope,
    reservation: Reservation,
    txid: string,
  ): Promise<SmtpReply> {
    const { metrics, log } = this.opts;
    const message = reservation.beginSend();
    if (!message) {
      const refused = reservation.refused;
      reservation.release();
      if (refused) return smtpReply('OVERLOADED');
      log.error({ txid, account: account.email }, 'a released message was handed to the relay');
      return smtpReply('INTERNAL_ERROR');
    }
    const provider = account.provider.name;
    const started = performance.now();
    this.inflight++;
    let out: SmtpReply;
    let upstream: SmtpReply | undefined;
    try {
      if (account.unusable) {
        out = smtpReply('ACCOUNT_UNUSABLE', account.email, account.unusable);
      } else {
        const r = await this.opts.deliverer.deliver(account.email, envelope, message);
        upstream = r.reply;
        out = passThrough(r.reply);
      }
    } catch (err) {
      if (err instanceof SmtpError) {
        out = err.reply;
      } else {
        log.error({ err, txid, account: account.email }, 'unexpected error while relaying');
        out = smtpReply('INTERNAL_ERROR');
      }
    } finally {
      reservation.endSend();
      this.inflight--;
      if (this.inflight === 0 && this.idleWaiters.length) {
        for (const w of this.idleWaiters.splice(0)) w();
      }
    }
    const result = out.code < 300 ? 'delivered' : out.code >= 500 ? 'rejected' : 'deferred';
    const ms = performance.now() - started;
    const instruments = metrics.forProvider(provider);
    instruments.messages[result].inc();
    instruments.duration.observe(ms / 1000);
    metrics.perAccountMessages?.inc({ account: account.email, result });
    this.opts.observer?.record(ms, result);
    if (result !== 'delivered')
      this.opts.observer?.recordError?.(account.email, `${out.code} ${out.enhanced} ${out.text}`);
    if (this.opts.logMessages) {
      this.logMessage({
        txid,
        account: account.email,
        rcpts: envelope.to.length,
        size: envelope.size,
        result,
        reply: `${out.code} ${out.enhanced}`,
        upstream: upstream ? `${upstream.code} ${upstream.enhanced}`.trim() : undefined,
        ms: Math.round(ms * 10) / 10,
      });
    }
    return out;
  }

  /** resolves when no message is in flight (drain) */
  idle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}
