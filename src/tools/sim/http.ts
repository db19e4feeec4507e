import http from 'node:http';
import type { SimState } from './state.js';
import type { SimStyle } from './types.js';

const MAX_BODY = 1 << 20;

export const DEFAULT_SCOPE: Record<SimStyle, string> = {
  google: 'https://mail.google.com/',
  microsoft: 'https://outlook.office.com/SMTP.Send offline_access',
};

interface TokenReply {
  status: number;
  body: Record<string, unknown>;
  /** the user the request named, for per-user counting */
  user?: string;
}

function oauthError(status: number, error: string, description: string, user?: string): TokenReply {
  return { status, body: { error, error_description: description }, user };
}

/** The request's wording of "parameter X is missing", as each provider words it. */
function missing(style: SimStyle, param: string, user?: string): TokenReply {
  if (style === 'microsoft') {
    return oauthError(
      400,
      'invalid_request',
      `AADSTS900144: The request body must contain the following parameter: '${param}'.`,
      user,
    );
  }
  if (param === 'client_id')
    return oauthError(400, 'invalid_request', 'Could not determine client ID from request.');
  return oauthError(400, 'invalid_request', `Missing required parameter: ${param}`, user);
}

function invalidGrant(style: SimStyle, user?: string): TokenReply {
  return style === 'microsoft'
    ? oauthError(
        400,
        'invalid_grant',
        "AADSTS70000: The provided value for the 'refresh_token' is not valid. Token has been expired or revoked.",
        user,
      )
    : oauthError(400, 'invalid_grant', 'Token has been expired or revoked.', user);
}

function decodeJwtPayload(assertion: string): Record<string, unknown> | undefined {
  const parts = assertion.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const payload = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
    return payload && typeof payload === 'object' && !Array.isArray(payload) ? payload : undefined;
  } catch {
    return undefined;
  }
}

/** The OAuth2 token endpoint: pure function of the form and the simulator's state. */
export function handleTokenRequest(state: SimState, style: SimStyle, form: URLSearchParams): TokenReply {
  const grant = form.get('grant_type') ?? '';
  const clientId = form.get('client_id');
  const success = (user: string | undefined, from: string | undefined, refreshToken?: string): TokenReply => {
    const body: Record<string, unknown> = {
      access_token: state.issueAccessToken(user, from),
      expires_in: state.tokenLifetimeSec,
      token_type: 'Bearer',
      scope: form.get('scope') || DEFAULT_SCOPE[style],
    };
    if (style === 'microsoft') body.ext_expires_in = state.tokenLifetimeSec;
    if (refreshToken) body.refresh_token = refreshToken;
    return { status: 200, body, user };
  };

  switch (grant) {
    case 'refresh_token': {
      const rt = form.get('refresh_token');
      if (!clientId) return missing(style, 'client_id');
      if (!rt) return missing(style, 'refresh_token');
      const user = state.refreshTokenValid(rt);
      if (!user)
        return invalidGrant(
          style,
          rt.startsWith('simrt.') ? rt.slice(6, rt.lastIndexOf('.')).toLowerCase() : undefined,
        );
      const rotated = state.rotateRefresh ? state.rotateRefreshToken(rt, user) : undefined;
      return success(user, rotated ?? rt, rotated);
    }
    case 'client_credentials': {
      // Microsoft's app-only flow. A client_id that is an email makes a token for that user only;
      // any other client_id (a GUID, as in Azure) makes an application token valid for every user.
      if (!clientId) return missing(style, 'client_id');
      const user = clientId.includes('@') ? clientId.toLowerCase() : undefined;
      if (!form.get('client_secret') && !form.get('client_assertion')) {
        return oauthError(
          401,
          'invalid_client',
          "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
          user ?? clientId,
        );
      }
      if (user && state.userRevoked(user))
        return oauthError(400, 'invalid_grant', 'The user grant was revoked.', user);
      return success(user, undefined);
    }
    case 'urn:ietf:params:oauth:grant-type:jwt-bearer': {
      // Google service-account delegation. The signature is NOT checked; `sub` (else `iss`) is the user.
      const assertion = form.get('assertion');
      if (!assertion) return missing(style, 'assertion');
      const payload = decodeJwtPayload(assertion);
      const sub = payload && (typeof payload.sub === 'string' ? payload.sub : payload.iss);
      if (typeof sub !== 'string' || !sub.includes('@')) {
        return oauthError(400, 'invalid_grant', 'Invalid JWT: the assertion has no sub/iss email claim.');
      }
      const user = sub.toLowerCase();
      if (typeof payload!.exp === 'number' && payload!.exp * 1000 < Date.now() - 60_000) {
        return oauthError(
          400,
          'invalid_grant',
          'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.',
          user,
        );
      }
      if (state.userRevoked(user)) return invalidGrant(style, user);
      return success(user, undefined);
    }
    default:
      return oauthError(400, 'unsupported_grant_type', `Invalid grant_type: ${grant}`, undefined);
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
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
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function createHttpServer(state: SimState, style: SimStyle, control: ControlApi): http.Server {
  const server = http.createServer({ keepAlive: true }, (req, res) => {
    handle(req, res).catch((err) => {
      if (!res.headersSent) sendJson(res, 500, { error: 'internal_error', error_description: String(err) });
      else res.destroy();
    });
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://sim');
    const route = `${req.method} ${url.pathname}`;
    const known = ['/token', '/stats', '/control/faults', '/control/revoke', '/control/reset'];
    switch (route) {
      case 'POST /token': {
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
        const reply = failed ? undefined : handleTokenRequest(state, style, new URLSearchParams(text));
        state.countTokenRequest(reply?.user);
        if (tokenLatencyMs > 0) await sleep(tokenLatencyMs);
        if (!reply) {
          state.tokenErrors++;
          return sendJson(res, 500, { error: 'internal_failure', error_description: 'Backend Error' });
        }
        if (reply.status !== 200) state.tokenErrors++;
        return sendJson(res, reply.status, reply.body);
      }
      case 'GET /stats':
        return sendJson(res, 200, state.stats(url.searchParams.get('ids') !== '0'));
      case 'GET /control/faults':
        return sendJson(res, 200, control.faults());
      case 'POST /control/faults':
      case 'POST /control/revoke':
      case 'POST /control/reset': {
        const text = await readBody(req);
        if (text === undefined) return sendJson(res, 413, { error: 'body too large' });
        try {
          const body = parseJsonObject(text);
          if (route === 'POST /control/faults') {
            control.setFaults(body);
            return sendJson(res, 200, control.faults());
          }
          if (route === 'POST /control/revoke') {
            if (typeof body.grantsOf === 'string') {
              control.revokeGrants(body.grantsOf);
              return sendJson(res, 200, { ok: true });
            }
            const target = body.refreshToken ?? body.email;
            if (typeof target !== 'string')
              throw new Error('give {"refreshToken": "..."}, {"email": "..."} or {"grantsOf": "..."}');
            control.revoke(target);
          } else {
            control.reset();
          }
          return sendJson(res, 200, { ok: true });
        } catch (err) {
          return sendJson(res, 400, { error: (err as Error).message });
        }
      }
      default:
        if (known.includes(url.pathname)) return sendJson(res, 405, { error: 'method not allowed' });
        return sendJson(res, 404, { error: 'not found' });
    }
  }
  return server;
}
