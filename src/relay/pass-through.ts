// How an upstream verdict is passed on to the client: same codes, text prefixed `upstream:`.
import type { SmtpReply } from '../shared/smtp-reply.js';

/** An upstream verdict as the client sees it. */
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
