// The client credentials grant (Microsoft app-only) with a client secret and with a certificate
// (private_key_jwt): the server verifies the assertion's signature and its x5t against the
// registered certificate.
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  clientAssertion,
  clientCredentialsGrant,
  parseClientCertificate,
  type ClientCertificate,
} from '../../../src/oauth/grants/client-credentials.js';
import { CredentialError, GrantError } from '../../../src/oauth/grants/errors.js';
import { MICROSOFT_APP_ONLY_SCOPE } from '../../../src/oauth/grants/providers.js';
import { TokenClient } from '../../../src/oauth/token-client.js';
import { rsaCert, rsaKeyPem, type TestCert } from './keys.js';
import { startOAuthServer, type OAuthServer } from './oauth-server.js';
import { expectRejection } from '../../helpers/expect-rejection.js';

const SECRET_APP = '11111111-2222-3333-4444-555555555555';
const CERT_APP = '66666666-7777-8888-9999-000000000000';
const FAKE_SECRET = 'fake~secret~value~not~real';

let srv: OAuthServer;
let client: TokenClient;
let cert: TestCert;
let other: TestCert;
const clock = 1_700_000_000_000;
const now = () => clock;

beforeAll(async () => {
  [cert, other] = await Promise.all([rsaCert(), rsaCert('another app')]);
  srv = await startOAuthServer({
    now,
    clients: [
      { clientId: SECRET_APP, clientSecret: FAKE_SECRET, scopes: [MICROSOFT_APP_ONLY_SCOPE] },
      { clientId: CERT_APP, certificatePem: cert.certPem, scopes: [MICROSOFT_APP_ONLY_SCOPE] },
    ],
  });
  client = new TokenClient({ timeoutMs: 5000 });
});
afterAll(async () => {
  client.close();
  await srv.close();
});

const rejection = (p: Promise<unknown>) => expectRejection(p, GrantError);

const decode = (part: string) => JSON.parse(Buffer.from(part, 'base64url').toString());

describe('client credentials with a client secret', () => {
  it('posts client_id, secret and the .default scope; gets a token', async () => {
    const token = await clientCredentialsGrant(client, {
      tokenUrl: srv.tokenUrl,
      clientId: SECRET_APP,
      auth: { clientSecret: FAKE_SECRET },
    });
    expect(token.accessToken).toMatch(/^at-/);
    expect(token.scope).toBe(MICROSOFT_APP_ONLY_SCOPE);
    const call = srv.tokenCalls.at(-1)!;
    expect(call.auth).toBe('post');
    expect(Object.fromEntries(call.params)).toEqual({
      grant_type: 'client_credentials',
      client_id: SECRET_APP,
      scope: MICROSOFT_APP_ONLY_SCOPE,
      client_secret: FAKE_SECRET,
    });
  });

  it('a wrong secret is invalid_client (401), permanent', async () => {
    const e = await rejection(
      clientCredentialsGrant(client, {
        tokenUrl: srv.tokenUrl,
        clientId: SECRET_APP,
        auth: { clientSecret: 'not-the-secret' },
      }),
    );
    expect(e.status).toBe(401);
    expect(e.oauthError).toBe('invalid_client');
    expect(e.kind).toBe('permanent');
    expect(e.hint).toMatch(`client id ${SECRET_APP}`);
    expect(e.message).not.toContain('not-the-secret');
  });

  it('a scope the app may not have is invalid_scope with the .default hint', async () => {
    const e = await rejection(
      clientCredentialsGrant(client, {
        tokenUrl: srv.tokenUrl,
        clientId: SECRET_APP,
        scope: 'https://outlook.office.com/SMTP.Send',
        auth: { clientSecret: FAKE_SECRET },
      }),
    );
    expect(e.oauthError).toBe('invalid_scope');
    expect(e.hint).toMatch(/use the scope https:\/\/outlook\.office365\.com\/\.default/);
  });
});

