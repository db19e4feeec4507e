// Client authentication at the token endpoint: client_secret_basic and client_secret_post
// (RFC 6749 section 2.3.1), private_key_jwt (RFC 7523 section 3, RFC 7521 section 4.2), or none
// for a public client.
import { isConfidential, secretsEqual, type Client } from './directory.js';
import { numericDate, parseJwt, verifyRs256 } from './jwt.js';
import { findClient, type Endpoint, type OAuthContext } from './oauth-context.js';
import {
  aadError,
  badClientAssertion,
  badClientSecret,
  missing,
  missingClientCredentials,
  oauthError,
  type TokenReply,
} from './oauth-errors.js';

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** Clock skew tolerated on JWT time claims. */
export const CLOCK_SKEW_SEC = 60;

export type ClientAuth = { ok: true; clientId: string; client?: Client } | { ok: false; reply: TokenReply };

type Basic = { id: string; secret: string } | 'malformed' | undefined;

function basicCredentials(header: string | undefined): Basic {
  if (!header) return undefined;
  const m = /^Basic\s+([A-Za-z0-9+/]+=*)\s*$/i.exec(header);
  if (!m) return /^Basic\b/i.test(header) ? 'malformed' : undefined;
  const text = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon < 0) return 'malformed';
  // RFC 6749 section 2.3.1: both halves are form-urlencoded before they are joined.
  const decode = (s: string) => decodeURIComponent(s.replace(/\+/g, ' '));
  try {
    return { id: decode(text.slice(0, colon)), secret: decode(text.slice(colon + 1)) };
  } catch {
    return 'malformed';
  }
}

function fail(reply: TokenReply): ClientAuth {
  return { ok: false, reply };
}

/**
 * Identify and authenticate the client of a token request. While no client is registered, an
 * unknown client_id passes as a public client whatever credentials it sends.
 */
export function authenticateClient(
  ctx: OAuthContext,
  form: URLSearchParams,
  authorization: string | undefined,
  endpoint: Endpoint,
): ClientAuth {
  const { style } = ctx;
  const basic = basicCredentials(authorization);
  if (basic === 'malformed') {
    const reply = oauthError(
      401,
      'invalid_client',
      'Malformed HTTP Basic client credentials.',
      undefined,
      'bad_client_auth',
    );
    reply.headers = { 'www-authenticate': 'Basic realm="token"' };
    return fail(reply);
  }
  // An empty parameter is an absent one (RFC 6749 section 3.1).
  const formSecret = form.get('client_secret') || null;
  const assertion = form.get('client_assertion') || null;
  if (basic && (formSecret !== null || assertion !== null)) {
    return fail(
      oauthError(
        400,
        'invalid_request',
        'The request uses more than one client authentication method.',
        undefined,
        'bad_client_auth',
      ),
    );
  }
  const formId = form.get('client_id') || null;
  if (basic && formId !== null && formId !== basic.id) {
    return fail(
      oauthError(
        401,
        'invalid_client',
        'client_id does not match the HTTP Basic credentials.',
        undefined,
        'bad_client_auth',
      ),
    );
  }
  let clientId = basic?.id ?? formId ?? undefined;
  const jwt = assertion ? parseJwt(assertion) : undefined;
  // RFC 7521 section 4.2: with an assertion the client_id parameter may be left out.
  if (!clientId && jwt && typeof jwt.payload.iss === 'string') clientId = jwt.payload.iss;
  if (!clientId) return fail(missing(style, 'client_id'));

  const found = findClient(ctx, clientId, endpoint.tenant);
  if (!found.ok) return found;
  const client = found.client;
  if (!client) return { ok: true, clientId };

  const secret = basic?.secret ?? formSecret ?? undefined;
  if (assertion !== null) {
    if (!isConfidential(client)) return fail(publicClientWithCredentials(ctx, clientId));
    const refused = checkClientAssertion(ctx, client, form.get('client_assertion_type'), assertion, endpoint);
    return refused ? fail(refused) : { ok: true, clientId, client };
  }
  if (secret !== undefined) {
    if (!isConfidential(client)) return fail(publicClientWithCredentials(ctx, clientId));
    if (client.clientSecret === undefined || !secretsEqual(secret, client.clientSecret)) {
      const reply = badClientSecret(style, clientId);
      if (basic) reply.headers = { 'www-authenticate': 'Basic realm="token"' };
      return fail(reply);
    }
    return { ok: true, clientId, client };
  }
  if (isConfidential(client)) return fail(missingClientCredentials(style));
  return { ok: true, clientId, client };
}

