// The JWT bearer grant (RFC 7523 section 2.1) as Google service accounts with domain-wide
// delegation use it: the service account signs "let me act as <mailbox>", no user consent at runtime.
import type { TokenClient } from '../token-client.js';
import type { GrantContext } from './errors.js';
import { numericDate, signRs256Jwt } from './jwt.js';
import type { ProviderFlavor } from './providers.js';
import { accessTokenOf, tokenRequest, type AccessToken } from './request.js';
import type { ServiceAccountKey } from './service-account-key.js';

export const JWT_BEARER_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/** Google refuses assertions that live longer than an hour. */
const MAX_LIFETIME_SEC = 3600;

export interface JwtBearerRequest {
  key: ServiceAccountKey;
  /** the mailbox to act as (JWT `sub`) */
  subject: string;
  /** space-separated, e.g. https://mail.google.com/ */
  scope: string;
  /** default: the key's token_uri; also the JWT `aud` */
  tokenUrl?: string;
  /** default google: the key file format is Google's */
  flavor?: ProviderFlavor;
  /** ms clock (tests) */
  now?: () => number;
}

/** The signed assertion: {alg RS256, typ JWT, kid} {iss, sub, scope, aud, iat, exp <= iat + 3600}. */
export function serviceAccountAssertion(req: JwtBearerRequest): string {
  if (!/^[^\s@]+@[^\s@]+$/.test(req.subject)) throw new RangeError('subject must be a mailbox address');
  const iat = numericDate((req.now ?? Date.now)());
  return signRs256Jwt(
    req.key.privateKeyId !== undefined ? { kid: req.key.privateKeyId } : {},
    {
      iss: req.key.clientEmail,
      sub: req.subject,
      scope: req.scope,
      aud: req.tokenUrl ?? req.key.tokenUri,
      iat,
      exp: iat + MAX_LIFETIME_SEC,
    },
    req.key.privateKey,
  );
}

export async function jwtBearerGrant(client: TokenClient, req: JwtBearerRequest): Promise<AccessToken> {
  const tokenUrl = req.tokenUrl ?? req.key.tokenUri;
  const ctx: GrantContext = {
    grant: 'jwt_bearer',
    flavor: req.flavor ?? 'google',
    ...(req.key.clientId !== undefined ? { clientId: req.key.clientId } : {}),
    mailbox: req.subject,
    scope: req.scope,
    endpoint: tokenUrl,
  };
  const form = new URLSearchParams({
    grant_type: JWT_BEARER_GRANT_TYPE,
    assertion: serviceAccountAssertion({ ...req, tokenUrl }),
  });
  return accessTokenOf(await tokenRequest(client, tokenUrl, form, ctx));
}
