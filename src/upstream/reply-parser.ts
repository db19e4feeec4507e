// Incremental SMTP reply parser working on Buffers straight from the socket.
// Handles replies split across chunks, several replies in one chunk and multi-line (`250-...`)
// replies. Only a line cut by a chunk boundary is copied; everything else is sliced in place.
import type { SmtpReply } from '../shared/smtp-reply.js';

/** RFC 5321 says 512 octets per reply line; real servers go beyond, so allow plenty but not unbounded. */
const MAX_LINE = 64 * 1024;
/** A multi-line reply longer than this is a broken or hostile peer. */
const MAX_LINES = 1000;

export class ReplyParseError extends Error {
  readonly code = 'UPSTREAM_PROTOCOL_ERROR';
}

export class ReplyParser {
  private partial: Buffer | null = null;
  private code = 0;
  private lines: string[] = [];

  constructor(private readonly onReply: (r: SmtpReply) => void) {}

  /** true while a reply is half-received (bytes of an unfinished line, or lines of an unfinished reply) */
  get pending(): boolean {
    return this.partial !== null || this.lines.length > 0;
  }

  /** Feed bytes; calls onReply once per complete reply. Throws ReplyParseError on garbage. */
  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.partial) {
      buf = Buffer.concat([this.partial, chunk]);
      this.partial = null;
    }
    let start = 0;
    const len = buf.length;
    for (;;) {
      const nl = buf.indexOf(10, start);
      if (nl < 0) break;
      const end = nl > start && buf[nl - 1] === 13 ? nl - 1 : nl;
      this.line(buf, start, end);
      start = nl + 1;
    }
    if (start < len) {
      if (len - start > MAX_LINE) throw new ReplyParseError('upstream reply line too long');
      // copy: keeping a subarray would pin the whole (possibly large) chunk
      this.partial = Buffer.from(buf.subarray(start));
    }
  }

  private line(buf: Buffer, start: number, end: number): void {
    const d0 = buf[start] - 48;
    const d1 = buf[start + 1] - 48;
    const d2 = buf[start + 2] - 48;
    if (
      end - start < 3 ||
      !(d0 >= 2 && d0 <= 5) ||
      !(d1 >= 0 && d1 <= 9) ||
      !(d2 >= 0 && d2 <= 9) ||
      (end - start > 3 && buf[start + 3] !== 45 /* - */ && buf[start + 3] !== 32) /* space */
    ) {
      throw new ReplyParseError(
        `malformed upstream reply line: ${JSON.stringify(buf.toString('latin1', start, Math.min(end, start + 80)))}`,
      );
    }
    const code = d0 * 100 + d1 * 10 + d2;
    if (this.lines.length > 0 && code !== this.code) {
      throw new ReplyParseError(`upstream reply changed code mid-reply (${this.code} then ${code})`);
    }
    this.code = code;
    this.lines.push(end - start > 4 ? buf.toString('utf8', start + 4, end) : '');
    if (this.lines.length > MAX_LINES) throw new ReplyParseError('upstream reply has too many lines');
    const more = end - start > 3 && buf[start + 3] === 45;
    if (!more) {
      const lines = this.lines;
      this.lines = [];
      this.onReply(buildReply(code, lines));
    }
  }
}

/** Split the enhanced status code off the first line (and off later lines that repeat it). */
export function buildReply(code: number, lines: string[]): SmtpReply {
  const first = lines[0];
  const enhanced = enhancedPrefix(first, code);
  if (!enhanced) return { code, enhanced: '', text: lines.length === 1 ? first : lines.join('\n') };
  const cut = enhanced.length + 1;
  if (lines.length === 1) return { code, enhanced, text: first.slice(cut) };
  const out = new Array<string>(lines.length);
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    out[i] =
      l.startsWith(enhanced) && (l.length === enhanced.length || l[enhanced.length] === ' ')
        ? l.slice(cut)
        : l;
  }
  return { code, enhanced, text: out.join('\n') };
}

/** "5.7.1 text" -> "5.7.1" when its class matches the reply code's class (RFC 3463). */
function enhancedPrefix(line: string, code: number): string {
  const c = line.charCodeAt(0) - 48;
  if (c !== Math.floor(code / 100) || line.charCodeAt(1) !== 46 /* . */) return '';
  let i = 2;
  let n = 0;
  while (i < line.length && isDigit(line.charCodeAt(i)) && n < 3) {
    i++;
    n++;
  }
  if (n === 0 || line.charCodeAt(i) !== 46) return '';
  i++;
  n = 0;
  while (i < line.length && isDigit(line.charCodeAt(i)) && n < 3) {
    i++;
    n++;
  }
  if (n === 0 || (i < line.length && line.charCodeAt(i) !== 32)) return '';
  return line.slice(0, i);
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}