function publicClientWithCredentials(ctx: OAuthContext, clientId: string): TokenReply {
  if (ctx.style === 'microsoft')
    return aadError(
      401,
      'invalid_client',
      700025,
      "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
      undefined,
      'public_client_credentials',
    );
  return oauthError(
    401,
    'invalid_client',
    `Client ${clientId} has no credentials to present.`,
    undefined,
    'public_client_credentials',
  );
}

/** private_key_jwt: RS256, iss = sub = client_id, aud = this token URL, exp, jti; undefined when valid. */
function checkClientAssertion(
  ctx: OAuthContext,
  client: Client,
  assertionType: string | null,
  assertion: string,
  endpoint: Endpoint,
): TokenReply | undefined {
  const { style } = ctx;
  const refuse = (code: number, text: string, reason = 'bad_client_assertion') =>
    badClientAssertion(style, code, text, reason);
  if (assertionType !== CLIENT_ASSERTION_TYPE) {
    const text = `client_assertion_type must be ${CLIENT_ASSERTION_TYPE}.`;
    return style === 'microsoft'
      ? aadError(400, 'invalid_request', 700023, text, undefined, 'bad_client_assertion')
      : oauthError(400, 'invalid_request', text, undefined, 'bad_client_assertion');
  }
  const jwt = parseJwt(assertion);
  if (!jwt) return refuse(50027, 'JWT token is invalid or malformed.');
  if (!client.key)
    return refuse(
      700027,
      'Client assertion contains an invalid signature. [Reason - No certificate is registered for the application.]',
    );
  const x5t = jwt.header.x5t;
  const x5tS256 = jwt.header['x5t#S256'];
  if (
    (x5t !== undefined && x5t !== client.key.x5t) ||
    (x5tS256 !== undefined && x5tS256 !== client.key.x5tS256)
  ) {
    return refuse(
      700027,
      `Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '${String(x5t ?? x5tS256)}']`,
    );
  }
  if (!verifyRs256(jwt, client.key.key))
    return refuse(
      700027,
      'Client assertion contains an invalid signature. [Reason - The signature does not verify with the registered key.]',
    );
  const p = jwt.payload;
  if (p.iss !== client.clientId || p.sub !== client.clientId)
    return refuse(700021, "Client assertion application identifier doesn't match 'client_id' parameter.");
  const aud = Array.isArray(p.aud) ? p.aud : [p.aud];
  if (!aud.includes(endpoint.url))
    return refuse(
      50027,
      `Invalid JWT token. The audience must be '${endpoint.url}', got '${String(p.aud)}'.`,
    );
  const now = Date.now() / 1000;
  const exp = numericDate(p, 'exp');
  const nbf = numericDate(p, 'nbf');
  if (exp === undefined) return refuse(50027, 'Invalid JWT token. The exp claim is required.');
  if (exp <= now - CLOCK_SKEW_SEC || (nbf !== undefined && nbf > now + CLOCK_SKEW_SEC))
    return refuse(700024, 'Client assertion is not within its valid time range.', 'client_assertion_expired');
  if (typeof p.jti !== 'string' || p.jti === '')
    return refuse(50027, 'Invalid JWT token. The jti claim is required.');
  return undefined;
}
