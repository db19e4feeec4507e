// A small OAuth 2.0 authorization server on 127.0.0.1 that does what the RFCs require of one, so
// the grant clients are tested against the standards rather than against our own simulator:
//   RFC 6749 (authorization endpoint, token endpoint, client authentication, error responses),
//   RFC 7636 (S256 only, verifier checked), RFC 8252 section 7.3 (loopback redirect, any port),
//   RFC 8628 (device authorization, polling, slow_down), RFC 7523 (JWT bearer grant and JWT client
//   authentication, signatures verified with the registered keys; x5t checked against the certificate).
// It shares no code with src/oauth/grants. Tests steer it through `consent`, `approve`, `deny`,
// `expire` and `override` (a canned answer, e.g. a provider's real error body).
import crypto, { type KeyObject } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface ClientRegistration {
  clientId: string;
  /** confidential client (client_secret_basic or client_secret_post) */
  clientSecret?: string;
  /** confidential client authenticating with a JWT signed by this certificate's key (x5t matched) */
  certificatePem?: string;
  /** registered redirect URIs; loopback ones match any port (RFC 8252 section 7.3) */
  redirectUris?: string[];
  /** scope values the client may get; undefined: any */
  scopes?: string[];
}

export interface ServiceAccountRegistration {
  clientEmail: string;
  publicKey: KeyObject;
  keyId: string;
  /** scopes delegated domain-wide; empty: not delegated */
  delegatedScopes: string[];
  /** the domain's mailboxes */
  users: string[];
}

export interface TokenCall {
  params: URLSearchParams;
  /** how the client authenticated */
  auth: 'basic' | 'post' | 'assertion' | 'none';
  status: number;
  error?: string;
}

export interface OAuthServerOptions {
  clients: ClientRegistration[];
  serviceAccounts?: ServiceAccountRegistration[];
  /** ms clock for codes, device polling and JWT times (share it with the client under test) */
  now?: () => number;
  /** when a refresh token comes with the code grant: Google's or Microsoft's rule, or always */
  refreshTokens?: 'access_type_offline' | 'offline_access_scope' | 'always' | 'never';
  device?: {
    expiresIn?: number;
    /** seconds; omitted from the answer when null (the client must default to 5) */
    interval?: number | null;
    /** poll numbers (1-based) answered with slow_down regardless of pace */
    slowDownPolls?: number[];
    /** Google's older field name */
    verificationField?: 'verification_uri' | 'verification_url';
  };
}

interface IssuedCode {
  clientId: string;
  redirectUri: string;
  challenge: string;
  scope: string;
  offline: boolean;
  expiresAt: number;
  used: boolean;
}

interface DeviceGrant {
  clientId: string;
  userCode: string;
  scope: string;
  expiresAt: number;
  intervalSec: number;
  issuedAt: number;
  lastPoll?: number;
  polls: number;
  status: 'pending' | 'approved' | 'denied' | 'redeemed';
}

export interface OAuthServer {
  origin: string;
  authorizeUrl: string;
  tokenUrl: string;
  deviceAuthorizationUrl: string;
  /** every POST to the token endpoint */
  tokenCalls: TokenCall[];
  /** the query of every authorization request */
  authorizeQueries: URLSearchParams[];
  /** the resource owner's decision at the authorization endpoint */
  consent: 'approve' | 'deny';
  /** device polls that came sooner than the current interval */
  tooEarlyPolls: number;
  /** a canned answer instead of the real handling (still counted in tokenCalls for /token) */
  override?: (path: string, params: URLSearchParams) => { status: number; body: unknown } | undefined;
  approve(userCode: string): void;
  deny(userCode: string): void;
  expire(userCode: string): void;
  close(): Promise<void>;
}

class OAuthError extends Error {
  constructor(
    readonly error: string,
    readonly description: string,
    readonly status = 400,
  ) {
    super(error);
  }
}

const UNRESERVED_43_128 = /^[A-Za-z0-9\-._~]{43,128}$/;
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const DEVICE_CODE = 'urn:ietf:params:oauth:grant-type:device_code';
const USER_CODE_CHARS = 'BCDFGHJKLMNPQRSTVWXZ'; // RFC 8628 section 6.1

const b64url = (b: Buffer) => b.toString('base64url');
const random = (n = 24) => b64url(crypto.randomBytes(n));

function isLoopback(u: URL): boolean {
  return u.protocol === 'http:' && (u.hostname === '127.0.0.1' || u.hostname === '[::1]');
}

