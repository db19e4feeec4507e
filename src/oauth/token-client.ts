// The OAuth2 refresh_token grant over HTTP (RFC 6749 section 6), and the form POST + token response
// parsing that the other grants (src/oauth/grants/) share. Node's own http/https client with one
// keep-alive agent per scheme for all token endpoints (not undici: it cost `serve` 8-16 MiB
// of RSS, docs/performance.md "The token client without undici"); every request is bounded by one overall timeout
// (connect + headers + body).
// Error texts carry only status codes, OAuth error codes and socket error codes: never a token,
// secret, or response body. The server's error_description travels apart, in `oauth`.
import http from 'node:http';
import https from 'node:https';

export interface RefreshRequest {
  /** `{tenant}` already substituted */
  tokenUrl: string;
  clientId: string;
  clientSecret?: string;
  refreshToken: string;
  scope: string;
}

export interface RefreshResult {
  accessToken: string;
  /** seconds, from `expires_in` (3600 when the server omits it, as RFC 6749 allows) */
  expiresInSec: number;
  /** present when the server rotated the refresh token */
  refreshToken?: string;
}

/**
 * `permanent`: the grant itself is unusable (invalid_grant, invalid_client, unauthorized_client);
 * retrying cannot help until an operator changes the credentials.
 * `transient`: network, timeout, 5xx, 429, malformed response, other 4xx; retried with backoff.
 */
export type GrantErrorKind = 'permanent' | 'transient';

/** The OAuth error response body (RFC 6749 section 5.2), as far as it was printable. */
export interface OAuthErrorDetails {
  /** e.g. "invalid_grant", "authorization_pending" */
  error: string;
  /** `error_description`, control characters removed, at most 400 characters */
  description?: string;
  /** Microsoft's `error_codes` (the numbers of its AADSTS codes) */
  errorCodes?: number[];
}

/** A successful access token response (RFC 6749 section 5.1). */
export interface TokenResponse {
  accessToken: string;
  /** seconds, from `expires_in` (3600 when the server omits it, as RFC 6749 allows) */
  expiresInSec: number;
  refreshToken?: string;
  /** the granted scope, when the server says it */
  scope?: string;
  tokenType?: string;
}

export class TokenGrantError extends Error {
  readonly code: 'TOKEN_GRANT_PERMANENT' | 'TOKEN_GRANT_TRANSIENT';
  constructor(
    readonly kind: GrantErrorKind,
    /** short, secret-free reason, e.g. "HTTP 503", "timeout after 5000ms", "invalid_grant" */
    readonly reason: string,
    readonly status?: number,
    /** the server's error body, when it sent one */
    readonly oauth?: OAuthErrorDetails,
  ) {
    super(reason);
    this.name = 'TokenGrantError';
    this.code = kind === 'permanent' ? 'TOKEN_GRANT_PERMANENT' : 'TOKEN_GRANT_TRANSIENT';
  }
}

/** OAuth error codes that mean "these credentials will never work again as they are". */
const PERMANENT_ERRORS = new Set(['invalid_grant', 'invalid_client', 'unauthorized_client']);
const MAX_BODY_BYTES = 64 * 1024;
/** how long a kept-alive connection to a token endpoint may stay idle */
const KEEP_ALIVE_MS = 30_000;
/** a request on a kept-alive socket the server had closed is sent again, this often in all */
const STALE_SOCKET_ATTEMPTS = 3;

/** Keeps only a short, printable OAuth error code (servers' own texts may be long or odd). */
function oauthErrorCode(v: unknown): string | undefined {
  return typeof v === 'string' && /^[\w.-]{1,64}$/.test(v) ? v : undefined;
}

/** The OAuth error body of a non-2xx answer, or undefined when it has no printable `error`. */
export function oauthErrorDetails(json: Record<string, unknown> | undefined): OAuthErrorDetails | undefined {
  const error = oauthErrorCode(json?.error);
  if (!error) return undefined;
  const rawDesc = json?.error_description;
  // eslint-disable-next-line no-control-regex
  const description = typeof rawDesc === 'string' ? rawDesc.replace(/[\x00-\x1f\x7f]+/g, ' ').trim() : '';
  const codes = Array.isArray(json?.error_codes)
    ? json.error_codes.filter((c): c is number => Number.isSafeInteger(c)).slice(0, 8)
    : [];
  return {
    error,
    ...(description ? { description: description.slice(0, 400) } : {}),
    ...(codes.length ? { errorCodes: codes } : {}),
  };
}

export class TokenClient {
  private readonly agents: { 'http:': http.Agent; 'https:': https.Agent };
  private readonly timeoutMs: number;
  /** the requests in flight, which close() aborts */
  private readonly inFlight = new Set<AbortController>();
  private closed = false;

  constructor(opts: { timeoutMs: number }) {
    this.timeoutMs = opts.timeoutMs;
    // `timeout` on a keep-alive agent: an idle pooled socket is closed after it (and the server's
    // own Keep-Alive hint is honoured when shorter)
    const agent = { keepAlive: true, timeout: KEEP_ALIVE_MS };
    this.agents = { 'http:': new http.Agent(agent), 'https:': new https.Agent(agent) };
  }

  async refresh(req: RefreshRequest): Promise<RefreshResult> {
    const form = new URLSearchParams({
      grant_type: 'refresh_token',
      client_id: req.clientId,
      refresh_token: req.refreshToken,
    });
    if (req.scope) form.set('scope', req.scope);
    if (req.clientSecret) form.set('client_secret', req.clientSecret);
    const res = await this.requestToken(req.tokenUrl, form);
    return {
      accessToken: res.accessToken,
      expiresInSec: res.expiresInSec,
      ...(res.refreshToken !== undefined ? { refreshToken: res.refreshToken } : {}),
    };
  }

