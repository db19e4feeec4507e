// The HTTP side of the proxy (README, "Metrics, health, admin API") on plain node:http: /metrics,
// /healthz, /readyz, the admin API under /admin/ and the status page at /.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Metrics } from '../metrics/metrics.js';
import type { AdminFailureCode, AdminResult } from '../shared/admin-result.js';
import { normalizeEmail } from '../shared/email.js';
import type { Logger } from '../shared/log.js';
import type { HostPort } from '../shared/net.js';
import type { AdminBackend } from './backend.js';
import { onboardingRoutes } from './onboarding-routes.js';
import { listenHttp } from './listen.js';
import { HttpError, methodNotAllowed, readJson, send, sendHtml, sendJson } from './respond.js';
import { renderStatusPage, renderTokenForm, renderAdminDisabledPage } from './status-page.js';

export * from './backend.js';
export { MAX_BODY_BYTES } from './respond.js';

/** The HTTP status of each admin failure. */
const ADMIN_STATUS: Readonly<Record<AdminFailureCode, number>> = {
  invalid: 400,
  duplicate: 409,
  not_found: 404,
  verify_failed: 422,
  no_accounts_file: 409,
  failed: 500,
};

export interface HttpServerOptions {
  listen: HostPort;
  /** /admin/* and the status page are disabled when empty */
  adminToken?: string;
  metrics: Metrics;
  backend: AdminBackend;
  log: Logger;
}

export interface RunningHttpServer {
  address: HostPort;
  close(): Promise<void>;
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

export async function startHttpServer(opts: HttpServerOptions): Promise<RunningHttpServer> {
  const { backend, metrics, log } = opts;
  const tokenDigest = opts.adminToken ? digest(opts.adminToken) : undefined;

  /** Constant time in the token's content and length: both sides are SHA-256 digests. */
  const tokenMatches = (candidate: string | undefined): boolean => {
    if (!tokenDigest || candidate === undefined) return false;
    return timingSafeEqual(digest(candidate), tokenDigest);
  };
  const onboarding = onboardingRoutes(backend.onboarding);
  const bearer = (req: IncomingMessage): string | undefined => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    return m?.[1];
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    const p = url.pathname;
    const isGet = method === 'GET' || method === 'HEAD';

    if (p === '/metrics') {
      if (!isGet) throw methodNotAllowed('GET');
      const text = await metrics.registry.metrics();
      return send(res, 200, text, metrics.registry.contentType);
    }
    if (p === '/healthz') {
      if (!isGet) throw methodNotAllowed('GET');
      return send(res, 200, 'ok\n');
    }
    if (p === '/readyz') {
      if (!isGet) throw methodNotAllowed('GET');
      // degraded is still ready: mail flows on cached tokens within each instance's share, and a
      // load balancer that dropped every instance while Redis is away would stop all mail
      const degraded = backend.degraded?.();
      if (!backend.isReady()) return send(res, 503, 'not ready\n');
      return send(res, 200, degraded ? `ready (degraded: ${degraded})\n` : 'ready\n');
    }
    if (p === '/favicon.ico') return send(res, 204, '');
    if (p === '/' || p === '/status') {
      if (!isGet) throw methodNotAllowed('GET');
      const nonce = randomBytes(16).toString('base64');
      if (!tokenDigest) return sendHtml(res, 404, renderAdminDisabledPage(), nonce);
      const fromQuery = url.searchParams.get('token') ?? undefined;
      const token = bearer(req) ?? fromQuery;
      if (!tokenMatches(token)) {
        return sendHtml(res, 401, renderTokenForm(token !== undefined), nonce, {
          'WWW-Authenticate': 'Bearer realm="xoauth2-proxy admin"',
        });
      }
      return sendHtml(
        res,
        200,
        renderStatusPage({
          accounts: backend.listAccounts(),
          live: backend.live(),
          nonce,
          ready: backend.isReady(),
          degraded: backend.degraded?.(),
          ...(backend.onboarding ? { onboarding: backend.onboarding.settings() } : {}),
        }),
        nonce,
      );
    }
    if (p === '/admin' || p.startsWith('/admin/')) {
      if (!tokenDigest) throw new HttpError(404, 'admin API disabled: set http.adminToken');
      if (!tokenMatches(bearer(req))) {
        res.setHeader('WWW-Authenticate', 'Bearer realm="xoauth2-proxy admin"');
        throw new HttpError(401, 'missing or wrong admin token (Authorization: Bearer <http.adminToken>)');
      }
      return admin(req, res, url, method, p);
    }
    if (await onboarding.handlePublic(req, res, url, method)) return;
    throw new HttpError(404, `no route ${method} ${p}`);
  };