/** RFC 6749 section 3.1.2.3 (simple string comparison), RFC 8252 section 7.3 (any loopback port). */
function redirectMatches(registered: string[], candidate: string): boolean {
  let c: URL;
  try {
    c = new URL(candidate);
  } catch {
    return false;
  }
  return registered.some((r) => {
    if (r === candidate) return true;
    const u = new URL(r);
    return (
      isLoopback(u) &&
      isLoopback(c) &&
      u.hostname === c.hostname &&
      u.pathname === c.pathname &&
      u.search === c.search
    );
  });
}

/** Parameters MUST NOT be included more than once (RFC 6749 section 3.1 and 3.2). */
function single(params: URLSearchParams): void {
  const seen = new Set<string>();
  for (const k of params.keys()) {
    if (seen.has(k)) throw new OAuthError('invalid_request', `parameter ${k} repeated`);
    seen.add(k);
  }
}

function verifyJwt(
  token: string,
  key: KeyObject,
): { header: Record<string, unknown>; claims: Record<string, unknown> } {
  const parts = token.split('.');
  if (parts.length !== 3) throw new OAuthError('invalid_grant', 'assertion is not a JWS');
  let header: Record<string, unknown>;
  let claims: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
  } catch {
    throw new OAuthError('invalid_grant', 'assertion is not JSON');
  }
  if (header.alg !== 'RS256') throw new OAuthError('invalid_grant', 'alg must be RS256');
  const ok = crypto.verify(
    'sha256',
    Buffer.from(`${parts[0]}.${parts[1]}`),
    key,
    Buffer.from(parts[2]!, 'base64url'),
  );
  if (!ok) throw new OAuthError('invalid_grant', 'Invalid JWT Signature.');
  return { header, claims };
}

/** RFC 7523 section 3, items 1 to 7, for an assertion already verified. */
function checkClaims(
  claims: Record<string, unknown>,
  audience: string,
  nowSec: number,
  error: string,
  seenJti?: Set<string>,
): void {
  if (typeof claims.iss !== 'string') throw new OAuthError(error, 'iss missing');
  if (typeof claims.sub !== 'string') throw new OAuthError(error, 'sub missing');
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!aud.includes(audience)) throw new OAuthError(error, 'aud is not this token endpoint');
  if (typeof claims.exp !== 'number') throw new OAuthError(error, 'exp missing');
  if (claims.exp <= nowSec) throw new OAuthError(error, 'assertion expired');
  if (typeof claims.nbf === 'number' && claims.nbf > nowSec + 60)
    throw new OAuthError(error, 'assertion not yet valid');
  if (typeof claims.iat === 'number' && claims.iat > nowSec + 60)
    throw new OAuthError(error, 'iat in the future');
  if (seenJti) {
    if (typeof claims.jti !== 'string') throw new OAuthError(error, 'jti missing');
    if (seenJti.has(claims.jti)) throw new OAuthError(error, 'jti replayed');
    seenJti.add(claims.jti);
  }
}

