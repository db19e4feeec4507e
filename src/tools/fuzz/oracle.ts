// Is what the proxy answered well-formed SMTP? Each reply line is `NNN SP text` or `NNN-text`, CRLF
// terminated, with a 2xx-5xx code, lines of one multi-line reply share the code, and no line is
// longer than RFC 5321 allows (512 octets with CRLF).

export interface ReplyCheck {
  ok: boolean;
  replies: { code: number; text: string }[];
  problem?: string;
}

const LINE = /^([2-5]\d\d)([ -])(.*)$/s;

export function checkReplies(raw: Buffer): ReplyCheck {
  const text = raw.toString('latin1');
  const replies: { code: number; text: string }[] = [];
  if (text.length && !text.endsWith('\r\n'))
    return { ok: false, replies, problem: `ends without CRLF: ${JSON.stringify(text.slice(-60))}` };
  const lines = text.length ? text.slice(0, -2).split('\r\n') : [];
  let open: number | undefined;
  for (const line of lines) {
    if (line.length + 2 > 512)
      return { ok: false, replies, problem: `reply line of ${line.length + 2} octets` };
    if (/[\r\n\0]/.test(line))
      return { ok: false, replies, problem: `bare CR/LF/NUL in ${JSON.stringify(line.slice(0, 80))}` };
    const m = LINE.exec(line);
    if (!m)
      return { ok: false, replies, problem: `not an SMTP reply line: ${JSON.stringify(line.slice(0, 80))}` };
    const code = Number(m[1]);
    if (open !== undefined && open !== code)
      return { ok: false, replies, problem: `multi-line reply changes code ${open} -> ${code}` };
    if (m[2] === '-') open = code;
    else {
      open = undefined;
      replies.push({ code, text: line });
    }
  }
  if (open !== undefined) return { ok: false, replies, problem: 'multi-line reply never finished' };
  return { ok: true, replies };
}

/** The proxy's reply for a delivered message (docs/design.md, principle 10: 250 only after the upstream's 250). */
export const isDeliveredReply = (r: { code: number; text: string }) =>
  r.code === 250 && / upstream: /.test(r.text);
