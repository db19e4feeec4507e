// Three small overrides of smtp-server's single reply method, all covered by the client-facing
// tests:
//
// 1. smtp-server derives the enhanced status code of every reply from the numeric code alone, so an
//    application error could never carry its own (we must send `451 4.7.0`, `452 4.3.1`, pass the
//    upstream's codes through, ...). A reply text that starts with an enhanced code keeps it (and
//    does not get a second one); smtp-server's own shutdown reply becomes our `421 4.3.2`.
// 2. smtp-server writes every reply with its own socket.write: a pipelined MAIL/RCPT/DATA group
//    costs three write syscalls, which the profile showed as the proxy's largest single cost
//    (docs/performance.md). Replies are corked and flushed once per event-loop turn instead, so a
//    pipelined group's replies leave in one write (RFC 2920 allows, and clients expect, that).
// 3. smtp-server advertises AUTH in EHLO even where it will refuse it until STARTTLS (requireTls);
//    RFC 3207 says to offer AUTH only where it is allowed, so that line is dropped there.
import type { Socket } from 'node:net';
import { smtpReply } from '../shared/replies.js';
import { authNeedsTls, isUpgrading, socketOf, wrapSend, type Connection } from './smtp-server-internals.js';

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;
let installed = false;

/** Sockets corked in this event-loop turn; flushed together in the check phase. */
let corked = new Set<Socket>();
let flushScheduled = false;

function flush(): void {
  const list = corked;
  corked = new Set();
  flushScheduled = false;
  for (const s of list) if (!s.destroyed) s.uncork();
}

function corkForThisTurn(conn: Connection, code: number): void {
  const s = socketOf(conn);
  // 220 may precede a STARTTLS upgrade (the raw socket is handed to TLS at once), and 221/421 end
  // the connection: those replies go out unbatched, after anything corked before them.
  if (!s || code === 220 || code === 221 || code === 421) {
    if (s && corked.delete(s)) s.uncork();
    return;
  }
  if (corked.has(s) || isUpgrading(conn) || s.destroyed) return;
  s.cork();
  corked.add(s);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flush);
  }
}

export function installReplyPatch(): void {
  if (installed) return;
  installed = true;
  wrapSend(function (original, code, data, context) {
    corkForThisTurn(this, code);
    if (code === 421 && data === 'Server shutting down') {
      const r = smtpReply('SHUTTING_DOWN');
      return original.call(this, r.code, `${r.enhanced} ${r.text}`, false);
    }
    if (typeof data === 'string' && ENHANCED.test(data)) return original.call(this, code, data, false);
    if (code === 250 && Array.isArray(data) && authNeedsTls(this)) {
      data = data.filter((line) => !/^AUTH /.test(line));
    }
    return original.call(this, code, data, context);
  });
}
