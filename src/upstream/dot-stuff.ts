// DATA body transparency (RFC 5321 4.5.2) applied while writing: no copy of the message is made,
// the chunks are written as slices with an extra "." inserted before every line that starts with one.

const DOT = Buffer.from('.');
const CRLF = Buffer.from('\r\n');
const END = Buffer.from('.\r\n');
const LF_DOT = Buffer.from('\n.');

export interface ChunkSink {
  write(chunk: Buffer): unknown;
}

/**
 * Write `message` dot-stuffed to `out`, then the terminating `.` line. A missing final CRLF is added
 * (the terminator must start a line). Line starts are tracked across chunk boundaries.
 * Returns the number of message bytes (before stuffing).
 */
export function writeDotStuffed(out: ChunkSink, message: readonly Buffer[]): number {
  let atLineStart = true;
  // last two bytes seen, to know whether the body ended with CRLF even if it was split "\r" | "\n"
  let prev2 = -1;
  let prev1 = -1;
  let total = 0;
  for (let c = 0; c < message.length; c++) {
    const chunk = message[c];
    const len = chunk.length;
    if (len === 0) continue;
    total += len;
    let start = 0;
    if (atLineStart && chunk[0] === 0x2e) out.write(DOT);
    let i = chunk.indexOf(LF_DOT);
    while (i >= 0) {
      out.write(chunk.subarray(start, i + 1));
      out.write(DOT);
      start = i + 1;
      i = chunk.indexOf(LF_DOT, i + 2);
    }
    out.write(start === 0 ? chunk : chunk.subarray(start));
    if (len >= 2) {
      prev2 = chunk[len - 2];
      prev1 = chunk[len - 1];
    } else {
      prev2 = prev1;
      prev1 = chunk[0];
    }
    atLineStart = prev1 === 0x0a;
  }
  if (total > 0 && !(prev2 === 0x0d && prev1 === 0x0a)) out.write(CRLF);
  out.write(END);
  return total;
}