describe('client credentials with a certificate (private_key_jwt)', () => {
  let c: ClientCertificate;
  beforeAll(() => {
    c = parseClientCertificate(cert.certPem, cert.keyPem);
  });

  it('the thumbprints are those of the DER certificate', () => {
    const der = new crypto.X509Certificate(cert.certPem).raw;
    expect(c.x5t).toBe(crypto.createHash('sha1').update(der).digest('base64url'));
    expect(c.x5tS256).toBe(crypto.createHash('sha256').update(der).digest('base64url'));
    // the SHA-1 thumbprint Entra ID shows, as hex, is the same bytes
    const hex = new crypto.X509Certificate(cert.certPem).fingerprint.replace(/:/g, '');
    expect(Buffer.from(c.x5t, 'base64url').toString('hex').toUpperCase()).toBe(hex);
    expect(c.notAfter.getTime()).toBeGreaterThan(Date.now());
  });

  it('the server verifies the assertion (signature, x5t, iss = sub, aud, times, jti) and issues a token', async () => {
    const token = await clientCredentialsGrant(client, {
      tokenUrl: srv.tokenUrl,
      clientId: CERT_APP,
      auth: { certificate: c },
      now,
    });
    expect(token.accessToken).toMatch(/^at-/);
    const call = srv.tokenCalls.at(-1)!;
    expect(call.auth).toBe('assertion');
    expect(call.status).toBe(200);
    expect(call.params.get('client_assertion_type')).toBe(
      'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    );
    expect(call.params.has('client_secret')).toBe(false);
    const [h, p] = call.params.get('client_assertion')!.split('.');
    expect(decode(h!)).toEqual({ alg: 'RS256', typ: 'JWT', x5t: c.x5t, 'x5t#S256': c.x5tS256 });
    const claims = decode(p!);
    const t = clock / 1000;
    expect(claims).toMatchObject({
      iss: CERT_APP,
      sub: CERT_APP,
      aud: srv.tokenUrl,
      nbf: t,
      iat: t,
      exp: t + 600,
    });
    expect(claims.jti).toMatch(/^[0-9a-f-]{36}$/);
    // a second request is a new assertion (the server refuses a replayed jti)
    await clientCredentialsGrant(client, {
      tokenUrl: srv.tokenUrl,
      clientId: CERT_APP,
      auth: { certificate: c },
      now,
    });
    expect(srv.tokenCalls.at(-1)!.status).toBe(200);
  });

  it('a certificate that is not registered, or an expired assertion, is invalid_client', async () => {
    const wrong = parseClientCertificate(other.certPem, other.keyPem);
    const e = await rejection(
      clientCredentialsGrant(client, {
        tokenUrl: srv.tokenUrl,
        clientId: CERT_APP,
        auth: { certificate: wrong },
        now,
      }),
    );
    expect(e.oauthError).toBe('invalid_client');
    expect(e.kind).toBe('permanent');
    const stale = await rejection(
      clientCredentialsGrant(client, {
        tokenUrl: srv.tokenUrl,
        clientId: CERT_APP,
        auth: { certificate: c },
        now: () => clock - 700_000,
      }),
    );
    expect(stale.oauthError).toBe('invalid_client');
    expect(stale.description).toBe('assertion expired');
  });

  it('the server checks the thumbprint and the signature: either one wrong is refused', async () => {
    const grant = (certificate: ClientCertificate) =>
      rejection(
        clientCredentialsGrant(client, {
          tokenUrl: srv.tokenUrl,
          clientId: CERT_APP,
          auth: { certificate },
          now,
        }),
      );
    const otherThumbprint = parseClientCertificate(other.certPem, other.keyPem);
    const wrongX5t = await grant({ ...c, x5t: otherThumbprint.x5t });
    expect(wrongX5t.description).toBe('x5t does not match the registered certificate');
    const wrongS256 = await grant({ ...c, x5tS256: otherThumbprint.x5tS256 });
    expect(wrongS256.description).toBe('x5t#S256 does not match the registered certificate');
    const wrongKey = await grant({ ...otherThumbprint, x5t: c.x5t, x5tS256: c.x5tS256 });
    expect(wrongKey.description).toBe('Invalid JWT Signature.');
    // the assertion itself is a JWT the certificate's key verifies
    const jwt = clientAssertion(c, { clientId: CERT_APP, audience: 'https://aud.example/token' });
    const [h, p, s] = jwt.split('.');
    expect(
      crypto.verify('sha256', Buffer.from(`${h}.${p}`), cert.publicKey, Buffer.from(s!, 'base64url')),
    ).toBe(true);
  });

  it('bad certificate input names the field', () => {
    const bad = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(CredentialError);
        return e as CredentialError;
      }
      throw new Error('no error');
    };
    expect(bad(() => parseClientCertificate('nope', cert.keyPem)).field).toBe('certificate');
    expect(
      bad(() =>
        parseClientCertificate('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----', cert.keyPem),
      ).problem,
    ).toMatch(/not a valid PEM certificate/);
    const mismatch = bad(() => parseClientCertificate(cert.certPem, other.keyPem));
    expect(mismatch.field).toBe('privateKey');
    expect(mismatch.problem).toBe('does not belong to certificate');
    const named = bad(() =>
      parseClientCertificate(cert.certPem, rsaKeyPem(1024), 'providers.m365.auth', {
        certificate: 'certificate',
        privateKey: 'privateKey',
      }),
    );
    expect(named.message).toBe(
      'providers.m365.auth: privateKey: the RSA key has 1024 bits; 2048 or more needed',
    );
    const encrypted = crypto
      .createPrivateKey(cert.keyPem)
      .export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'fake-passphrase' })
      .toString();
    expect(bad(() => parseClientCertificate(cert.certPem, encrypted)).problem).toMatch(/encrypted/);
  });
});