export async function startOAuthServer(opts: OAuthServerOptions): Promise<OAuthServer> {
  const now = opts.now ?? Date.now;
  const clients = new Map(opts.clients.map((c) => [c.clientId, c]));
  const accounts = new Map((opts.serviceAccounts ?? []).map((a) => [a.clientEmail, a]));
  const codes = new Map<string, IssuedCode>();
  const devices = new Map<string, DeviceGrant>();
  const byUserCode = new Map<string, DeviceGrant>();
  const seenJti = new Set<string>();
  const sockets = new Set<Socket>();
  let origin = '';
  const tokenUrl = () => `${origin}/token`;

  const state: Omit<
    OAuthServer,
    'origin' | 'authorizeUrl' | 'tokenUrl' | 'deviceAuthorizationUrl' | 'close'
  > = {
    tokenCalls: [],
    authorizeQueries: [],
    consent: 'approve',
    tooEarlyPolls: 0,
    approve: (uc) => void (byUserCode.get(uc)!.status = 'approved'),
    deny: (uc) => void (byUserCode.get(uc)!.status = 'denied'),
    expire: (uc) => void (byUserCode.get(uc)!.expiresAt = now()),
  };

  function checkScope(client: ClientRegistration, scope: string): void {
    const wanted = scope.split(' ').filter(Boolean);
    if (client.scopes && wanted.some((s) => !client.scopes!.includes(s))) {
      throw new OAuthError('invalid_scope', 'scope not allowed for this client');
    }
  }

  function issue(scope: string, refresh: boolean): Record<string, unknown> {
    return {
      access_token: `at-${random()}`,
      token_type: 'Bearer',
      expires_in: 3600,
      scope,
      ...(refresh ? { refresh_token: `rt-${random()}` } : {}),
    };
  }

  // -- authorization endpoint (RFC 6749 section 4.1.1, 4.1.2) -----------------------------------
  function authorize(q: URLSearchParams): { status: number; location?: string; page?: string } {
    state.authorizeQueries.push(q);
    try {
      single(q);
    } catch {
      return { status: 400, page: 'repeated parameter' };
    }
    const client = clients.get(q.get('client_id') ?? '');
    const redirectUri = q.get('redirect_uri') ?? '';
    // never redirect to an unverified URI (section 4.1.2.1)
    if (!client) return { status: 400, page: 'unknown client' };
    if (!redirectMatches(client.redirectUris ?? [], redirectUri))
      return { status: 400, page: 'bad redirect_uri' };
    const back = (params: Record<string, string>) => {
      const u = new URL(redirectUri);
      for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
      const st = q.get('state');
      if (st !== null) u.searchParams.set('state', st);
      return { status: 302, location: u.toString() };
    };
    if (q.get('response_type') !== 'code') return back({ error: 'unsupported_response_type' });
    const challenge = q.get('code_challenge');
    if (!challenge) return back({ error: 'invalid_request', error_description: 'code challenge required' });
    if (q.get('code_challenge_method') !== 'S256')
      return back({ error: 'invalid_request', error_description: 'transform algorithm not supported' });
    if (!UNRESERVED_43_128.test(challenge))
      return back({ error: 'invalid_request', error_description: 'bad code_challenge' });
    const scope = q.get('scope') ?? '';
    try {
      checkScope(client, scope);
    } catch {
      return back({ error: 'invalid_scope' });
    }
    if (state.consent === 'deny')
      return back({ error: 'access_denied', error_description: 'The resource owner denied the request.' });
    const rule = opts.refreshTokens ?? 'always';
    const offline =
      rule === 'always' ||
      (rule === 'access_type_offline' && q.get('access_type') === 'offline') ||
      (rule === 'offline_access_scope' && scope.split(' ').includes('offline_access'));
    const code = random();
    codes.set(code, {
      clientId: client.clientId,
      redirectUri,
      challenge,
      scope,
      offline,
      expiresAt: now() + 600_000,
      used: false,
    });
    return back({ code });
  }

  // -- client authentication (RFC 6749 section 2.3, RFC 7523 section 2.2 and 3) ------------------
  function authenticate(req: http.IncomingMessage, p: URLSearchParams, call: TokenCall): ClientRegistration {
    const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? '');
    const methods = [basic, p.has('client_secret'), p.has('client_assertion')].filter(Boolean).length;
    if (methods > 1) throw new OAuthError('invalid_request', 'more than one client authentication method');
    const clientId = p.get('client_id') ?? '';
    if (basic) {
      call.auth = 'basic';
      const [id, secret] = Buffer.from(basic[1]!, 'base64')
        .toString('utf8')
        .split(':')
        .map(decodeURIComponent);
      const c = clients.get(id ?? '');
      if (!c || c.clientSecret === undefined || c.clientSecret !== secret)
        throw new OAuthError('invalid_client', 'client authentication failed', 401);
      if (clientId && clientId !== id) throw new OAuthError('invalid_request', 'client_id differs');
      return c;
    }
    if (p.has('client_assertion')) {
      call.auth = 'assertion';
      if (p.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer')
        throw new OAuthError('invalid_request', 'unsupported client_assertion_type');
      const token = p.get('client_assertion')!;
      let unverified: Record<string, unknown>;
      try {
        unverified = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'));
      } catch {
        throw new OAuthError('invalid_client', 'client assertion is not a JWT', 401);
      }
      const c = clients.get(typeof unverified.iss === 'string' ? unverified.iss : '');
      if (!c?.certificatePem)
        throw new OAuthError('invalid_client', 'no certificate registered for iss', 401);
      const cert = new crypto.X509Certificate(c.certificatePem);
      let verified;
      try {
        verified = verifyJwt(token, cert.publicKey);
        checkClaims(verified.claims, tokenUrl(), Math.floor(now() / 1000), 'invalid_client', seenJti);
      } catch (err) {
        throw new OAuthError('invalid_client', (err as OAuthError).description, 401);
      }
      const { header, claims } = verified;
      if (header.x5t !== b64url(crypto.createHash('sha1').update(cert.raw).digest()))
        throw new OAuthError('invalid_client', 'x5t does not match the registered certificate', 401);
      if (
        header['x5t#S256'] !== undefined &&
        header['x5t#S256'] !== b64url(crypto.createHash('sha256').update(cert.raw).digest())
      )
        throw new OAuthError('invalid_client', 'x5t#S256 does not match the registered certificate', 401);
      if (claims.iss !== claims.sub) throw new OAuthError('invalid_client', 'iss and sub differ', 401);
      if (clientId && clientId !== c.clientId) throw new OAuthError('invalid_request', 'client_id differs');
      return c;
    }
    const c = clients.get(clientId);
    if (p.has('client_secret')) {
      call.auth = 'post';
      if (!c || c.clientSecret === undefined || c.clientSecret !== p.get('client_secret'))
        throw new OAuthError('invalid_client', 'client authentication failed', 401);
      return c;
    }
    call.auth = 'none';
    if (!c) throw new OAuthError('invalid_client', 'unknown client', 401);
    if (c.clientSecret !== undefined || c.certificatePem !== undefined)
      throw new OAuthError('invalid_client', 'client authentication required', 401);
    return c;
  }

  // -- token endpoint ----------------------------------------------------------------------------
  function token(req: http.IncomingMessage, p: URLSearchParams, call: TokenCall): Record<string, unknown> {
    single(p);
    const grant = p.get('grant_type');
    if (grant === JWT_BEARER) return jwtBearer(p);
    const client = authenticate(req, p, call);
    switch (grant) {
      case 'authorization_code': {
        const code = codes.get(p.get('code') ?? '');
        if (!code || code.clientId !== client.clientId) throw new OAuthError('invalid_grant', 'unknown code');
        if (code.used) throw new OAuthError('invalid_grant', 'code already used');
        code.used = true;
        if (code.expiresAt <= now()) throw new OAuthError('invalid_grant', 'code expired');
        if (p.get('redirect_uri') !== code.redirectUri)
          throw new OAuthError('invalid_grant', 'redirect_uri differs from the authorization request');
        const verifier = p.get('code_verifier') ?? '';
        if (!UNRESERVED_43_128.test(verifier)) throw new OAuthError('invalid_grant', 'bad code_verifier');
        const s256 = b64url(crypto.createHash('sha256').update(verifier, 'ascii').digest());
        if (s256 !== code.challenge) throw new OAuthError('invalid_grant', 'code_verifier does not match');
        return issue(code.scope, code.offline);
      }
      case DEVICE_CODE: {
        const d = devices.get(p.get('device_code') ?? '');
        if (!d || d.clientId !== client.clientId)
          throw new OAuthError('invalid_grant', 'unknown device_code');
        const t = now();
        d.polls++;
        const since = d.lastPoll ?? d.issuedAt;
        d.lastPoll = t;
        if (d.status === 'redeemed') throw new OAuthError('invalid_grant', 'device_code already used');
        if (t >= d.expiresAt) throw new OAuthError('expired_token', 'the device_code has expired');
        if (d.status === 'denied') throw new OAuthError('access_denied', 'the user denied the request');
        const tooEarly = t - since < d.intervalSec * 1000;
        if (tooEarly) state.tooEarlyPolls++;
        if (tooEarly || opts.device?.slowDownPolls?.includes(d.polls)) {
          d.intervalSec += 5;
          throw new OAuthError('slow_down', 'polling too fast');
        }
        if (d.status === 'pending') throw new OAuthError('authorization_pending', 'waiting for the user');
        d.status = 'redeemed';
        return issue(d.scope, true);
      }
      case 'client_credentials': {
        if (call.auth === 'none')
          throw new OAuthError('invalid_client', 'client authentication required', 401);
        const scope = p.get('scope') ?? '';
        checkScope(client, scope);
        return issue(scope, false);
      }
      default:
        throw new OAuthError('unsupported_grant_type', `grant_type ${grant ?? '(none)'}`);
    }
  }

  /** RFC 7523 section 2.1 and 3, with Google's rules for service accounts. */
  function jwtBearer(p: URLSearchParams): Record<string, unknown> {
    const assertion = p.get('assertion');
    if (!assertion) throw new OAuthError('invalid_request', 'assertion missing');
    let iss: unknown;
    try {
      iss = JSON.parse(Buffer.from(assertion.split('.')[1] ?? '', 'base64url').toString('utf8')).iss;
    } catch {
      throw new OAuthError('invalid_grant', 'assertion is not a JWT');
    }
    const sa = accounts.get(typeof iss === 'string' ? iss : '');
    if (!sa) throw new OAuthError('invalid_grant', 'Invalid grant: account not found');
    const { header, claims } = verifyJwt(assertion, sa.publicKey);
    if (header.kid !== undefined && header.kid !== sa.keyId)
      throw new OAuthError('invalid_grant', 'unknown kid');
    const nowSec = Math.floor(now() / 1000);
    checkClaims(claims, tokenUrl(), nowSec, 'invalid_grant');
    if (typeof claims.iat !== 'number' || (claims.exp as number) - claims.iat > 3600)
      throw new OAuthError(
        'invalid_grant',
        'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.',
      );
    if (!sa.users.includes(claims.sub as string))
      throw new OAuthError('invalid_grant', 'Invalid email or User ID');
    const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : [];
    if (!scopes.length || scopes.some((s) => !sa.delegatedScopes.includes(s)))
      throw new OAuthError(
        'unauthorized_client',
        'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.',
      );
    return issue(scopes.join(' '), false);
  }

  // -- device authorization endpoint (RFC 8628 section 3.1, 3.2) -------------------------------
  function deviceAuthorization(req: http.IncomingMessage, p: URLSearchParams): Record<string, unknown> {
    single(p);
    const call: TokenCall = { params: p, auth: 'none', status: 0 };
    const client = authenticate(req, p, call);
    const scope = p.get('scope') ?? '';
    checkScope(client, scope);
    const deviceCode = random();
    let userCode = '';
    for (const b of crypto.randomBytes(8)) userCode += USER_CODE_CHARS[b % USER_CODE_CHARS.length];
    userCode = `${userCode.slice(0, 4)}-${userCode.slice(4)}`;
    const cfg = opts.device ?? {};
    const expiresIn = cfg.expiresIn ?? 900;
    const interval = cfg.interval === null ? 5 : (cfg.interval ?? 5);
    const d: DeviceGrant = {
      clientId: client.clientId,
      userCode,
      scope,
      expiresAt: now() + expiresIn * 1000,
      intervalSec: interval,
      issuedAt: now(),
      polls: 0,
      status: 'pending',
    };
    devices.set(deviceCode, d);
    byUserCode.set(userCode, d);
    return {
      device_code: deviceCode,
      user_code: userCode,
      [cfg.verificationField ?? 'verification_uri']: `${origin}/device`,
      verification_uri_complete: `${origin}/device?user_code=${userCode}`,
      expires_in: expiresIn,
      ...(cfg.interval === null ? {} : { interval }),
    };
  }

  function json(res: http.ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}) {
    res.writeHead(status, {
      'content-type': 'application/json;charset=UTF-8',
      'cache-control': 'no-store',
      pragma: 'no-cache',
      ...extra,
    });
    res.end(JSON.stringify(body));
  }

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', origin);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (url.pathname === '/authorize' && req.method === 'GET') {
        const r = authorize(url.searchParams);
        res.writeHead(r.status, r.location ? { location: r.location } : { 'content-type': 'text/plain' });
        res.end(r.page ?? '');
        return;
      }
      const isToken = url.pathname === '/token';
      const isDevice = url.pathname === '/device_authorization';
      if ((!isToken && !isDevice) || req.method !== 'POST') {
        res.writeHead(404).end();
        return;
      }
      const params = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const call: TokenCall = { params, auth: 'none', status: 0 };
      if (isToken) state.tokenCalls.push(call);
      const canned = state.override?.(url.pathname, params);
      if (canned) {
        call.status = canned.status;
        return json(res, canned.status, canned.body);
      }
      try {
        if (!/^application\/x-www-form-urlencoded\b/i.test(req.headers['content-type'] ?? ''))
          throw new OAuthError('invalid_request', 'form encoding required');
        const body = isToken ? token(req, params, call) : deviceAuthorization(req, params);
        call.status = 200;
        json(res, 200, body);
      } catch (err) {
        if (!(err instanceof OAuthError)) throw err;
        call.status = err.status;
        call.error = err.error;
        json(
          res,
          err.status,
          { error: err.error, error_description: err.description },
          err.status === 401 ? { 'www-authenticate': 'Basic realm="token"' } : {},
        );
      }
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return Object.assign(state, {
    origin,
    authorizeUrl: `${origin}/authorize`,
    tokenUrl: tokenUrl(),
    deviceAuthorizationUrl: `${origin}/device_authorization`,
    close: () =>
      new Promise<void>((ok) => {
        for (const s of sockets) s.destroy();
        server.close(() => ok());
      }),
  });
}
