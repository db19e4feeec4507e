// The replies the proxy itself gives (SPEC section 3), and how upstream verdicts are passed on.
import { reply, type SmtpReply } from '../shared/smtp-reply.js';

export const REPLIES = {
  authRequired: reply(530, '5.7.0', 'Authentication required'),
  authInvalid: reply(535, '5.7.8', 'Authentication credentials invalid'),
  authThrottled: reply(421, '4.7.0', 'Too many failed authentications from your address, try again later'),
  tooManyRecipients: reply(452, '4.5.3', 'Too many recipients'),
  overloaded: reply(452, '4.3.1', 'Proxy busy: too many messages in flight, try again shortly'),
  shuttingDown: reply(421, '4.3.2', 'Service shutting down, try again later'),
  internal: reply(451, '4.3.0', 'Internal error in the proxy, message not relayed; try again'),
} as const;

export function messageTooBig(limit: number): SmtpReply {
  return reply(552, '5.3.4', `Message exceeds the maximum size of ${limit} bytes`);
}

export function senderNotAMailbox(from: string): SmtpReply {
  return reply(550, '5.7.1', `Sender <${from}> is not a mailbox of this proxy`);
}

export function unusableAccount(email: string, why: string): SmtpReply {
  return reply(451, '4.4.1', `Mailbox ${email} cannot be relayed now: ${why}`);
}

/** An upstream verdict as the client sees it: same codes, text prefixed `upstream:`. */
export function passThrough(r: SmtpReply): SmtpReply {
  const enhanced = r.enhanced || defaultEnhanced(r.code);
  // smtp-server sends error replies on one line; keep every line of the upstream's text.
  const text = r.text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join(' / ');
  return { code: r.code, enhanced, text: `upstream: ${text}` };
}

function defaultEnhanced(code: number): string {
  if (code < 300) return '2.0.0';
  return code < 500 ? '4.0.0' : '5.0.0';
}
