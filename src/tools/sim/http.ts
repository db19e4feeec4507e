// The simulator's HTTP side: a router over the OAuth endpoints (token, authorize, device), the
// verification page, /stats and /control.
import http from 'node:http';
import { authorizeGet, authorizePost } from './authorize.js';
import { deviceAuthorization, deviceLoginGet, deviceLoginPost } from './device.js';
import type { PageReply } from './html.js';
import type { Endpoint, OAuthContext } from './oauth-context.js';
import { handleTokenRequest } from './token.js';

const MAX_BODY = 1 << 20;

/** Microsoft's per-tenant paths, as in https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token. */
const TENANT_PATH = /^\/([A-Za-z0-9][A-Za-z0-9.-]*)\/oauth2\/v2\.0\/(authorize|token|devicecode)$/;

type OAuthRoute = 'authorize' | 'token' | 'devicecode' | 'devicelogin';

/** Which OAuth endpoint a path names, in this style; undefined for the other paths. */
function oauthRoute(
  ctx: OAuthContext,
  pathname: string,
): { route: OAuthRoute; endpoint: Endpoint } | undefined {
  const url = ctx.baseUrl + pathname;
  const tenantPath = TENANT_PATH.exec(pathname);
  if (tenantPath) {
    if (ctx.style !== 'microsoft') return undefined;
    return { route: tenantPath[2] as OAuthRoute, endpoint: { tenant: tenantPath[1]!.toLowerCase(), url } };
  }
  const plain: Record<string, OAuthRoute> = {
    '/token': 'token',
    '/authorize': 'authorize',
    '/devicecode': 'devicecode',
    '/devicelogin': 'devicelogin',
  };
  // Google's own paths for its authorization and device endpoints.
  if (ctx.style === 'google')
    Object.assign(plain, { '/o/oauth2/v2/auth': 'authorize', '/device/code': 'devicecode' });
  const route = plain[pathname];
  return route ? { route, endpoint: { url } } : undefined;
}

const OAUTH_METHODS: Record<OAuthRoute, string[]> = {
  token: ['POST'],
  authorize: ['GET', 'POST'],
  devicecode: ['POST'],
  devicelogin: ['GET', 'POST'],
};

function sendJson(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    pragma: 'no-cache', // RFC 6749 section 5.1
  });
  res.end(text);
}

