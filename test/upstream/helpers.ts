// Test upstreams: `smtp-server` as a real XOAUTH2 server, and FakeUpstream, a tiny raw SMTP server
// whose every reply can be scripted (exact texts, drops, delays) and which records what arrived.
import net from 'node:net';
import { SMTPServer } from 'smtp-server';
import { silentLogger } from '../../src/shared/log.js';
import { detachedMetrics, type Metrics } from '../../src/metrics/metrics.js';
import { UpstreamPools } from '../../src/upstream/pools.js';
import type { TokenSource, UpstreamAccount } from '../../src/upstream/types.js';
import type { Security } from '../../src/config/types.js';

export const USER = 'alice@example.com';
export const GOOD_TOKEN = 'good-token';

export function account(port: number, over: Partial<UpstreamAccount> = {}): UpstreamAccount {
  return {
    email: USER,
    providerName: 'test',
    smtp: { host: '127.0.0.1', port, security: 'none', rejectUnauthorized: true },
    ehloName: 'proxy.test',
    maxConnections: 3,
    maxMessagesPerConnection: 100,
    messagesPerMinute: 0,
    idleTimeoutMs: 60_000,
    maxAgeMs: 0,
    acquireTimeoutMs: 5_000,
    commandTimeoutMs: 5_000,
    ...over,
  };
}

/** Hands out the queued tokens in order (the last one repeats) and records invalidations. */
export class FakeTokens implements TokenSource {
  readonly invalidated: [string, string][] = [];
  calls = 0;
  constructor(private readonly queue: string[] = [GOOD_TOKEN]) {}
  async getToken(_email: string): Promise<string> {
    this.calls++;
    return this.queue.length > 1 ? this.queue.shift()! : this.queue[0];
  }
  invalidate(email: string, token: string): void {
    this.invalidated.push([email, token]);
  }
}

export function makePools(tokens: TokenSource = new FakeTokens(), metrics: Metrics = detachedMetrics()) {
  return new UpstreamPools({ tokens, log: silentLogger, metrics });
}

export const env = (to: string[] = ['bob@example.net'], from = USER) => ({ from, to, size: 100 });
export const msg = (text = 'Subject: hi\r\n\r\nhello\r\n') => [Buffer.from(text)];
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitUntil(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await sleep(10);
  }
}

// -- smtp-server ----------------------------------------------------------------------------------

export interface StoredMessage {
  from: string;
  to: string[];
  data: Buffer;
}

export interface Sink {
  port: number;
  messages: StoredMessage[];
  auths: { user: string; token: string }[];
  connections: number;
  open: number;
  maxOpen: number;
  close(): Promise<void>;
}

export async function startSink(
  opts: {
    security?: Security;
    cert?: { cert: string; key: string };
    tokens?: string[];
    /** rcpt address -> [code, text] refusal */
    refuse?: Record<string, [number, string]>;
    dataDelayMs?: number;
  } = {},
): Promise<Sink> {
  const security = opts.security ?? 'none';
  const valid = new Set(opts.tokens ?? [GOOD_TOKEN]);
  const sink: Sink = {
    port: 0,
    messages: [],
    auths: [],
    connections: 0,
    open: 0,
    maxOpen: 0,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
  const server = new SMTPServer({
    logger: false,
    secure: security === 'tls',
    key: opts.cert?.key,
    cert: opts.cert?.cert,
    hideSTARTTLS: security === 'none',
    allowInsecureAuth: security === 'none',
    authMethods: ['XOAUTH2'],
    size: 10 * 1024 * 1024,
    onConnect(_s, cb) {
      sink.connections++;
      sink.open++;
      sink.maxOpen = Math.max(sink.maxOpen, sink.open);
      cb();
    },
    onClose(_s, cb) {
      sink.open--;
      cb();
    },
    onAuth(auth, _s, cb) {
      sink.auths.push({ user: auth.username!, token: auth.accessToken! });
      // a bare callback makes smtp-server answer like Google: 334 <base64 JSON>, then 535
      if (auth.username === USER && valid.has(auth.accessToken!)) cb(null, { user: auth.username });
      else cb(null, { user: undefined });
    },
    onRcptTo(addr, _s, cb) {
      const r = opts.refuse?.[addr.address];
      if (!r) return cb();
      const err = Object.assign(new Error(r[1]), { responseCode: r[0] });
      cb(err);
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const store = () => {
          sink.messages.push({
            from: (session.envelope.mailFrom as { address: string }).address,
            to: session.envelope.rcptTo.map((r) => r.address),
            data: Buffer.concat(chunks),
          });
          cb(null);
        };
        if (opts.dataDelayMs) setTimeout(store, opts.dataDelayMs);
        else store();
      });
    },
  });
  server.on('error', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  sink.port = (server.server.address() as net.AddressInfo).port;
  return sink;
}

