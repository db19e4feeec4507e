// A client that authenticates, starts a message and disappears in the middle of DATA.
import net from 'node:net';

/** Resolves once the socket is destroyed mid-DATA; rejects if the proxy refused a step first. */
export async function vanishMidData(o: {
  port: number;
  user: string;
  password: string;
  id: string;
  /** bytes of body sent before vanishing (0 = right after the 354) */
  bodyBytes: number;
}): Promise<void> {
  const s = net.connect({ host: '127.0.0.1', port: o.port });
  s.on('error', () => undefined);
  let buf = '';
  const waiters: ((line: string) => void)[] = [];
  s.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    let nl: number;
    while ((nl = buf.indexOf('\r\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 2);
      if (line[3] !== '-') waiters.shift()?.(line);
    }
  });
  const closed = new Promise<never>((_, reject) =>
    s.once('close', () => reject(new Error('closed by the proxy'))),
  );
  closed.catch(() => undefined);
  const reply = () => Promise.race([new Promise<string>((r) => waiters.push(r)), closed]);
  const step = async (cmd: string | null, want: RegExp) => {
    if (cmd !== null) s.write(cmd + '\r\n');
    const line = await reply();
    if (!want.test(line)) throw new Error(`${cmd ?? 'greeting'}: ${line}`);
  };
  try {
    await step(null, /^220/);
    await step('EHLO vanishing.test', /^250/);
    const plain = Buffer.from(`\0${o.user}\0${o.password}`).toString('base64');
    await step(`AUTH PLAIN ${plain}`, /^235/);
    await step(`MAIL FROM:<${o.user}>`, /^250/);
    await step('RCPT TO:<someone@example.net>', /^250/);
    await step('DATA', /^354/);
    const head = `From: <${o.user}>\r\nTo: <someone@example.net>\r\nSubject: vanishing\r\nMessage-ID: ${o.id}\r\n\r\n`;
    const body = Buffer.alloc(o.bodyBytes, 'x').toString();
    s.write(head + body);
    await new Promise((r) => setTimeout(r, 20));
  } finally {
    s.destroy();
  }
}
