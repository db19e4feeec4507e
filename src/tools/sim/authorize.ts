// The authorization endpoint (RFC 6749 section 4.1.1 and 4.1.2) with PKCE S256 only (RFC 7636):
// GET shows a consent page, its form POSTs back, and the answer is a 302 to the client's
// redirect URI with the code (or error=access_denied) and the state.
import type { AuthorizationRequest } from './authorization-codes.js';
import { isEmail, type Client } from './directory.js';
import { errorPage, escapeHtml, page, withQuery, type PageReply } from './html.js';
import { findClient, type Endpoint, type OAuthContext } from './oauth-context.js';
import { duplicateParameter } from './oauth-errors.js';

/** RFC 7636 section 4.2: code_challenge = 43*128unreserved. */
const CHALLENGE = /^[A-Za-z0-9._~-]{43,128}$/;

/** Loopback redirect URIs work on any port (RFC 8252 section 7.3); others must be registered. */
export function redirectAllowed(ctx: OAuthContext, client: Client | undefined, uri: string): boolean {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return false;
  }
  if (uri.includes('#')) return false;
  if (url.protocol === 'http:' && ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname)) return true;
  return ctx.directory.redirectUris.has(uri) || (client?.redirectUris.has(uri) ?? false);
}

/** An error page in the provider's words, counted in /stats. */
function refusePage(
  ctx: OAuthContext,
  status: number,
  error: string,
  aad: string,
  google: string,
  reason: string,
): PageReply {
  ctx.state.countRefusal(reason);
  return errorPage(status, error, ctx.style === 'microsoft' ? aad : google);
}

export function authorizeGet(
  ctx: OAuthContext,
  q: URLSearchParams,
  endpoint: Endpoint,
  path: string,
): PageReply {
  const ms = ctx.style === 'microsoft';
  const repeated = duplicateParameter(q);
  if (repeated === 'client_id' || repeated === 'redirect_uri')
    return refusePage(
      ctx,
      400,
      'invalid_request',
      `AADSTS9002313: Invalid request. The parameter '${repeated}' is included more than once.`,
      `The parameter ${repeated} is included more than once.`,
      'authorize_invalid_request',
    );
  const clientId = q.get('client_id');
  if (!clientId)
    return refusePage(
      ctx,
      400,
      'invalid_request',
      "AADSTS900144: The request body must contain the following parameter: 'client_id'.",
      'Missing required parameter: client_id',
      'authorize_invalid_request',
    );
  const found = findClient(ctx, clientId, endpoint.tenant);
  if (!found.ok)
    return refusePage(
      ctx,
      found.reply.status,
      String(found.reply.body.error),
      String(found.reply.body.error_description),
      'The OAuth client was not found.',
      'authorize_unknown_client',
    );
  const redirectUri = q.get('redirect_uri');
  if (!redirectUri)
    return refusePage(
      ctx,
      400,
      'invalid_request',
      "AADSTS900144: The request body must contain the following parameter: 'redirect_uri'.",
      'Missing required parameter: redirect_uri',
      'authorize_invalid_request',
    );
  if (!redirectAllowed(ctx, found.client, redirectUri))
    return refusePage(
      ctx,
      400,
      ms ? 'invalid_request' : 'redirect_uri_mismatch',
      `AADSTS50011: The redirect URI '${redirectUri}' specified in the request does not match the redirect URIs configured for the application '${clientId}'.`,
      `The redirect URI in the request, ${redirectUri}, does not match the ones authorized for the OAuth client.`,
      'authorize_redirect_uri',
    );

  // From here on the client is known and its redirect URI safe: errors go back to it.
  const state = q.get('state') ?? undefined;
  const back = (error: string, description: string, reason: string): PageReply => {
    ctx.state.countRefusal(reason);
    return {
      status: 302,
      location: withQuery(redirectUri, { error, error_description: description, state }),
    };
  };
  if (repeated)
    return back(
      'invalid_request',
      `The parameter ${repeated} is included more than once.`,
      'authorize_invalid_request',
    );
  const responseType = q.get('response_type');
  if (!responseType)
    return back('invalid_request', 'Missing required parameter: response_type', 'authorize_invalid_request');
  if (responseType !== 'code')
    return back(
      'unsupported_response_type',
      `Unsupported response_type: ${responseType}`,
      'authorize_response_type',
    );
  const scope = q.get('scope')?.trim();
  if (!scope)
    return back('invalid_request', 'Missing required parameter: scope', 'authorize_invalid_request');
  const responseMode = q.get('response_mode');
  if (responseMode && responseMode !== 'query')
    return back(
      'invalid_request',
      `Unsupported response_mode: ${responseMode} (the simulator answers in the query)`,
      'authorize_invalid_request',
    );
  const challenge = q.get('code_challenge');
  const method = q.get('code_challenge_method');
  if (!challenge)
    return back('invalid_request', 'code_challenge is required (PKCE with S256).', 'authorize_pkce');
  if (method !== 'S256')
    return back(
      'invalid_request',
      `code_challenge_method must be S256, got ${method ?? 'none (plain)'}.`,
      'authorize_pkce',
    );
  if (!CHALLENGE.test(challenge)) return back('invalid_request', 'Invalid code_challenge.', 'authorize_pkce');
  const prompt = (q.get('prompt') ?? '').split(' ');
  // No one is signed in to the simulator: it cannot answer without showing its page.
  if (prompt.includes('none'))
    return back('login_required', 'The user must sign in.', 'authorize_login_required');

  const req: AuthorizationRequest = {
    clientId,
    redirectUri,
    scope,
    state,
    codeChallenge: challenge,
    tenant: endpoint.tenant,
    loginHint: q.get('login_hint') ?? undefined,
    offline: q.get('access_type') === 'offline',
    promptConsent: prompt.includes('consent'),
  };
  return consentPage(ctx.codes.startConsent(req), req, path, 200);
}

