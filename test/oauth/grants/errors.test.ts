// Error mapping: real-shaped Microsoft and Google error bodies, served over HTTP, become GrantErrors
// with the provider's code and description, the right permanence and the hint an operator needs;
// grantFailureText is the text of the 451 the SMTP client gets.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { exchangeAuthorizationCode } from '../../../src/oauth/grants/authorization-code.js';
import { clientCredentialsGrant } from '../../../src/oauth/grants/client-credentials.js';
import {
  GrantError,
  grantFailureText,
  type GrantContext,
  toGrantError,
} from '../../../src/oauth/grants/errors.js';
import { jwtBearerGrant } from '../../../src/oauth/grants/jwt-bearer.js';
import {
  parseServiceAccountKey,
  type ServiceAccountKey,
} from '../../../src/oauth/grants/service-account-key.js';
import { TokenClient, TokenGrantError } from '../../../src/oauth/token-client.js';
import { SA_CLIENT_ID, rsaKeyPem, serviceAccountJson } from './keys.js';
import { startOAuthServer, type OAuthServer } from './oauth-server.js';
import { expectRejection } from '../../helpers/expect-rejection.js';

const APP = '11111111-2222-3333-4444-555555555555';
const FAKE_SECRET = 'fake~secret~value~not~real';
const TRACE =
  '\r\nTrace ID: 0f1e2d3c-0000-4000-8000-000000000000\r\nCorrelation ID: 9a8b7c6d-0000-4000-8000-000000000000\r\nTimestamp: 2025-01-01 10:00:00Z';

function microsoftBody(error: string, code: number, text: string) {
  return {
    error,
    error_description: `AADSTS${code}: ${text}${TRACE}`,
    error_codes: [code],
    timestamp: '2025-01-01 10:00:00Z',
    trace_id: '0f1e2d3c-0000-4000-8000-000000000000',
    correlation_id: '9a8b7c6d-0000-4000-8000-000000000000',
    error_uri: `https://login.microsoftonline.com/error?code=${code}`,
  };
}

let srv: OAuthServer;
let client: TokenClient;
let key: ServiceAccountKey;
beforeAll(async () => {
  srv = await startOAuthServer({ clients: [] });
  client = new TokenClient({ timeoutMs: 5000 });
  key = parseServiceAccountKey(serviceAccountJson(srv.tokenUrl, rsaKeyPem()), 'sa.json');
});
afterAll(async () => {
  client.close();
  await srv.close();
});
afterEach(() => {
  srv.override = undefined;
});

function answer(status: number, body: unknown) {
  srv.override = () => ({ status, body });
}

const rejection = (p: Promise<unknown>) => expectRejection(p, GrantError);

const appOnly = () =>
  rejection(
    clientCredentialsGrant(client, {
      tokenUrl: srv.tokenUrl,
      clientId: APP,
      auth: { clientSecret: FAKE_SECRET },
      flavor: 'microsoft',
    }),
  );
const codeExchange = (flavor: 'google' | 'microsoft') =>
  rejection(
    exchangeAuthorizationCode(client, {
      tokenUrl: srv.tokenUrl,
      clientId: APP,
      code: 'fake-code',
      redirectUri: 'http://127.0.0.1:53682/callback',
      codeVerifier: 'v'.repeat(43),
      flavor,
      mailbox: 'bob@contoso.com',
    }),
  );
const serviceAccount = () =>
  rejection(jwtBearerGrant(client, { key, subject: 'alice@example.com', scope: 'https://mail.google.com/' }));

