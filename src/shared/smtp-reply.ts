// An SMTP reply as it travels between the upstream, the relay and the client.
import type { ReplyCode } from './replies.js';

export interface SmtpReply {
  code: number;
  /** enhanced status code, e.g. "4.7.0"; empty when the peer sent none */
  enhanced: string;
  /** text after the codes; multi-line replies are joined with "\n" */
  text: string;
}

/**
 * An error that carries the exact reply the client must get. Built by smtpError() of
 * shared/replies.ts, so its code and its reply always agree with the catalogue.
 */
export class SmtpError extends Error {
  readonly reply: SmtpReply;
  /** stable machine-readable code, e.g. "UPSTREAM_UNREACHABLE" */
  readonly code: ReplyCode;
  constructor(code: ReplyCode, reply: SmtpReply, options?: { cause?: unknown }) {
    super(`${reply.code} ${reply.enhanced} ${reply.text}`.replace(/\s+/g, ' ').trim(), options);
    this.name = 'SmtpError';
    this.code = code;
    this.reply = reply;
  }
}

export function reply(code: number, enhanced: string, text: string): SmtpReply {
  return { code, enhanced, text };
}

export function formatReply(r: SmtpReply): string {
  return `${r.code} ${r.enhanced ? r.enhanced + ' ' : ''}${r.text}`;
}
