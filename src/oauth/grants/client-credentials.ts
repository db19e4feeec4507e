// The client credentials grant (RFC 6749 section 4.4) as Microsoft app-only access uses it: the app
// authenticates with a client secret, or with a certificate as a JWT client assertion
// (RFC 7523 section 2.2, "private_key_jwt"), and gets a token for any mailbox it was given access to.
import crypto, { type KeyObject } from 'node:crypto';
import type { TokenClient } from '../token-client.js';
import { CredentialError, type GrantContext } from './errors.js';
import { numericDate, rsaPrivateKey, signRs256Jwt } from './jwt.js';
import { MICROSOFT_APP_ONLY_SCOPE, providerFlavor, type ProviderFlavor } from './providers.js';
import { accessTokenOf, tokenRequest, type AccessToken } from './request.js';

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** Microsoft's recommendation for a client assertion's lifetime. */
const ASSERTION_LIFETIME_SEC = 600;

export interface ClientCertificate {
  privateKey: KeyObject;
  /** base64url SHA-1 thumbprint of the DER certificate (the `x5t` Microsoft matches) */
  x5t: string;
  /** base64url SHA-256 thumbprint (`x5t#S256`) */
  x5tS256: string;
  /** for a warning before it runs out */
  notAfter: Date;
}

/**
 * The certificate (PEM; the first one when it is a chain) and its RSA private key (PEM), checked to
 * belong together. `fields` names them in errors (default "certificate" and "privateKey").
 */
export function parseClientCertificate(
  certificatePem: string,
  privateKeyPem: string,
  source = 'client certificate',
  fields = { certificate: 'certificate', privateKey: 'privateKey' },
): ClientCertificate {
  if (typeof certificatePem !== 'string' || !certificatePem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new CredentialError(source, fields.certificate, 'not a PEM certificate');
  }
  let cert: crypto.X509Certificate;
  try {
    cert = new crypto.X509Certificate(certificatePem);
  } catch {
    throw new CredentialError(source, fields.certificate, 'not a valid PEM certificate');
  }
  const privateKey = rsaPrivateKey(privateKeyPem, source, fields.privateKey);
  if (!cert.checkPrivateKey(privateKey)) {
    throw new CredentialError(source, fields.privateKey, `does not belong to ${fields.certificate}`);
  }
  return {
    privateKey,
    x5t: crypto.createHash('sha1').update(cert.raw).digest('base64url'),
    x5tS256: crypto.createHash('sha256').update(cert.raw).digest('base64url'),
    notAfter: new Date(cert.validTo),
  };
}

/**
 * {alg RS256, typ JWT, x5t, x5t#S256} {iss = sub = client id, aud = token URL, jti, nbf, iat, exp}:
 * what Microsoft's certificate credentials require.
 */
export function clientAssertion(
  cert: ClientCertificate,
  p: { clientId: string; audience: string; now?: () => number },
): string {
  const now = numericDate((p.now ?? Date.now)());
  return signRs256Jwt(
    { x5t: cert.x5t, 'x5t#S256': cert.x5tS256 },
    {
      iss: p.clientId,
      sub: p.clientId,
      aud: p.audience,
      jti: crypto.randomUUID(),
      nbf: now,
      iat: now,
      exp: now + ASSERTION_LIFETIME_SEC,
    },
    cert.privateKey,
  );
}

export type ClientAuthentication = { clientSecret: string } | { certificate: ClientCertificate };

export interface ClientCredentialsRequest {
  /** the tenant's token URL, `{tenant}` substituted */
  tokenUrl: string;
  clientId: string;
  /** default https://outlook.office365.com/.default */
  scope?: string;
  auth: ClientAuthentication;
  /** default: by the token URL's host */
  flavor?: ProviderFlavor;
  /** ms clock (tests) */
  now?: () => number;
}

export async function clientCredentialsGrant(
  client: TokenClient,
  req: ClientCredentialsRequest,
): Promise<AccessToken> {
  const scope = req.scope ?? MICROSOFT_APP_ONLY_SCOPE;
  const ctx: GrantContext = {
    grant: 'client_credentials',
    flavor: req.flavor ?? providerFlavor(req.tokenUrl),
    clientId: req.clientId,
    scope,
    endpoint: req.tokenUrl,
  };
  const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: req.clientId, scope });
  if ('clientSecret' in req.auth) {
    form.set('client_secret', req.auth.clientSecret);
  } else {
    form.set('client_assertion_type', CLIENT_ASSERTION_TYPE);
    form.set(
      'client_assertion',
      clientAssertion(req.auth.certificate, { clientId: req.clientId, audience: req.tokenUrl, now: req.now }),
    );
  }
  return accessTokenOf(await tokenRequest(client, req.tokenUrl, form, ctx));
}
