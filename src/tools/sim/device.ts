// The device authorization endpoint (RFC 8628 section 3.1 and 3.2) and the verification page where
// a user enters the user code (section 3.3). Microsoft style only: Google refuses mail scopes on
// its device endpoint, and so does the simulator in google style.
import { isEmail } from './directory.js';
import { escapeHtml, page, type PageReply } from './html.js';
import { findClient, type Endpoint, type OAuthContext } from './oauth-context.js';
import { missing, oauthError, type TokenReply } from './oauth-errors.js';

export function deviceAuthorization(
  ctx: OAuthContext,
  form: URLSearchParams,
  endpoint: Endpoint,
  verificationUri: string,
): TokenReply {
  const { style, flows } = ctx;
  const clientId = form.get('client_id');
  if (!clientId) return missing(style, 'client_id');
  const found = findClient(ctx, clientId, endpoint.tenant);
  if (!found.ok) return found.reply;
  const scope = form.get('scope')?.trim();
  if (!scope) return missing(style, 'scope');
  if (style === 'google')
    return oauthError(
      400,
      'invalid_scope',
      `Invalid device flow scope: ${scope}`,
      undefined,
      'device_flow_scope',
    );
  const auth = ctx.devices.create({
    clientId,
    scope,
    tenant: endpoint.tenant,
    lifetimeMs: flows.deviceCodeLifetimeSec * 1000,
    intervalMs: flows.deviceIntervalMs,
  });
  return {
    status: 200,
    body: {
      user_code: auth.userCode,
      device_code: auth.deviceCode,
      verification_uri: verificationUri,
      expires_in: Math.round(flows.deviceCodeLifetimeSec),
      interval: flows.deviceIntervalMs / 1000,
      message: `To sign in, use a web browser to open the page ${verificationUri} and enter the code ${auth.userCode} to authenticate.`,
    },
  };
}

function entryPage(status: number, userCode: string, login: string, error?: string): PageReply {
  return page(
    status,
    'Enter code',
    `<form method="post" action="/devicelogin">
<label for="user_code">Code</label>
<input type="text" name="user_code" id="user_code" value="${escapeHtml(userCode)}" required autocomplete="off">
<label for="login">Email</label>
<input type="email" name="login" id="login" value="${escapeHtml(login)}" autocomplete="username">
${error ? `<p id="login-error" class="error">${escapeHtml(error)}</p>` : ''}
<button type="submit" id="allow" name="action" value="allow">Allow</button>
<button type="submit" id="deny" name="action" value="deny" formnovalidate>Deny</button>
</form>`,
  );
}

function outcome(status: number, result: string, text: string): PageReply {
  return page(status, 'Device sign-in', `<p id="result" data-result="${result}">${escapeHtml(text)}</p>`);
}

export function deviceLoginGet(q: URLSearchParams): PageReply {
  return entryPage(200, q.get('user_code') ?? '', q.get('login_hint') ?? '');
}

export function deviceLoginPost(ctx: OAuthContext, form: URLSearchParams): PageReply {
  const userCode = form.get('user_code') ?? '';
  const login = (form.get('login') ?? '').trim();
  const auth = ctx.devices.byUserCode(userCode);
  const refuse = (result: string, text: string) => {
    ctx.state.countRefusal(`devicelogin_${result}`);
    return outcome(400, result, text);
  };
  if (!auth) return refuse('unknown_code', "We don't recognize this code.");
  if (auth.expiresAt <= Date.now()) return refuse('expired', 'This code has expired.');
  if (auth.status !== 'pending') return refuse('already_answered', 'This code was already used.');
  const action = form.get('action');
  if (action === 'deny') {
    auth.status = 'denied';
    ctx.state.consentsDenied++;
    return outcome(200, 'denied', `You declined to sign in to ${auth.clientId}.`);
  }
  if (action !== 'allow') return refuse('invalid_action', 'action must be allow or deny');
  if (!isEmail(login)) return entryPage(400, userCode, login, 'Enter the email address of the mailbox.');
  auth.status = 'approved';
  auth.user = login.toLowerCase();
  ctx.state.consentsAllowed++;
  return outcome(
    200,
    'approved',
    `You have signed in to ${auth.clientId} as ${auth.user}. You can close this window.`,
  );
}
