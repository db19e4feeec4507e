// Test upstreams: `smtp-server` as a real XOAUTH2 server, and pools on a FakeSmtpServer (whose every
// reply can be scripted, see test/helpers/fake-smtp-server.ts).
import net from 'node:net';
import tls from 'node:tls';
import { SMTPServer } from 'smtp-server';
import { silentLogger } from '../../src/shared/log.js';
import { detachedMetrics, type Metrics } from '../../src/metrics/metrics.js';
import { UpstreamPools } from '../../src/upstream/pools.js';
import type { PoolCoordination } from '../../src/upstream/pool.js';
import { InProcessHub } from '../../src/coordination/in-process.js';
import type { StateStore } from '../../src/state/store.js';
import type { TokenSource, UpstreamAccount } from '../../src/upstream/types.js';
import type { Security } from '../../src/config/types.js';
import { FakeSmtpServer, type FakeSmtpOptions, type StoredMessage } from '../helpers/fake-smtp-server.js';

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

/** the in-process coordinator's leases and rate gates (pools use no token storage) */
export function poolCoordination(): PoolCoordination {
  return new InProcessHub({ store: undefined as unknown as StateStore, log: silentLogger }).member();
}

export function makePools(
  tokens: TokenSource = new FakeTokens(),
  metrics: Metrics = detachedMetrics(),
  coord: PoolCoordination = poolCoordination(),
) {
  return new UpstreamPools({ tokens, log: silentLogger, metrics, coord });
}

export const env = (to: string[] = ['bob@example.net'], from = USER) => ({ from, to, size: 100 });
export const msg = (text = 'Subject: hi\r\n\r\nhello\r\n') => [Buffer.from(text)];

// -- smtp-server ----------------------------------------------------------------------------------

export interface Sink {
  port: number;
  messages: StoredMessage[];
  auths: { user: string; token: string }[];
  connections: number;
  open: number;
  maxOpen: number;
  /** per TLS connection (implicit or STARTTLS): whether it resumed an earlier TLS session */
  resumed: boolean[];
  close(): Promise<void>;
}

export async function startSink(
  opts: {
    security?: Security;
    cert?: { cert: string; key: string };
    tokens?: string[];
    /** the mailboxes it lets in (default: USER) */
    users?: string[];
    /** rcpt address -> [code, text] refusal */
    refuse?: Record<string, [number, string]>;
    dataDelayMs?: number;
  } = {},
): Promise<Sink> {
  const security = opts.security ?? 'none';
  const valid = new Set(opts.tokens ?? [GOOD_TOKEN]);
  const users = new Set(opts.users ?? [USER]);
  const sink: Sink = {
    port: 0,
    messages: [],
    auths: [],
    connections: 0,
    open: 0,
    maxOpen: 0,
    resumed: [],
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
    onSecure(socket, _s, cb) {
      sink.resumed.push((socket as tls.TLSSocket).isSessionReused());
      cb();
    },
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
      if (users.has(auth.username!) && valid.has(auth.accessToken!)) cb(null, { user: auth.username });
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

/** A FakeSmtpServer and pools with one account on it; both are closed by `cleanup` (run afterEach). */
export async function fakeWithPools(
  cleanup: (() => Promise<void> | void)[],
  opts: FakeSmtpOptions = {},
  over: Partial<UpstreamAccount> = {},
  tokens = new FakeTokens(),
) {
  const fake = await FakeSmtpServer.start(opts);
  const pools = makePools(tokens);
  pools.setAccounts([account(fake.port, over)]);
  cleanup.push(
    () => fake.close(),
    () => pools.close(1000),
  );
  return { fake, pools, tokens };
}

/**
 * A TLS server on loopback that says one line and closes; `servers` collects it for the caller's
 * afterEach/afterAll to close. Resolves to its port.
 */
export async function lineTlsServer(
  servers: tls.Server[],
  pair: { cert: string; key: string },
  maxVersion?: tls.SecureVersion,
): Promise<number> {
  const s = tls.createServer({ ...pair, maxVersion }, (c) => {
    c.on('error', () => {});
    c.end('hi\r\n');
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as net.AddressInfo).port;
}