async function readBody(req: http.IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseJsonObject(text: string): Record<string, unknown> {
  const value = text.trim() === '' ? {} : JSON.parse(text);
  if (!value || typeof value !== 'object' || Array.isArray(value))
    throw new Error('body must be a JSON object');
  return value;
}

export interface ControlApi {
  setFaults(f: unknown): void;
  faults(): unknown;
  revoke(tokenOrEmail: string): void;
  revokeGrants(email: string): void;
  reset(): void;
  registerClient(body: unknown): Promise<unknown>;
  registerServiceAccount(body: unknown): Promise<unknown>;
  setPermission(body: unknown): void;
  addRedirectUri(uri: unknown): void;
  directory(): unknown;
  flows(): unknown;
  setFlows(body: unknown): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function sendPage(res: http.ServerResponse, reply: PageReply): void {
  if (reply.location !== undefined) {
    res.writeHead(302, { location: reply.location, 'cache-control': 'no-store', 'content-length': 0 });
    res.end();
    return;
  }
  const html = reply.html ?? '';
  res.writeHead(reply.status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    'cache-control': 'no-store',
    'x-frame-options': 'DENY',
  });
  res.end(html);
}

const CONTROL_GET = ['/control/faults', '/control/directory', '/control/flows'];
const CONTROL_POST = [
  '/control/faults',
  '/control/revoke',
  '/control/reset',
  '/control/clients',
  '/control/service-accounts',
  '/control/permissions',
  '/control/redirect-uris',
  '/control/flows',
];

export function createHttpServer(ctx: OAuthContext, control: ControlApi): http.Server {
  const { state } = ctx;
  const server = http.createServer({ keepAlive: true }, (req, res) => {
    handle(req, res).catch((err) => {
      if (!res.headersSent) sendJson(res, 500, { error: 'internal_error', error_description: String(err) });
      else res.destroy();
    });
  });

  async function serveToken(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    endpoint: Endpoint,
  ): Promise<void> {
    const text = await readBody(req);
    if (text === undefined)
      return sendJson(res, 413, { error: 'invalid_request', error_description: 'body too large' });
    const { tokenLatencyMs, tokenErrorRate, tokenResetRate } = state.faults;
    if (tokenResetRate > 0 && Math.random() < tokenResetRate) {
      // as a token host that is down: no HTTP answer
      state.countTokenRequest(undefined);
      state.tokenErrors++;
      req.socket.resetAndDestroy();
      return;
    }
    // A failed request issues and rotates nothing: with rotation on, a refresh token rotated
    // into a lost answer would be revoked for good, which no real endpoint does on a 500.
    const failed = tokenErrorRate > 0 && Math.random() < tokenErrorRate;
    // Form-encoded only, as the real endpoints expect; other bodies simply lack the parameters.
    const reply = failed
      ? undefined
      : handleTokenRequest(ctx, {
          form: new URLSearchParams(text),
          authorization: req.headers.authorization,
          endpoint,
        });
    state.countTokenRequest(reply?.user);
    if (tokenLatencyMs > 0) await sleep(tokenLatencyMs);
    if (!reply) {
      state.tokenErrors++;
      return sendJson(res, 500, { error: 'internal_failure', error_description: 'Backend Error' });
    }
    if (reply.status !== 200) state.tokenErrors++;
    return sendJson(res, reply.status, reply.body, reply.headers);
  }

  async function serveOAuth(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    url: URL,
    route: OAuthRoute,
    endpoint: Endpoint,
  ): Promise<void> {
    if (route === 'token') return serveToken(req, res, endpoint);
    if (req.method === 'GET') {
      if (route === 'authorize')
        return sendPage(res, authorizeGet(ctx, url.searchParams, endpoint, url.pathname));
      return sendPage(res, deviceLoginGet(url.searchParams));
    }
    const text = await readBody(req);
    if (text === undefined)
      return sendJson(res, 413, { error: 'invalid_request', error_description: 'body too large' });
    const form = new URLSearchParams(text);
    if (route === 'authorize') return sendPage(res, authorizePost(ctx, form, url.pathname));
    if (route === 'devicelogin') return sendPage(res, deviceLoginPost(ctx, form));
    const reply = deviceAuthorization(ctx, form, endpoint, `${ctx.baseUrl}/devicelogin`);
    if (reply.status !== 200) state.countRefusal(reply.reason ?? String(reply.body.error));
    return sendJson(res, reply.status, reply.body);
  }

  async function serveControl(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    path: string,
  ): Promise<void> {
    if (req.method === 'GET') {
      if (path === '/control/faults') return sendJson(res, 200, control.faults());
      if (path === '/control/directory') return sendJson(res, 200, control.directory());
      return sendJson(res, 200, control.flows());
    }
    const text = await readBody(req);
    if (text === undefined) return sendJson(res, 413, { error: 'body too large' });
    try {
      const body = parseJsonObject(text);
      switch (path) {
        case '/control/faults':
          control.setFaults(body);
          return sendJson(res, 200, control.faults());
        case '/control/revoke': {
          if (typeof body.grantsOf === 'string') {
            control.revokeGrants(body.grantsOf);
            return sendJson(res, 200, { ok: true });
          }
          const target = body.refreshToken ?? body.email;
          if (typeof target !== 'string')
            throw new Error('give {"refreshToken": "..."}, {"email": "..."} or {"grantsOf": "..."}');
          control.revoke(target);
          return sendJson(res, 200, { ok: true });
        }
        case '/control/reset':
          control.reset();
          return sendJson(res, 200, { ok: true });
        case '/control/clients':
          return sendJson(res, 200, await control.registerClient(body));
        case '/control/service-accounts':
          return sendJson(res, 200, await control.registerServiceAccount(body));
        case '/control/permissions':
          control.setPermission(body);
          return sendJson(res, 200, { ok: true });
        case '/control/redirect-uris':
          control.addRedirectUri(body.uri);
          return sendJson(res, 200, { ok: true });
        default:
          control.setFlows(body);
          return sendJson(res, 200, control.flows());
      }
    } catch (err) {
      return sendJson(res, 400, { error: (err as Error).message });
    }
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://sim');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const oauth = oauthRoute(ctx, path);
    if (oauth) {
      if (!OAUTH_METHODS[oauth.route].includes(method))
        return sendJson(res, 405, { error: 'method not allowed' });
      return serveOAuth(req, res, url, oauth.route, oauth.endpoint);
    }
    if (path === '/stats') {
      if (method !== 'GET') return sendJson(res, 405, { error: 'method not allowed' });
      return sendJson(res, 200, state.stats(url.searchParams.get('ids') !== '0'));
    }
    const getOk = method === 'GET' && CONTROL_GET.includes(path);
    const postOk = method === 'POST' && CONTROL_POST.includes(path);
    if (getOk || postOk) return serveControl(req, res, path);
    if (CONTROL_GET.includes(path) || CONTROL_POST.includes(path))
      return sendJson(res, 405, { error: 'method not allowed' });
    return sendJson(res, 404, { error: 'not found' });
  }
  return server;
}
