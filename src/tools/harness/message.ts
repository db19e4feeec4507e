// Benchmark messages: a small per-message header block (unique Message-ID) followed by a filler
// body shared by every message, so building a 100 KB message costs one small string, not 100 KB.

export interface MessageTemplate {
  /** exact total size of header + body in bytes (the DATA terminator not included) */
  size: number;
  /** the recipients of every message */
  recipients: string[];
  /** `Message-ID` of message n (angle brackets included) */
  messageId(n: number): string;
  /**
   * Message n from `from` as [head, tail]: head = header block + first body line (everything that
   * differs per message), tail = a shared slice of filler lines. head.length + tail.length === size
   * (unless size is below the header length). Both end in CRLF.
   */
  parts(n: number, from: string): [Buffer, Buffer];
}

const LINE = 'x'.repeat(76) + '\r\n'; // 78 bytes; no line starts with a dot, so no dot-stuffing needed

export function benchMessageId(n: number, runId: string): string {
  return `<bench-${n}-${runId}@bench>`;
}

export function makeTemplate(opts: { size: number; recipients: number; runId: string }): MessageTemplate {
  const recipients = Array.from({ length: opts.recipients }, (_, i) => `rcpt${i}@bench.example.net`);
  const to = recipients.join(', ');
  const fixedHeaders = `To: ${to}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n`;
  // Filler long enough for any head length; tails are subarrays of it (no copy).
  const maxLines = Math.ceil(opts.size / LINE.length) + 1;
  const filler = Buffer.from(LINE.repeat(maxLines), 'latin1');
  const date = new Date().toUTCString().replace('GMT', '+0000');
  const headText = (n: number, from: string) =>
    `From: <${from}>\r\n${fixedHeaders}Subject: bench ${n}\r\nDate: ${date}\r\n` +
    `Message-ID: ${benchMessageId(n, opts.runId)}\r\n\r\n`;
  const split = (n: number, from: string): { head: string; tailLen: number } => {
    const h = headText(n, from);
    let rest = opts.size - Buffer.byteLength(h, 'latin1');
    if (rest < 2) return { head: h + 'x\r\n', tailLen: 0 };
    // Body = one short line (in the head, so its length can vary) + whole filler lines.
    const whole = Math.floor(rest / LINE.length);
    rest -= whole * LINE.length;
    if (rest === 1)
      return { head: h + 'x'.repeat(LINE.length - 1) + '\r\n', tailLen: (whole - 1) * LINE.length };
    return { head: rest === 0 ? h : h + 'x'.repeat(rest - 2) + '\r\n', tailLen: whole * LINE.length };
  };
  return {
    size: opts.size,
    recipients,
    messageId: (n) => benchMessageId(n, opts.runId),
    parts: (n, from) => {
      const { head, tailLen } = split(n, from);
      return [Buffer.from(head, 'latin1'), filler.subarray(0, tailLen)];
    },
  };
}
