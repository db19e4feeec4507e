// The loopback redirect of a native app (RFC 8252 sections 7.3 and 8.3): an HTTP listener on
// 127.0.0.1 (never "localhost", which may resolve elsewhere) that takes exactly one authorization
// response on the redirect path, answers the browser with a page it may close, and shuts down.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { codeFromAuthorizationResponse } from './authorization-code.js';
import { GrantError, localGrantError, type GrantContext } from './errors.js';

export interface LoopbackRedirectOptions {
  /** the `state` of the authorization URL */
  expectedState: string;
  /** 0 or absent: a free port chosen by the system (RFC 8252 section 7.3) */
  port?: number;
  /** default "/callback" */
  path?: string;
  /** gives up waiting (the code promise rejects with failure "aborted") */
  signal?: AbortSignal;
  /** for error hints; grant is authorization_code */
  context?: Omit<GrantContext, 'grant'>;
}

export interface LoopbackRedirect {
  /** http://127.0.0.1:PORT/PATH, the redirect_uri for the authorization URL and the code exchange */
  redirectUri: string;
  port: number;
  /**
   * The code of the first response on the path with the right state; rejects with a GrantError for
   * a wrong or missing state (before any code exchange could happen), a provider error
   * (access_denied, ...) or an abort.
   */
  code: Promise<string>;
  /** stops listening (idempotent); a pending `code` rejects as aborted */
  close(): void;
}

export function loopbackRedirectUri(port: number, path = '/callback'): string {
  return `http://127.0.0.1:${port}${path}`;
}

export async function startLoopbackRedirect(opts: LoopbackRedirectOptions): Promise<LoopbackRedirect> {
  const path = opts.path ?? '/callback';
  if (!path.startsWith('/')) throw new RangeError(`redirect path must start with "/", got "${path}"`);
  const sockets = new Set<Socket>();
  let settled = false;
  let resolveCode!: (code: string) => void;
  let rejectCode!: (err: GrantError) => void;
  const code = new Promise<string>((ok, fail) => {
    resolveCode = ok;
    rejectCode = fail;
  });
  code.catch(() => undefined); // a caller that closes without awaiting is not an unhandled rejection

  let redirectUri = '';
  const ctx = (): GrantContext => ({
    flavor: 'generic',
    ...opts.context,
    grant: 'authorization_code',
    redirectUri,
  });

  const server = http.createServer((req, res) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://127.0.0.1');
    } catch {
      return answer(res, 400, 'Bad request.');
    }
    if (url.pathname !== path) return answer(res, 404, 'Not found.');
    if (req.method !== 'GET') return answer(res, 405, 'Method not allowed.');
    if (settled)
      return answer(res, 409, 'This authorization was already handled. You can close this window.');
    settled = true;
    let result: string;
    try {
      result = codeFromAuthorizationResponse(url.searchParams, opts.expectedState, ctx());
    } catch (err) {
      const ge = err as GrantError;
      answer(
        res,
        400,
        `Authorization failed: ${ge.reason}. You can close this window and return to the terminal.`,
      );
      finish(() => rejectCode(ge), res);
      return;
    }
    answer(res, 200, 'Authorization received. You can close this window and return to the terminal.');
    finish(() => resolveCode(result), res);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  const close = () => {
    if (!settled) {
      settled = true;
      rejectCode(localGrantError('aborted', 'stopped waiting for the redirect', ctx()));
    }
    server.close();
    for (const s of sockets) s.destroy();
  };
  // The browser gets its page before the listener goes away.
  const finish = (settle: () => void, res: http.ServerResponse) => {
    settle();
    const later = () => setImmediate(close);
    if (res.writableFinished) later();
    else res.once('finish', later).once('close', later);
  };

  await new Promise<void>((ok, fail) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      fail(
        new Error(
          `cannot listen on 127.0.0.1:${opts.port ?? 0} for the OAuth redirect: ${err.code ?? err.message}`,
        ),
      ),
    );
    server.listen(opts.port ?? 0, '127.0.0.1', () => ok());
  });
  server.on('error', () => undefined); // after listen, errors come with their sockets (already handled)
  const port = (server.address() as AddressInfo).port;
  redirectUri = loopbackRedirectUri(port, path);

  if (opts.signal) {
    if (opts.signal.aborted) close();
    else opts.signal.addEventListener('abort', close, { once: true });
    code.finally(() => opts.signal?.removeEventListener('abort', close)).catch(() => undefined);
  }
  return { redirectUri, port, code, close };
}

function answer(res: http.ServerResponse, status: number, message: string): void {
  const body =
    '<!doctype html><html><head><meta charset="utf-8"><title>xoauth2-proxy</title></head>' +
    `<body><p>${escapeHtml(message)}</p></body></html>`;
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'referrer-policy': 'no-referrer',
    'content-security-policy': "default-src 'none'",
    connection: 'close',
  });
  res.end(body);
}

function escapeHtml(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}
