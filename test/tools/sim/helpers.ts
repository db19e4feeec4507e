import net from 'node:net';
import tls from 'node:tls';
import { Command } from 'commander';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import XOAuth2 from 'nodemailer/lib/xoauth2';
import type { HostPort } from '../../../src/config/types.js';
import { registerSimulateCommand, type Simulator } from '../../../src/tools/sim/index.js';

/**
 * A deliberately dumb SMTP client over a real socket: sends bytes exactly as given and hands back
 * each reply as its raw lines, so tests can assert the provider-style exchange byte for byte.
 */
export class RawSmtp {
  private buf = '';
  private replies: string[][] = [];
  private waiters: { resolve: (r: string[]) => void; reject: (e: Error) => void }[] = [];
  /** every 'data' event as received, to check that a pipelined batch came back in one write */
  readonly chunks: string[] = [];
  closed = false;
  readonly closedPromise: Promise<void>;
  private markClosed!: () => void;

  private constructor(private socket: net.Socket) {
    this.closedPromise = new Promise((r) => (this.markClosed = r));
    this.attach(socket);
  }

  private attach(socket: net.Socket): void {
    socket.setEncoding('utf8');
    socket.on('data', this.onData);
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w.reject(new Error('connection closed'));
      this.markClosed();
    });
  }

  private readonly onData = (text: string): void => {
    this.chunks.push(text);
    this.buf += text;
    let lines: string[] = [];
    let nl: number;
    while ((nl = this.buf.indexOf('\r\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 2);
      lines.push(line);
      if (/^\d{3}(?: |$)/.test(line)) {
        const w = this.waiters.shift();
        if (w) w.resolve(lines);
        else this.replies.push(lines);
        lines = [];
      }
    }
    if (lines.length) this.buf = lines.map((l) => l + '\r\n').join('') + this.buf;
  };

  static async connect(hp: HostPort, opts: { tls?: { ca: string } } = {}): Promise<RawSmtp> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = opts.tls
        ? tls.connect({ host: hp.host, port: hp.port, ca: opts.tls.ca }, () => resolve(s))
        : net.connect(hp, () => resolve(s));
      s.once('error', reject);
    });
    return new RawSmtp(socket);
  }

  /** Next complete reply (all its lines). */
  read(): Promise<string[]> {
    const r = this.replies.shift();
    if (r) return Promise.resolve(r);
    if (this.closed) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  async readN(n: number): Promise<string[][]> {
    const out: string[][] = [];
    for (let i = 0; i < n; i++) out.push(await this.read());
    return out;
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Send one command line and return the reply's lines. */
  async cmd(line: string): Promise<string[]> {
    this.write(line + '\r\n');
    return this.read();
  }

  async starttls(ca: string): Promise<string[]> {
    const r = await this.cmd('STARTTLS');
    if (!r[0]!.startsWith('220')) return r;
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('close');
    const secured = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ socket: this.socket, ca, servername: 'localhost' }, () => resolve(s));
      s.once('error', reject);
    });
    this.socket = secured;
    this.attach(secured);
    return r;
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * A raw client past `354`: connected, EHLO, AUTH PLAIN as `user`, MAIL and one RCPT accepted, DATA
 * started; each step's reply is checked, so a failure names the step.
 */
export async function rawInData(
  port: number,
  user: string,
  password: string,
  rcpt: string,
): Promise<RawSmtp> {
  const c = await RawSmtp.connect({ host: '127.0.0.1', port });
  const step = async (line: string, code: number) => {
    const r = await c.cmd(line);
    if (!r.at(-1)?.startsWith(`${code} `))
      throw new Error(`${line.split(' ')[0]}: expected ${code}, got ${r.join(' | ')}`);
  };
  await c.read();
  await step('EHLO raw.test', 250);
  await step(`AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`).toString('base64')}`, 235);
  await step(`MAIL FROM:<${user}>`, 250);
  await step(`RCPT TO:<${rcpt}>`, 250);
  await step('DATA', 354);
  return c;
}

export const xoauth2 = (user: string, token: string): string =>
  Buffer.from(`user=${user}\x01auth=Bearer ${token}\x01\x01`).toString('base64');

export async function postForm(
  url: string,
  params: Record<string, string>,
): Promise<{ status: number; body: Record<string, any> }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(params).toString(),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

export async function postJson(url: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

export async function getStats(sim: Simulator): Promise<any> {
  const res = await fetch(`http://${sim.http.host}:${sim.http.port}/stats`);
  return res.json();
}

/** An access token for `email` from the simulator's own token endpoint. */
export async function accessToken(sim: Simulator, refreshToken: string): Promise<string> {
  const r = await postForm(sim.tokenUrl, {
    grant_type: 'refresh_token',
    client_id: 'cid',
    refresh_token: refreshToken,
  });
  if (r.status !== 200) throw new Error(`token endpoint: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.access_token;
}

/** Connect, EHLO and AUTH XOAUTH2 on the plain listener (no TLS); returns the client after 235. */
export async function authedClient(sim: Simulator, user: string, token: string): Promise<RawSmtp> {
  const c = await RawSmtp.connect(sim.smtp);
  await c.read();
  await c.cmd('EHLO client.test');
  const r = await c.cmd(`AUTH XOAUTH2 ${xoauth2(user, token)}`);
  if (!r[0]!.startsWith('235')) throw new Error(`AUTH failed: ${r.join(' | ')}`);
  return c;
}

export const ephemeral = { smtp: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 } };

export function message(id: string | null, body = 'Hello.\r\n'): string {
  return (
    `From: a@example.com\r\nTo: b@example.com\r\nSubject: test\r\n` +
    (id === null ? '' : `Message-ID: ${id}\r\n`) +
    `\r\n${body}`
  );
}

/** nodemailer's SMTPConnection (a real, independent client), connected and logged in with XOAUTH2. */
export async function nodemailerLogin(
  opts: ConstructorParameters<typeof SMTPConnection>[0],
  user: string,
  token: string,
): Promise<SMTPConnection> {
  const conn = new SMTPConnection(opts);
  try {
    await new Promise<void>((resolve, reject) => {
      conn.once('error', reject);
      conn.connect(() => resolve());
    });
    await new Promise<void>((resolve, reject) =>
      conn.login({ oauth2: new XOAuth2({ user, accessToken: token }) }, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    return conn;
  } catch (err) {
    conn.close();
    throw err;
  }
}

/** A program with just `simulate`, whose errors are collected instead of exiting the process. */
export function simulateProgram(): { cmd: Command; errors: string[] } {
  const errors: string[] = [];
  const cmd = new Command()
    .exitOverride()
    .configureOutput({ writeErr: (s) => errors.push(s), writeOut: () => {} });
  registerSimulateCommand(cmd);
  return { cmd, errors };
}