function consentPage(
  tx: string,
  req: AuthorizationRequest,
  path: string,
  status: number,
  loginError?: string,
): PageReply {
  return page(
    status,
    'Sign in and allow access',
    `<form method="post" action="${escapeHtml(path)}">
<input type="hidden" name="tx" value="${escapeHtml(tx)}">
<p>The application <b id="client">${escapeHtml(req.clientId)}</b> asks for access to: <code id="scope">${escapeHtml(req.scope)}</code></p>
<label for="login">Email</label>
<input type="email" name="login" id="login" value="${escapeHtml(req.loginHint ?? '')}" required autocomplete="username">
${loginError ? `<p id="login-error" class="error">${escapeHtml(loginError)}</p>` : ''}
<button type="submit" id="allow" name="action" value="allow">Allow</button>
<button type="submit" id="deny" name="action" value="deny" formnovalidate>Deny</button>
</form>`,
  );
}

/** The consent page's answer. */
export function authorizePost(ctx: OAuthContext, form: URLSearchParams, path: string): PageReply {
  const tx = form.get('tx') ?? '';
  const req = ctx.codes.consent(tx);
  if (!req)
    return refusePage(
      ctx,
      400,
      'invalid_request',
      'This sign-in page has expired or was already answered; start again.',
      'This sign-in page has expired or was already answered; start again.',
      'authorize_consent_expired',
    );
  const action = form.get('action');
  if (action === 'deny') {
    ctx.codes.endConsent(tx);
    ctx.state.consentsDenied++;
    return {
      status: 302,
      location: withQuery(req.redirectUri, {
        error: 'access_denied',
        error_description:
          ctx.style === 'microsoft' ? 'AADSTS65004: User declined to consent to access the app.' : undefined,
        state: req.state,
      }),
    };
  }
  if (action !== 'allow') return errorPage(400, 'invalid_request', 'action must be allow or deny');
  const login = (form.get('login') ?? '').trim();
  if (!isEmail(login))
    return consentPage(
      tx,
      { ...req, loginHint: login },
      path,
      400,
      'Enter the email address of the mailbox.',
    );
  ctx.codes.endConsent(tx);
  const user = login.toLowerCase();
  const firstConsent = !ctx.bindings.hasConsent(req.clientId, user);
  ctx.bindings.recordConsent(req.clientId, user);
  const code = ctx.codes.issue(req, user, ctx.flows.codeLifetimeSec * 1000, firstConsent);
  ctx.state.consentsAllowed++;
  return {
    status: 302,
    location: withQuery(req.redirectUri, {
      code,
      state: req.state,
      // Google names the granted scope in the redirect too; a client ignores what it does not know.
      scope: ctx.style === 'google' ? req.scope : undefined,
    }),
  };
}
