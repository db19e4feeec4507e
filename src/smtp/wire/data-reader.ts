// The body of DATA, read straight from the socket's buffers (RFC 5321 4.5.2): the escape dot of a
// line that starts with one is dropped, and the message ends at CRLF "." CRLF, nothing else. A bare
// LF never ends a message (so "\n.\n" cannot end DATA early and smuggle commands past it: the
// 2023 SMTP smuggling class). The content handed on is subarrays of the input, never copies, except
// for the few bytes at a chunk boundary that cannot be judged until the next chunk arrives.
const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

/** How the bytes before the next one ended: mid-line, or a line break (bare LF, or CRLF). */
const enum LineStart {
  None,
  Lf,
  CrLf,
}

export class DataReader {
  /** content bytes handed on so far (unstuffed; the message's size) */
  bytes = 0;
  /** bytes held back at a chunk boundary: they start at a line start */
  private carry: Buffer | undefined;
  /** what precedes `carry`, or the next chunk when there is none; DATA starts as after a CRLF */
  private lineStart = LineStart.CrLf;
  /** the last byte handed on was CR (a chunk boundary between CR and LF) */
  private lastCr = false;

  constructor(private readonly content: (chunk: Buffer) => void) {}

  /**
   * Feed the next bytes of the connection. Returns undefined while the message goes on, or the
   * bytes after its terminator (possibly empty: pipelined commands) once it has ended.
   */
  feed(input: Buffer): Buffer | undefined {
    const buf = this.carry ? Buffer.concat([this.carry, input]) : input;
    this.carry = undefined;
    const len = buf.length;
    let start = 0; // first byte not yet handed on
    let from = 0; // where to look for the next LF
    let ls = -1; // a line start to examine
    let crlf = false;
    if (this.lineStart !== LineStart.None) {
      ls = 0;
      crlf = this.lineStart === LineStart.CrLf;
    }
    for (;;) {
      if (ls < 0) {
        const lf = buf.indexOf(LF, from);
        if (lf < 0) break;
        ls = lf + 1;
        crlf = lf > 0 ? buf[lf - 1] === CR : this.lastCr;
      }
      if (ls >= len) {
        // the chunk ends at a line start: the next chunk's first byte decides
        this.hand(buf, start, len);
        this.lineStart = crlf ? LineStart.CrLf : LineStart.Lf;
        return undefined;
      }
      if (buf[ls] !== DOT) {
        from = ls;
        ls = -1;
        continue;
      }
      // a dot at a line start: an escape (".."), the terminator (CRLF "." CRLF) or content
      if (ls + 1 >= len || (crlf && buf[ls + 1] === CR && ls + 2 >= len))
        return this.holdBack(buf, start, ls, crlf);
      const next = buf[ls + 1];
      if (next === DOT) {
        this.hand(buf, start, ls);
        start = ls + 1; // the escape dot is dropped; the second dot is content
        from = ls + 2;
        ls = -1;
        continue;
      }
      if (crlf && next === CR && buf[ls + 2] === LF) {
        this.hand(buf, start, ls);
        return buf.subarray(ls + 3);
      }
      from = ls + 1;
      ls = -1;
    }
    this.hand(buf, start, len);
    this.lineStart = LineStart.None;
    return undefined;
  }

  private holdBack(buf: Buffer, start: number, ls: number, crlf: boolean): undefined {
    this.hand(buf, start, ls);
    this.carry = Buffer.from(buf.subarray(ls)); // at most ".\r": copied, the input may be large
    this.lineStart = crlf ? LineStart.CrLf : LineStart.Lf;
    return undefined;
  }

  private hand(buf: Buffer, from: number, to: number): void {
    if (to <= from) return;
    this.bytes += to - from;
    this.lastCr = buf[to - 1] === CR;
    this.content(from === 0 && to === buf.length ? buf : buf.subarray(from, to));
  }
}
