// A tiny OAuth2 token endpoint on 127.0.0.1:0 for tests: records every request, tracks how many are
// in flight at once, and answers through a replaceable handler. useTokenServer() closes them for you.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach } from 'vitest';
import { sleep } from './wait.js';

export interface TokenRequest {
  path: string;
  params: URLSearchParams;
  at: number;
}

export interface TokenResponse {
  status?: number;
  body?: unknown;
  /** raw text instead of JSON */
  raw?: string;
  delayMs?: number;
  /** never answer (timeouts) */
  hang?: boolean;
  /** extra response headers */
  headers?: Record<string, string>;
}

export type Handler = (req: TokenRequest, n: number) => TokenResponse | Promise<TokenResponse>;

export interface TokenServer {
  url: string;
  origin: string;
  requests: TokenRequest[];
  /** TCP connections accepted so far */
  connections: number;
  maxConcurrent: number;
  handler: Handler;
  countFor(refreshToken: string): number;
  close(): Promise<void>;
}

let seq = 0;
/** Issues `at-<n>` tokens living `lifetimeSec`. */
export const okHandler =
  (lifetimeSec = 3600, extra: Record<string, unknown> = {}): Handler =>
  () => ({ body: { access_token: `at-${++seq}`, expires_in: lifetimeSec, token_type: 'Bearer', ...extra } });

export async function startTokenServer(handler: Handler = okHandler()): Promise<TokenServer> {
  let concurrent = 0;
  const sockets = new Set<import('node:net').Socket>();
  const state: Omit<TokenServer, 'url' | 'origin' | 'close' | 'countFor'> = {
    requests: [],
    connections: 0,
    maxConcurrent: 0,
    handler,
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      concurrent++;
      state.maxConcurrent = Math.max(state.maxConcurrent, concurrent);
      const tr: TokenRequest = {
        path: req.url ?? '',
        params: new URLSearchParams(Buffer.concat(chunks).toString()),
        at: Date.now(),
      };
      state.requests.push(tr);
      const r = await state.handler(tr, state.requests.length);
      if (r.hang) return; // the socket is destroyed by close()
      if (r.delayMs) await sleep(r.delayMs);
      concurrent--;
      res.writeHead(r.status ?? 200, { 'content-type': 'application/json', ...r.headers });
      res.end(r.raw ?? JSON.stringify(r.body ?? {}));
    });
  });
  server.on('connection', (s) => {
    state.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  return Object.assign(state, {
    origin,
    url: `${origin}/token`,
    countFor: (rt: string) => state.requests.filter((r) => r.params.get('refresh_token') === rt).length,
    close: () =>
      new Promise<void>((ok) => {
        for (const s of sockets) s.destroy();
        server.close(() => ok());
      }),
  });
}

/** startTokenServer, for a test file: every server it started is closed after each test. */
export function useTokenServer(): (handler?: Handler) => Promise<TokenServer> {
  const open: TokenServer[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
  });
  return async (handler) => {
    const s = await startTokenServer(handler);
    open.push(s);
    return s;
  };
}
