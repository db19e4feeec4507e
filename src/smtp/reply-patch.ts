// Two small overrides of smtp-server's single reply method (SMTPConnection.prototype.send), both
// covered by the client-facing integration tests:
//
// 1. smtp-server derives the enhanced status code of every reply from the numeric code alone, so an
//    application error could never carry its own (we must send `451 4.7.0`, `452 4.3.1`, pass the
//    upstream's codes through, ...). A reply text that starts with an enhanced code keeps it (and
//    does not get a second one); shutdown gets the SPEC's `421 4.3.2`.
// 2. smtp-server writes every reply with its own socket.write: a pipelined MAIL/RCPT/DATA group
//    costs three write syscalls, which the profile showed as the proxy's largest single cost
//    (docs/performance.md). Replies are corked and flushed once per event-loop turn instead, so a
//    pipelined group's replies leave in one write (RFC 2920 allows, and clients expect, that).
// 3. smtp-server advertises AUTH in EHLO even where it will refuse it until STARTTLS (requireTls);
//    SPEC 3 and RFC 3207 say to offer AUTH only where it is allowed, so that line is dropped there.
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { Socket } from 'node:net';
import { smtpReply } from '../shared/replies.js';

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;
let installed = false;

/** Sockets corked in this event-loop turn; flushed together in the check phase. */
let corked: Socket[] = [];
let flushScheduled = false;

function flush(): void {
  const list = corked;
  corked = [];
  flushScheduled = false;
  for (let i = 0; i < list.length; i++) {
    const s = list[i] as Socket & { __xoCorked?: boolean };
    s.__xoCorked = false;
    if (!s.destroyed) s.uncork();
  }
}

interface ConnLike {
  _socket?: Socket & { __xoCorked?: boolean };
  _upgrading?: boolean;
  secure?: boolean;
  _server?: { options: { allowInsecureAuth?: boolean; hideSTARTTLS?: boolean } };
}

/** AUTH is refused on this connection until STARTTLS (smtp-server's own condition for its 538). */
function authNeedsTls(conn: ConnLike): boolean {
  const o = conn._server?.options;
  return !conn.secure && o !== undefined && !o.allowInsecureAuth && !o.hideSTARTTLS;
}

function corkForThisTurn(conn: ConnLike, code: number): void {
  const s = conn._socket;
  // 220 may precede a STARTTLS upgrade (the raw socket is handed to TLS at once), and 221/421 end
  // the connection: those replies go out unbatched, after anything corked before them.
  if (!s || code === 220 || code === 221 || code === 421) {
    if (s?.__xoCorked) {
      s.__xoCorked = false;
      s.uncork();
    }
    return;
  }
  if (s.__xoCorked || conn._upgrading || s.destroyed) return;
  s.__xoCorked = true;
  s.cork();
  corked.push(s);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flush);
  }
}

export function installReplyPatch(): void {
  if (installed) return;
  installed = true;
  const proto = (SMTPConnection as any).prototype;
  const original = proto.send as (code: number, data: unknown, context?: unknown) => void;
  proto.send = function (this: ConnLike, code: number, data: unknown, context?: unknown) {
    corkForThisTurn(this, code);
    if (code === 421 && data === 'Server shutting down') {
      const r = smtpReply('SHUTTING_DOWN');
      return original.call(this, r.code, `${r.enhanced} ${r.text}`, false);
    }
    if (typeof data === 'string' && ENHANCED.test(data)) return original.call(this, code, data, false);
    if (code === 250 && Array.isArray(data) && authNeedsTls(this)) {
      data = (data as string[]).filter((line) => !/^AUTH /.test(line));
    }
    return original.call(this, code, data, context);
  };
}