  /**
   * POSTs a token request and parses the access token response. Error answers throw a
   * TokenGrantError that carries the server's OAuth error body (`oauth`).
   */
  async requestToken(tokenUrl: string, form: URLSearchParams): Promise<TokenResponse> {
    const { status, json } = await this.postForm(tokenUrl, form);
    if (status < 200 || status >= 300) {
      const oauth = oauthErrorDetails(json);
      const error = oauth?.error;
      if ((status === 400 || status === 401) && error && PERMANENT_ERRORS.has(error)) {
        throw new TokenGrantError('permanent', error, status, oauth);
      }
      throw new TokenGrantError(
        'transient',
        error ? `HTTP ${status} ${error}` : `HTTP ${status}`,
        status,
        oauth,
      );
    }
    if (!json) throw new TokenGrantError('transient', 'invalid JSON in token response', status);
    const accessToken = json.access_token;
    if (typeof accessToken !== 'string' || accessToken === '') {
      throw new TokenGrantError('transient', 'token response has no access_token', status);
    }
    const rawExpires = typeof json.expires_in === 'string' ? Number(json.expires_in) : json.expires_in;
    const expiresInSec =
      rawExpires === undefined ? 3600 : typeof rawExpires === 'number' && rawExpires > 0 ? rawExpires : NaN;
    if (!Number.isFinite(expiresInSec)) {
      throw new TokenGrantError('transient', 'token response has an invalid expires_in', status);
    }
    const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
    const refreshToken = str(json.refresh_token);
    const scope = str(json.scope);
    const tokenType = str(json.token_type);
    return {
      accessToken,
      expiresInSec,
      ...(refreshToken !== undefined ? { refreshToken } : {}),
      ...(scope !== undefined ? { scope } : {}),
      ...(tokenType !== undefined ? { tokenType } : {}),
    };
  }

  /**
   * POSTs a form (application/x-www-form-urlencoded) to an OAuth endpoint; returns the status and
   * the body when it is a JSON object. Network failures and timeouts throw a transient
   * TokenGrantError.
   */
  async postForm(
    url: string,
    form: URLSearchParams,
  ): Promise<{ status: number; json?: Record<string, unknown> }> {
    const abort = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, this.timeoutMs);
    this.inFlight.add(abort);
    let status: number;
    let text: string;
    try {
      const res = await this.post(url, form.toString(), abort.signal);
      status = res.statusCode ?? 0;
      text = await readCapped(res);
    } catch (err) {
      throw this.networkError(err, timedOut);
    } finally {
      clearTimeout(timer);
      this.inFlight.delete(abort);
    }

    let json: Record<string, unknown> | undefined;
    try {
      const parsed: unknown = JSON.parse(text);
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed))
        json = parsed as Record<string, unknown>;
    } catch {}
    return json ? { status, json } : { status };
  }

  /**
   * One POST; resolves with the response head, its body still to read. Redirects are not followed.
   * A request that failed on a kept-alive socket before any answer is sent again on another: the
   * server closed that idle socket as the request went out (the race every keep-alive client has;
   * the server saw no request), and a token request is safe to repeat.
   */
  private post(url: string, body: string, signal: AbortSignal, attempt = 1): Promise<http.IncomingMessage> {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      return Promise.reject(new TokenGrantError('transient', `unsupported URL scheme ${u.protocol}`));
    }
    const request = u.protocol === 'https:' ? https.request : http.request;
    return new Promise((resolve, reject) => {
      let answered = false;
      const req = request(
        u,
        {
          method: 'POST',
          agent: this.agents[u.protocol as 'http:' | 'https:'],
          signal,
          headers: {
            'content-type': 'application/x-www-form-urlencoded',
            accept: 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          answered = true;
          resolve(res);
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        // after the answer began, the error is the body's (readCapped sees it), never a resend
        if (answered) return;
        const stale = req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE');
        if (stale && !signal.aborted && attempt < STALE_SOCKET_ATTEMPTS) {
          resolve(this.post(url, body, signal, attempt + 1));
        } else reject(err);
      });
      req.end(body);
    });
  }

  private networkError(err: unknown, timedOut: boolean): TokenGrantError {
    if (err instanceof TokenGrantError) return err;
    // shutting down: say so, not an abort that reads like a network fault
    if (this.closed) return new TokenGrantError('transient', 'token client closed');
    if (timedOut) return new TokenGrantError('transient', `timeout after ${this.timeoutMs}ms`);
    // node:http's errors carry the socket's code (ECONNREFUSED, ENOTFOUND, a certificate's code)
    const code = (err as { code?: unknown } | undefined)?.code;
    return new TokenGrantError(
      'transient',
      typeof code === 'string' ? `network error ${code}` : 'network error',
    );
  }

  /** aborts in-flight requests and closes kept-alive sockets */
  close(): void {
    this.closed = true;
    for (const a of this.inFlight) a.abort();
    this.agents['http:'].destroy();
    this.agents['https:'].destroy();
  }
}

async function readCapped(body: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const b of body as AsyncIterable<Buffer>) {
    size += b.length;
    if (size > MAX_BODY_BYTES) {
      body.destroy();
      throw new TokenGrantError('transient', 'token response too large');
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}
