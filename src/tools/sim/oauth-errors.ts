// OAuth error answers (RFC 6749 section 5.2) in each provider's wording. Microsoft's carry the
// AADSTS number at the start of error_description and in error_codes, with the trace lines its
// descriptions end with; Google's are the short texts its endpoints answer.
import { randomUUID } from 'node:crypto';
import type { SimStyle } from './types.js';

export interface TokenReply {
  status: number;
  body: Record<string, unknown>;
  /** the user the request named, for per-user counting */
  user?: string;
  /** why the request was refused, for /stats (oauth.refused) */
  reason?: string;
  headers?: Record<string, string>;
}

export function oauthError(
  status: number,
  error: string,
  description: string,
  user?: string,
  reason?: string,
): TokenReply {
  return { status, body: { error, error_description: description }, user, reason };
}

/** Microsoft's error body: `AADSTS<code>: <text>` plus error_codes, timestamp and trace ids. */
export function aadError(
  status: number,
  error: string,
  code: number,
  text: string,
  user?: string,
  reason?: string,
): TokenReply {
  const timestamp = new Date()
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z');
  const traceId = randomUUID();
  const correlationId = randomUUID();
  return {
    status,
    body: {
      error,
      error_description: `AADSTS${code}: ${text} Trace ID: ${traceId} Correlation ID: ${correlationId} Timestamp: ${timestamp}`,
      error_codes: [code],
      timestamp,
      trace_id: traceId,
      correlation_id: correlationId,
      error_uri: `https://login.microsoftonline.com/error?code=${code}`,
    },
    user,
    reason,
  };
}

/** The request's wording of "parameter X is missing", as each provider words it. */
export function missing(style: SimStyle, param: string, user?: string): TokenReply {
  if (style === 'microsoft') {
    return aadError(
      400,
      'invalid_request',
      900144,
      `The request body must contain the following parameter: '${param}'.`,
      user,
      'missing_parameter',
    );
  }
  if (param === 'client_id')
    return oauthError(
      400,
      'invalid_request',
      'Could not determine client ID from request.',
      undefined,
      'missing_parameter',
    );
  return oauthError(
    400,
    'invalid_request',
    `Missing required parameter: ${param}`,
    user,
    'missing_parameter',
  );
}

/** A refresh token (or grant) that is unknown, expired or revoked. */
export function invalidGrant(style: SimStyle, user?: string, reason = 'refresh_token_invalid'): TokenReply {
  return style === 'microsoft'
    ? aadError(
        400,
        'invalid_grant',
        70000,
        "The provided value for the 'refresh_token' is not valid. Token has been expired or revoked.",
        user,
        reason,
      )
    : oauthError(400, 'invalid_grant', 'Token has been expired or revoked.', user, reason);
}

/**
 * A rotated-away refresh token presented again: the grant is revoked. Neither Google nor Microsoft
 * detect reuse (Microsoft does not even rotate strictly); Auth0 and Okta do and answer a plain
 * invalid_grant (Auth0: "Unknown or invalid refresh token.", logging "reused refresh token
 * detected"). The simulator keeps each style's envelope (AADSTS50173 is Entra's "grant revoked")
 * and says why, so a log shows what the client did wrong.
 */
export function refreshTokenReused(style: SimStyle, user: string): TokenReply {
  const why = 'refresh token reuse detected; the grant is revoked.';
  return style === 'microsoft'
    ? aadError(
        400,
        'invalid_grant',
        50173,
        `The provided grant has expired due to it being revoked: ${why}`,
        user,
        'refresh_token_reused',
      )
    : oauthError(
        400,
        'invalid_grant',
        `Token has been expired or revoked: ${why}`,
        user,
        'refresh_token_reused',
      );
}

/** Google's terse answer for a bad authorization code or a device code it does not know. */
export function googleBadRequest(reason: string, user?: string): TokenReply {
  return oauthError(400, 'invalid_grant', 'Bad Request', user, reason);
}

/** An application the directory (tenant) does not know: AADSTS700016 / Google's invalid_client. */
export function unknownClient(style: SimStyle, clientId: string, tenant: string | undefined): TokenReply {
  if (style === 'microsoft') {
    return aadError(
      400,
      'unauthorized_client',
      700016,
      `Application with identifier '${clientId}' was not found in the directory '${tenant ?? 'common'}'. ` +
        'This can happen if the application has not been installed by the administrator of the tenant or ' +
        'consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.',
      undefined,
      'unknown_client',
    );
  }
  return oauthError(401, 'invalid_client', 'The OAuth client was not found.', undefined, 'unknown_client');
}

export function badClientSecret(style: SimStyle, clientId: string): TokenReply {
  if (style === 'microsoft') {
    return aadError(
      401,
      'invalid_client',
      7000215,
      'Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, ' +
        `not the client secret ID, for a secret added to app '${clientId}'.`,
      undefined,
      'bad_client_secret',
    );
  }
  return oauthError(401, 'invalid_client', 'Unauthorized', undefined, 'bad_client_secret');
}

export function missingClientCredentials(style: SimStyle): TokenReply {
  if (style === 'microsoft') {
    return aadError(
      401,
      'invalid_client',
      7000218,
      "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
      undefined,
      'missing_client_credentials',
    );
  }
  return oauthError(
    400,
    'invalid_request',
    'client_secret is missing.',
    undefined,
    'missing_client_credentials',
  );
}

/** A client_assertion (private_key_jwt) that does not authenticate the client. */
export function badClientAssertion(style: SimStyle, code: number, text: string, reason: string): TokenReply {
  if (style === 'microsoft') return aadError(401, 'invalid_client', code, text, undefined, reason);
  return oauthError(401, 'invalid_client', text, undefined, reason);
}

/** RFC 6749 section 3.1 and 3.2: parameters must not be included more than once. */
export function duplicateParameter(form: URLSearchParams): string | undefined {
  const seen = new Set<string>();
  for (const key of form.keys()) {
    if (seen.has(key)) return key;
    seen.add(key);
  }
  return undefined;
}

export function repeatedParameter(style: SimStyle, param: string): TokenReply {
  const text = `The parameter '${param}' is included more than once.`;
  return style === 'microsoft'
    ? aadError(
        400,
        'invalid_request',
        9002313,
        `Invalid request. Request is malformed or invalid. ${text}`,
        undefined,
        'repeated_parameter',
      )
    : oauthError(400, 'invalid_request', text, undefined, 'repeated_parameter');
}
