// smtp-server derives the enhanced status code of every reply from the numeric code alone, so an
// application error can never carry its own (we must send `451 4.7.0`, `452 4.3.1`, pass the
// upstream's codes through, ...). This one small override lets a reply text that starts with an
// enhanced code keep it (and not get a second one), and gives shutdown the SPEC's `421 4.3.2`.
// It wraps a single method and is covered by the client-facing integration tests.
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;
let installed = false;

export function installReplyPatch(): void {
  if (installed) return;
  installed = true;
  const proto = (SMTPConnection as any).prototype;
  const original = proto.send as (code: number, data: unknown, context?: unknown) => void;
  proto.send = function (this: unknown, code: number, data: unknown, context?: unknown) {
    if (code === 421 && data === 'Server shutting down') {
      return original.call(this, code, '4.3.2 Service shutting down, try again later', false);
    }
    if (typeof data === 'string' && ENHANCED.test(data)) return original.call(this, code, data, false);
    return original.call(this, code, data, context);
  };
}
