// The routes of the web onboarding flow (docs/web-onboarding.md).
//
// Public, for the holder of a link or the browser of a flow in progress:
//   GET  /onboard?link=TOKEN   the link's page (changes nothing); errors: invalid, expired, used, revoked
//   POST /onboard/start        form {link, email?}: 303 to the provider's consent page
//   GET  /oauth/callback       the provider's redirect: code exchange, account stored, settings shown
// Admin (the caller checked the bearer token):
//   GET  /admin/onboarding-links        the links, newest first (never their URLs)
//   POST /admin/onboarding-links        {email?, provider, expiresIn?} -> 201 {id, url, expiresAt, ...}
//   DELETE /admin/onboarding-links/ID   204, or 404
//   POST /admin/onboarding/start        {email, provider?} -> {authorizeUrl}: "Add mailbox", "Re-authorize"
//
// A flow is bound to the browser that started it: the start sets an HttpOnly, SameSite=Lax cookie
// named after the state, holding a random value the backend keeps a digest of, and the callback is
// refused without it. So a leaked authorization URL or redirect cannot be finished elsewhere.
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FlowStart, FlowStarted, OnboardingBackend, OnboardingFailure } from './backend.js';
import { renderFinishedPage, renderLinkPage, renderOnboardingError } from './onboarding-pages.js';
import { HttpError, methodNotAllowed, readBody, readJson, send, sendHtml, sendJson } from './respond.js';

export interface OnboardingRoutes {
  /** /onboard, /onboard/start, /oauth/callback; false: not one of them */
  handlePublic(req: IncomingMessage, res: ServerResponse, url: URL, method: string): Promise<boolean>;
  /** /admin/onboarding-links[/ID], /admin/onboarding/start; false: not one of them */
  handleAdmin(req: IncomingMessage, res: ServerResponse, url: URL, method: string): Promise<boolean>;
}

const COOKIE_PREFIX = 'xo_onboard_';
const ADMIN_LINKS = '/admin/onboarding-links';

/** The cookie of one flow: named by the state's digest, so parallel flows in one browser coexist. */
export function bindingCookieName(state: string): string {
  return COOKIE_PREFIX + createHash('sha256').update(state, 'utf8').digest('hex').slice(0, 16);
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** The cookie's attributes: the callback's public path, Secure behind https. */
function cookieAttributes(publicUrl: string, maxAgeSec: number): string {
  const u = new URL(publicUrl);
  const secure = u.protocol === 'https:' ? '; Secure' : '';
  return `Path=${u.pathname.replace(/\/$/, '')}/oauth/callback; Max-Age=${maxAgeSec}; HttpOnly; SameSite=Lax${secure}`;
}

/**
 * A browser's form POST must come from our own pages. Sec-Fetch-Site says where it came from in
 * every current browser and decides when present (our pages send no referrer, so their Origin is
 * "null"); without it, Origin must be ours. Clients that send neither (curl) are not browsers to
 * protect.
 */
function sameOrigin(req: IncomingMessage, publicUrl: string): boolean {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined) return site === 'same-origin' || site === 'none';
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  const host = req.headers.host;
  return (
    origin === new URL(publicUrl).origin ||
    (host !== undefined && (origin === `http://${host}` || origin === `https://${host}`))
  );
}

const isFailure = (r: { ok: boolean }): r is OnboardingFailure => !r.ok;