export async function selfSignedCert(): Promise<{ cert: string; key: string }> {
  const { generate } = await import('selfsigned');
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    extensions: [
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

// -- FakeUpstream ---------------------------------------------------------------------------------

export interface FakeConn {
  id: number;
  remoteAddress: string;
  /** every chunk as it arrived (to see what one write carried) */
  chunks: Buffer[];
  commands: string[];
  messages: number;
  closed: boolean;
  socket: net.Socket;
}

type Reply = string | 'drop' | 'silent' | undefined;

export interface FakeOptions {
  /** null: never greet */
  greeting?: string | null;
  caps?: string[];
  /** reply to AUTH XOAUTH2; a pair answers the initial command and then the client's next line */
  auth?: (user: string, token: string, conn: FakeConn) => string | [string, string];
  /** override the reply to any command line ('drop' = destroy the socket, 'silent' = no reply) */
  onCommand?: (line: string, conn: FakeConn) => Reply | Promise<Reply>;
  /** reply to the end of a message body */
  onMessage?: (m: StoredMessage, conn: FakeConn) => Reply | Promise<Reply>;
}

export class FakeUpstream {
  port = 0;
  readonly conns: FakeConn[] = [];
  /** messages whose body arrived, whatever the reply */
  readonly received: StoredMessage[] = [];
  /** messages answered 2xx */
  readonly accepted: StoredMessage[] = [];
  open = 0;
  maxOpen = 0;
  private server!: net.Server;

  static async start(opts: FakeOptions = {}): Promise<FakeUpstream> {
    const f = new FakeUpstream(opts);
    f.server = net.createServer((s) => f.handle(s));
    await new Promise<void>((r) => f.server.listen(0, '127.0.0.1', () => r()));
    f.port = (f.server.address() as net.AddressInfo).port;
    return f;
  }

  private constructor(private readonly opts: FakeOptions) {}

  close(): Promise<void> {
    for (const c of this.conns) c.socket.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }

  /** all commands of all connections, in arrival order per connection */
  commands(): string[] {
    return this.conns.flatMap((c) => c.commands);
  }

  private handle(socket: net.Socket): void {
    const conn: FakeConn = {
      id: this.conns.length,
      remoteAddress: socket.remoteAddress ?? '',
      chunks: [],
      commands: [],
      messages: 0,
      closed: false,
      socket,
    };
    this.conns.push(conn);
    this.open++;
    this.maxOpen = Math.max(this.maxOpen, this.open);
    socket.on('error', () => {});
    socket.on('close', () => {
      conn.closed = true;
      this.open--;
    });
    let buf = '';
    let mode: 'cmd' | 'data' = 'cmd';
    let pendingAuth: string | null = null;
    let from = '';
    let to: string[] = [];
    let running = false;
    const send = (r: string) => {
      if (!socket.destroyed) socket.write(r + '\r\n');
    };
    const act = (r: Reply, dflt: string): string | null => {
      const out = r ?? dflt;
      if (out === 'drop') {
        socket.destroy();
        return null;
      }
      if (out !== 'silent') send(out);
      return out;
    };
    const pump = async () => {
      if (running) return;
      running = true;
      try {
        while (!socket.destroyed) {
          if (mode === 'data') {
            const acc = '\r\n' + buf;
            const end = acc.indexOf('\r\n.\r\n');
            if (end < 0) break;
            const raw = acc.slice(2, end + 2);
            buf = acc.slice(end + 5);
            mode = 'cmd';
            const body = raw
              .split('\r\n')
              .map((l) => (l.startsWith('.') ? l.slice(1) : l))
              .join('\r\n');
            const m: StoredMessage = { from, to, data: Buffer.from(body, 'latin1') };
            this.received.push(m);
            conn.messages++;
            const r = act(await this.opts.onMessage?.(m, conn), '250 2.0.0 OK queued as 123');
            if (r && r.startsWith('2')) this.accepted.push(m);
            from = '';
            to = [];
            continue;
          }
          const nl = buf.indexOf('\r\n');
          if (nl < 0) break;
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 2);
          conn.commands.push(line.startsWith('AUTH ') ? 'AUTH' : line);
          if (pendingAuth !== null) {
            send(pendingAuth);
            pendingAuth = null;
            continue;
          }
          const over = await this.opts.onCommand?.(line, conn);
          const verb = line.split(/[\s:]/)[0].toUpperCase();
          let dflt: string;
          switch (verb) {
            case 'EHLO': {
              const caps = this.opts.caps ?? ['PIPELINING', 'SIZE 10485760', '8BITMIME', 'AUTH XOAUTH2'];
              dflt = ['fake.test greets you', ...caps]
                .map((l, i, a) => `250${i < a.length - 1 ? '-' : ' '}${l}`)
                .join('\r\n');
              break;
            }
            case 'AUTH': {
              const decoded = Buffer.from(line.split(' ')[2] ?? '', 'base64').toString();
              const fields = decoded.split('\x01');
              const user = fields[0].startsWith('user=') ? fields[0].slice(5) : '';
              const token = fields[1]?.startsWith('auth=Bearer ') ? fields[1].slice(12) : '';
              const wellFormed = fields.length === 4 && fields[2] === '' && fields[3] === '';
              const r = wellFormed
                ? (this.opts.auth?.(user, token, conn) ?? '235 2.7.0 Accepted')
                : '501 5.5.2 Malformed XOAUTH2';
              if (Array.isArray(r)) {
                pendingAuth = r[1];
                dflt = r[0];
              } else dflt = r;
              break;
            }
            case 'MAIL':
              dflt = '250 2.1.0 OK';
              break;
            case 'RCPT':
              dflt = '250 2.1.5 OK';
              break;
            case 'DATA':
              dflt =
                to.length || (over && over.startsWith('2'))
                  ? '354 Go ahead'
                  : '554 5.5.1 No valid recipients';
              break;
            case 'RSET':
            case 'NOOP':
              dflt = '250 2.0.0 OK';
              break;
            case 'QUIT':
              dflt = '221 2.0.0 Bye';
              break;
            default:
              dflt = '502 5.5.2 Unknown command';
          }
          const r = act(over, dflt);
          if (r === null) break;
          if (verb === 'MAIL' && r.startsWith('2')) from = /<([^>]*)>/.exec(line)?.[1] ?? '';
          if (verb === 'RCPT' && r.startsWith('2')) to.push(/<([^>]*)>/.exec(line)?.[1] ?? '');
          if (verb === 'DATA' && r.startsWith('354')) mode = 'data';
          if (verb === 'RSET') {
            from = '';
            to = [];
          }
          if (verb === 'QUIT') socket.end();
        }
      } finally {
        running = false;
      }
      // bytes may have arrived while a hook was awaited
      if (
        !socket.destroyed &&
        buf.length &&
        (mode === 'data' ? ('\r\n' + buf).includes('\r\n.\r\n') : buf.includes('\r\n'))
      )
        void pump();
    };
    socket.on('data', (chunk: Buffer) => {
      conn.chunks.push(chunk);
      buf += chunk.toString('latin1');
      void pump();
    });
    if (this.opts.greeting !== null) send(this.opts.greeting ?? '220 fake.test ESMTP ready');
  }
}

/** A FakeUpstream and pools with one account on it; both are closed by `cleanup` (run afterEach). */
export async function fakeWithPools(
  cleanup: (() => Promise<void> | void)[],
  opts: Parameters<typeof FakeUpstream.start>[0] = {},
  over: Partial<UpstreamAccount> = {},
  tokens = new FakeTokens(),
) {
  const fake = await FakeUpstream.start(opts);
  const pools = makePools(tokens);
  pools.setAccounts([account(fake.port, over)]);
  cleanup.push(
    () => fake.close(),
    () => pools.close(1000),
  );
  return { fake, pools, tokens };
}