describe('Microsoft error bodies', () => {
  it('missing consent for app-only: AADSTS65001, permanent, the SMTP.SendAsApp + mailbox permission fix', async () => {
    answer(
      400,
      microsoftBody(
        'invalid_grant',
        65001,
        `The user or administrator has not consented to use the application with ID '${APP}' named 'relay'.`,
      ),
    );
    const e = await appOnly();
    expect(e).toBeInstanceOf(TokenGrantError);
    expect(e.code).toBe('TOKEN_GRANT_PERMANENT');
    expect(e.kind).toBe('permanent');
    expect(e.oauthError).toBe('invalid_grant');
    expect(e.aadsts).toEqual(['AADSTS65001']);
    expect(e.reason).toBe('invalid_grant (AADSTS65001)');
    expect(e.description).toBe(
      `AADSTS65001: The user or administrator has not consented to use the application with ID '${APP}' named 'relay'.`,
    );
    expect(e.hint).toMatch(/grant admin consent for the application permission SMTP\.SendAsApp/);
    expect(e.hint).toMatch(`client id ${APP}`);
    expect(e.hint).toMatch(/Add-MailboxPermission/);
  });

  it('the same code for a delegated authorization asks for SMTP.Send consent', async () => {
    answer(400, microsoftBody('invalid_grant', 65001, 'The user or administrator has not consented.'));
    const e = await codeExchange('microsoft');
    expect(e.hint).toMatch(/admin consent for SMTP\.Send and offline_access/);
  });

  it('secret, application, scope and tenant mistakes each get their own fix', async () => {
    const cases: [number, unknown, RegExp][] = [
      [
        401,
        microsoftBody('invalid_client', 7000215, 'Invalid client secret provided.'),
        /Value \(not its Secret ID\)/,
      ],
      [
        400,
        microsoftBody(
          'unauthorized_client',
          700016,
          `Application with identifier '${APP}' was not found in the directory 'Contoso'.`,
        ),
        /no application with client id/,
      ],
      [
        400,
        microsoftBody(
          'invalid_scope',
          1002012,
          'The provided value for scope https://outlook.office.com/SMTP.Send is not valid.',
        ),
        /use the scope https:\/\/outlook\.office365\.com\/\.default/,
      ],
      [
        400,
        microsoftBody('invalid_request', 90002, "Tenant 'contoso.example' not found."),
        /set tenant to the directory \(tenant\) ID/,
      ],
      [
        401,
        microsoftBody('invalid_client', 700027, 'Client assertion failed signature validation.'),
        /upload this certificate/,
      ],
    ];
    for (const [status, body, hint] of cases) {
      answer(status, body);
      const e = await appOnly();
      expect(e.kind, JSON.stringify(body)).toBe('permanent');
      expect(e.hint).toMatch(hint);
      expect(e.description).not.toMatch(/Trace ID|Correlation ID/);
    }
  });

  it('AADSTS codes are read from the description when error_codes is absent', async () => {
    answer(400, {
      error: 'invalid_grant',
      error_description: 'AADSTS700082: The refresh token has expired due to inactivity.',
    });
    const e = await codeExchange('microsoft');
    expect(e.aadsts).toEqual(['AADSTS700082']);
    expect(e.hint).toMatch(
      /expired after inactivity: run `xoauth2-proxy accounts authorize bob@contoso.com` again/,
    );
  });

  it('an unknown 4xx error is not taken for permanent; a 5xx or 429 is temporary', async () => {
    answer(
      400,
      microsoftBody('invalid_request', 900144, "The request body must contain the following parameter: 'x'."),
    );
    const odd = await appOnly();
    expect(odd.kind).toBe('transient');
    expect(odd.hint).toMatch(/the provider answered "invalid_request"/);
    answer(
      503,
      microsoftBody('temporarily_unavailable', 90033, 'A transient error has occurred. Please try again.'),
    );
    const down = await appOnly();
    expect(down.kind).toBe('transient');
    expect(down.reason).toBe('HTTP 503 temporarily_unavailable (AADSTS90033)');
    expect(down.hint).toMatch(/127\.0\.0\.1:\d+ failed or could not be reached; the proxy retries/);
    answer(429, { error: 'invalid_grant' });
    expect((await appOnly()).kind).toBe('transient');
  });
});