  const admin = async (req: IncomingMessage, res: ServerResponse, url: URL, method: string, p: string) => {
    const isGet = method === 'GET' || method === 'HEAD';
    if (p === '/admin/live') {
      if (!isGet) throw methodNotAllowed('GET');
      const degraded = backend.degraded?.();
      return sendJson(res, 200, {
        ready: backend.isReady(),
        ...(degraded ? { degraded } : {}),
        accounts: backend.listAccounts(),
        live: backend.live(),
      });
    }
    if (p === '/admin/accounts') {
      if (isGet) return sendJson(res, 200, { accounts: backend.listAccounts() });
      if (method !== 'POST') throw methodNotAllowed('GET, POST');
      const verify = verifyParam(url);
      const body = await readJson(req);
      const r = await backend.addAccount(body, verify);
      logChange('add', r, body);
      return sendResult(res, r, 201);
    }
    const m = /^\/admin\/accounts\/([^/]+)$/.exec(p);
    if (m) {
      let email: string;
      try {
        email = normalizeEmail(decodeURIComponent(m[1]!));
      } catch {
        throw new HttpError(400, 'bad percent-encoding in the email');
      }
      if (isGet) {
        const a = backend.listAccounts().find((x) => x.email === email);
        if (!a) throw new HttpError(404, `no account "${email}"`);
        return sendJson(res, 200, a);
      }
      if (method === 'PUT' || method === 'PATCH') {
        const verify = verifyParam(url);
        const body = await readJson(req);
        const r = await backend.updateAccount(email, body, verify);
        logChange('update', r, { email });
        return sendResult(res, r, 200);
      }
      if (method === 'DELETE') {
        const r = await backend.deleteAccount(email);
        logChange('delete', r, { email });
        if (r.ok) return send(res, 204, '');
        return sendResult(res, r, 204);
      }
      throw methodNotAllowed('GET, PUT, PATCH, DELETE');
    }
    if (p === '/admin/reload') {
      if (method !== 'POST') throw methodNotAllowed('POST');
      const r = await backend.reload();
      logChange('reload', r, {});
      if (r.ok)
        return sendJson(res, 200, { ok: true, ...(r.warnings?.length ? { warnings: r.warnings } : {}) });
      return sendResult(res, r, 200);
    }
    if (await onboarding.handleAdmin(req, res, url, method)) return;
    throw new HttpError(404, `no route ${method} ${p}`);
  };

  const logChange = (what: string, r: AdminResult, body: unknown) => {
    const email =
      body && typeof body === 'object' && typeof (body as { email?: unknown }).email === 'string'
        ? (body as { email: string }).email
        : undefined;
    if (r.ok) log.info({ admin: what, email }, `admin ${what} done`);
    else log.warn({ admin: what, email, code: r.code, error: r.error }, `admin ${what} failed`);
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (err instanceof HttpError) {
        if (!res.headersSent)
          sendJson(res, err.status, { error: err.message, ...err.extra }, err.extra.headers);
        else res.destroy();
        // The unread rest of an oversized body is not wanted: close once the 413 has gone out.
        if (err.status === 413)
          res.once('finish', () => setTimeout(() => req.socket.destroy(), 1000).unref());
        return;
      }
      log.error({ err }, `HTTP ${req.method} ${req.url?.split('?')[0]} failed`);
      if (!res.headersSent)
        sendJson(res, 500, { error: `internal error: ${(err as Error)?.message ?? String(err)}` });
      else res.destroy();
    });
  });
  const address = await listenHttp(server, opts.listen);
  log.debug({ address }, 'HTTP server listening');

  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        // Status pages poll over keep-alive; do not let them hold the shutdown.
        setTimeout(() => server.closeAllConnections(), 1000).unref();
      }),
  };
}

function verifyParam(url: URL): boolean {
  const v = url.searchParams.get('verify');
  if (v === null || v === '' || v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new HttpError(400, `verify must be true or false, got "${v}"`);
}

function sendResult(res: ServerResponse, r: AdminResult, okStatus: number): void {
  if (r.ok) {
    sendJson(res, okStatus, {
      ok: true,
      ...(r.body !== undefined ? { account: r.body } : {}),
      ...(r.warnings?.length ? { warnings: r.warnings } : {}),
    });
    return;
  }
  sendJson(res, ADMIN_STATUS[r.code] ?? 500, {
    error: r.error,
    code: r.code,
    ...(r.issues ? { issues: r.issues } : {}),
  });
}
