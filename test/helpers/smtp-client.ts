// A promise wrapper around nodemailer's SMTPConnection: a real, independent SMTP client for tests.
import SMTPConnection from 'nodemailer/lib/smtp-connection';

export interface ClientOptions {
  port: number;
  host?: string;
  /** the client's own address (to come from a trusted network) */
  localAddress?: string;
  secure?: boolean;
  /** use STARTTLS when offered (default: ignore it) */
  starttls?: boolean;
  ca?: string;
  name?: string;
}

export interface SendOutcome {
  ok: boolean;
  code?: number;
  response: string;
}

export class TestClient {
  readonly conn: SMTPConnection;
  constructor(opts: ClientOptions) {
    this.conn = new SMTPConnection({
      host: opts.host ?? '127.0.0.1',
      port: opts.port,
      localAddress: opts.localAddress,
      secure: opts.secure ?? false,
      ignoreTLS: !opts.starttls,
      requireTLS: opts.starttls ?? false,
      tls: opts.ca ? { ca: opts.ca, servername: 'localhost' } : { rejectUnauthorized: false },
      name: opts.name ?? 'client.test',
      connectionTimeout: 10_000,
      greetingTimeout: 10_000,
      socketTimeout: 60_000,
    } as any);
    this.conn.on('error', () => undefined);
  }

  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.conn.once('error', reject);
      this.conn.connect(() => {
        this.conn.off('error', reject);
        resolve();
      });
    });
  }

  login(user: string, pass: string, method: 'PLAIN' | 'LOGIN' = 'PLAIN'): Promise<SendOutcome> {
    return new Promise((resolve) => {
      this.conn.login({ user, pass, method } as any, (err: any) => {
        if (err)
          resolve({ ok: false, code: err.responseCode, response: String(err.response ?? err.message) });
        else resolve({ ok: true, response: '235' });
      });
    });
  }

  send(from: string, to: string | string[], message: string | Buffer): Promise<SendOutcome> {
    return new Promise((resolve) => {
      this.conn.send({ from, to } as any, message, (err: any, info: any) => {
        if (err)
          resolve({ ok: false, code: err.responseCode, response: String(err.response ?? err.message) });
        else if (info.rejected?.length)
          resolve({
            ok: false,
            code: 550,
            response: `rejected ${(info.rejectedErrors ?? []).map((e: any) => e.response).join('; ')}; sent: ${info.response}`,
          });
        else resolve({ ok: true, code: 250, response: String(info.response) });
      });
    });
  }

  close(): void {
    try {
      this.conn.quit();
    } catch {
      this.conn.close();
    }
  }
}

let seq = 0;
/** A small RFC 5322 message with a unique Message-ID (returned) for loss checks. */
export function makeMessage(
  from: string,
  to: string,
  opts: { id?: string; body?: string } = {},
): { id: string; raw: string } {
  const id = opts.id ?? `<t${process.pid}-${Date.now()}-${++seq}@test>`;
  const raw =
    `From: ${from}\r\nTo: ${to}\r\nSubject: test ${seq}\r\nMessage-ID: ${id}\r\n` +
    `Date: ${new Date().toUTCString()}\r\n\r\n${opts.body ?? 'Hello.\r\n.leading dot line\r\nBye.\r\n'}`;
  return { id, raw };
}

export interface OneMessage {
  login: SendOutcome;
  /** the reply to the message; absent when the login was refused */
  sent?: SendOutcome;
  /** the message's Message-ID */
  id: string;
  /** the message as sent (or as it would have been) */
  raw: string;
  /** what the client saw last: the login's refusal, else the reply to the message */
  reply: SendOutcome;
}

/**
 * Connects, logs in as `user` and, when that works, sends one message (from `user` unless `from`
 * says otherwise) to `to`; always closes the connection.
 */
export async function loginAndSend(
  server: number | ClientOptions,
  user: string,
  password: string,
  opts: { from?: string; to?: string; body?: string; method?: 'PLAIN' | 'LOGIN' } = {},
): Promise<OneMessage> {
  const c = new TestClient(typeof server === 'number' ? { port: server } : server);
  await c.connect();
  try {
    const from = opts.from ?? user;
    const to = opts.to ?? 'rcpt@example.net';
    const m = makeMessage(from, to, { body: opts.body });
    const login = await c.login(user, password, opts.method);
    if (!login.ok) return { login, id: m.id, raw: m.raw, reply: login };
    const sent = await c.send(from, to, m.raw);
    return { login, sent, id: m.id, raw: m.raw, reply: sent };
  } finally {
    c.close();
  }
}