export function onboardingRoutes(backend: OnboardingBackend | undefined): OnboardingRoutes {
  const page = (res: ServerResponse, status: number, render: (nonce: string) => string, extra = {}) => {
    const nonce = randomBytes(16).toString('base64');
    sendHtml(res, status, render(nonce), nonce, extra);
  };
  /** the answers below return true: the route was handled */
  const errorPage = (res: ServerResponse, f: OnboardingFailure, headers: Record<string, string> = {}) => {
    page(res, f.status, (nonce) => renderOnboardingError(f, nonce), headers);
    return true;
  };
  const failureJson = (res: ServerResponse, f: OnboardingFailure) => {
    sendJson(res, f.status, {
      error: f.message,
      problem: f.problem,
      ...(f.issues ? { issues: f.issues } : {}),
    });
    return true;
  };
  const json = (res: ServerResponse, status: number, value: unknown) => {
    sendJson(res, status, value);
    return true;
  };

  const off = (): OnboardingFailure | undefined => {
    if (!backend)
      return {
        ok: false,
        status: 404,
        problem: 'off',
        title: 'Not available',
        message: 'Web onboarding is not available.',
      };
    const s = backend.settings();
    if (!s.enabled)
      return { ok: false, status: 404, problem: 'off', title: 'Web onboarding is off', message: s.reason };
    return undefined;
  };

  /** Sets the flow's cookie on the response about to be sent. */
  const bindFlow = (res: ServerResponse, started: FlowStarted) => {
    const s = backend!.settings();
    if (!s.enabled) return;
    res.setHeader(
      'Set-Cookie',
      `${bindingCookieName(started.state)}=${started.binding}; ${cookieAttributes(s.publicUrl, started.expiresInSec)}`,
    );
  };

  const handlePublic: OnboardingRoutes['handlePublic'] = async (req, res, url, method) => {
    const p = url.pathname;
    if (p !== '/onboard' && p !== '/onboard/start' && p !== '/oauth/callback') return false;
    const isGet = method === 'GET' || method === 'HEAD';
    const disabled = off();

    if (p === '/onboard') {
      if (!isGet) throw methodNotAllowed('GET');
      if (disabled) return errorPage(res, disabled);
      const link = url.searchParams.get('link') ?? '';
      const info = backend!.checkLink(link);
      if (isFailure(info)) return errorPage(res, info);
      const nonce = randomBytes(16).toString('base64');
      // the button's POST is answered with a redirect to the provider: form-action must allow it
      sendHtml(res, 200, renderLinkPage(info, link, nonce), nonce, {}, [info.authorizeOrigin]);
      return true;
    }

    if (p === '/onboard/start') {
      if (method !== 'POST') throw methodNotAllowed('POST');
      if (disabled) return errorPage(res, disabled);
      const s = backend!.settings();
      if (s.enabled && !sameOrigin(req, s.publicUrl)) {
        return errorPage(res, {
          ok: false,
          status: 403,
          problem: 'cross_origin',
          title: 'Refused',
          message: 'This form can only be sent from the onboarding page itself. Open your link again.',
        });
      }
      const form = new URLSearchParams((await readBody(req)).toString('utf8'));
      const email = form.get('email')?.trim();
      const start: FlowStart = { by: 'link', link: form.get('link') ?? '', ...(email ? { email } : {}) };
      const started = await backend!.start(start);
      if (isFailure(started)) return errorPage(res, started);
      bindFlow(res, started);
      send(res, 303, '', 'text/plain; charset=utf-8', { Location: started.authorizeUrl });
      return true;
    }

    // /oauth/callback
    if (!isGet) throw methodNotAllowed('GET');
    if (disabled) return errorPage(res, disabled);
    const state = url.searchParams.get('state');
    const name = state ? bindingCookieName(state) : undefined;
    const finished = await backend!.finish(url.searchParams, name ? cookie(req, name) : undefined);
    const s = backend!.settings();
    const clear: Record<string, string> =
      name && s.enabled ? { 'Set-Cookie': `${name}=; ${cookieAttributes(s.publicUrl, 0)}` } : {};
    if (isFailure(finished)) return errorPage(res, finished, clear);
    page(res, 200, (nonce) => renderFinishedPage(finished, nonce), clear);
    return true;
  };

  const handleAdmin: OnboardingRoutes['handleAdmin'] = async (req, res, url, method) => {
    const p = url.pathname;
    const isGet = method === 'GET' || method === 'HEAD';
    const linkId = p.startsWith(ADMIN_LINKS + '/') ? p.slice(ADMIN_LINKS.length + 1) : undefined;
    if (p !== ADMIN_LINKS && p !== '/admin/onboarding/start' && linkId === undefined) return false;
    const disabled = off();
    if (disabled) return failureJson(res, disabled);
    const b = backend!;

    if (p === ADMIN_LINKS) {
      if (isGet) return json(res, 200, { links: b.listLinks() });
      if (method !== 'POST') throw methodNotAllowed('GET, POST');
      const created = b.createLink(await readJson(req));
      if (isFailure(created)) return failureJson(res, created);
      return json(res, 201, created);
    }
    if (linkId !== undefined) {
      if (method !== 'DELETE') throw methodNotAllowed('DELETE');
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(linkId) || !b.revokeLink(linkId))
        throw new HttpError(404, `no unrevoked onboarding link "${linkId.slice(0, 64)}"`);
      send(res, 204, '');
      return true;
    }
    // /admin/onboarding/start
    if (method !== 'POST') throw methodNotAllowed('POST');
    const body = (await readJson(req)) as Record<string, unknown> | null;
    const email = body && typeof body === 'object' ? body.email : undefined;
    const provider = body && typeof body === 'object' ? body.provider : undefined;
    if (typeof email !== 'string' || !email.trim())
      throw new HttpError(400, 'email: expected the mailbox address', {
        issues: [{ path: 'email', message: 'expected the mailbox address' }],
      });
    if (provider !== undefined && provider !== '' && typeof provider !== 'string')
      throw new HttpError(400, 'provider: expected a provider name', {
        issues: [{ path: 'provider', message: 'expected a provider name' }],
      });
    const started = await b.start({
      by: 'admin',
      email: email.trim(),
      ...(typeof provider === 'string' && provider ? { provider } : {}),
    });
    if (isFailure(started)) return failureJson(res, started);
    bindFlow(res, started);
    return json(res, 200, { authorizeUrl: started.authorizeUrl });
  };

  return { handlePublic, handleAdmin };
}