describe('Google error bodies', () => {
  it('service account without delegation: the admin console fix naming the client id', async () => {
    answer(400, {
      error: 'unauthorized_client',
      error_description:
        'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.',
    });
    const e = await serviceAccount();
    expect(e.kind).toBe('permanent');
    expect(e.description).toMatch(/^Client is unauthorized/);
    expect(e.hint).toMatch(
      `grant domain-wide delegation for client id ${SA_CLIENT_ID} with scope https://mail.google.com/ in the Workspace admin console`,
    );
  });

  it('a clock out of step, a deleted key, an unknown user', async () => {
    const cases: [string, RegExp][] = [
      [
        'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the assertion and use a clock with skew to account for clock differences between systems.',
        /clock \(NTP\)/,
      ],
      ['Invalid JWT Signature.', /create a new JSON key/],
      ['Invalid email or User ID', /alice@example.com is not an active user/],
      ['Invalid grant: account not found', /service account was deleted or disabled/],
    ];
    for (const [description, hint] of cases) {
      answer(400, { error: 'invalid_grant', error_description: description });
      const e = await serviceAccount();
      expect(e.kind).toBe('permanent');
      expect(e.hint).toMatch(hint);
    }
  });

  it('code exchange: unknown client, redirect mismatch, spent code', async () => {
    const cases: [number, unknown, RegExp][] = [
      [
        401,
        { error: 'invalid_client', error_description: 'The OAuth client was not found.' },
        /APIs & Services > Credentials/,
      ],
      [400, { error: 'redirect_uri_mismatch', error_description: 'Bad Request' }, /"Desktop app"/],
      [
        400,
        { error: 'invalid_grant', error_description: 'Bad Request' },
        /authorization code expired, was used already/,
      ],
    ];
    for (const [status, body, hint] of cases) {
      answer(status, body);
      const e = await codeExchange('google');
      expect(e.kind).toBe('permanent');
      expect(e.hint).toMatch(hint);
    }
  });
});

describe('transport failures and the SMTP reply text', () => {
  it('a refused connection is temporary and says which endpoint', async () => {
    const gone = await startOAuthServer({ clients: [] });
    const url = gone.tokenUrl;
    await gone.close();
    const e = await rejection(
      clientCredentialsGrant(client, { tokenUrl: url, clientId: APP, auth: { clientSecret: FAKE_SECRET } }),
    );
    expect(e.failure).toBe('endpoint_failed');
    expect(e.kind).toBe('transient');
    expect(e.reason).toBe('network error ECONNREFUSED');
    expect(e.hint).toMatch(`${new URL(url).host} failed or could not be reached; the proxy retries`);
  });

  it('the reply text names the mailbox, the error and the fix; no secrets, one short line', async () => {
    answer(400, microsoftBody('invalid_grant', 65001, 'The user or administrator has not consented.'));
    const e = await appOnly();
    const text = grantFailureText(e, 'bob@contoso.com');
    expect(text).toMatch(
      /^Mailbox bob@contoso.com cannot get an access token \(invalid_grant \(AADSTS65001\)\): grant admin consent/,
    );
    expect(`451 4.7.0 ${text}\r\n`.length).toBeLessThanOrEqual(512);
    expect(text).not.toMatch(/[\r\n]/);
    expect(text).not.toContain(FAKE_SECRET);
    expect(e.message).not.toContain(FAKE_SECRET);
  });

  it('a long hint is cut to fit an SMTP reply line', () => {
    const ctx: GrantContext = { grant: 'client_credentials', flavor: 'microsoft', clientId: 'x'.repeat(300) };
    const e = toGrantError(
      new TokenGrantError('permanent', 'invalid_grant', 400, { error: 'invalid_grant', errorCodes: [65001] }),
      ctx,
    );
    const text = grantFailureText(e, 'bob@contoso.com');
    expect(`451 4.7.0 ${text}\r\n`.length).toBeLessThanOrEqual(512);
    expect(text.endsWith('...')).toBe(true);
    const wide = grantFailureText(e, `${'ü'.repeat(200)}@example.com`);
    expect(Buffer.byteLength(`451 4.7.0 ${wide}\r\n`)).toBeLessThanOrEqual(512);
  });
});
