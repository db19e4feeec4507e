// The JWT bearer grant (RFC 7523) for a Google service account with domain-wide delegation: the
// server verifies the signature with the registered public key and checks iss/sub/aud/exp/scope.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CredentialError, GrantError } from '../../../src/oauth/grants/errors.js';
import { jwtBearerGrant, serviceAccountAssertion } from '../../../src/oauth/grants/jwt-bearer.js';
import {
  parseServiceAccountKey,
  readServiceAccountKey,
  type ServiceAccountKey,
} from '../../../src/oauth/grants/service-account-key.js';
import { TokenClient } from '../../../src/oauth/token-client.js';
import { SA_CLIENT_ID, SA_EMAIL, SA_KEY_ID, rsaKeyPem, serviceAccountJson } from './keys.js';
import { startOAuthServer, type OAuthServer } from './oauth-server.js';
import { expectRejection } from '../../helpers/expect-rejection.js';

const GMAIL = 'https://mail.google.com/';
let keyPem: string;
let srv: OAuthServer;
let client: TokenClient;
let key: ServiceAccountKey;
let clock = 1_700_000_000_000;
const now = () => clock;
const dirs: string[] = [];

beforeAll(async () => {
  keyPem = rsaKeyPem();
  srv = await startOAuthServer({
    clients: [],
    now,
    serviceAccounts: [
      {
        clientEmail: SA_EMAIL,
        publicKey: crypto.createPublicKey(keyPem),
        keyId: SA_KEY_ID,
        delegatedScopes: [GMAIL],
        users: ['alice@example.com', 'bob@example.com'],
      },
    ],
  });
  client = new TokenClient({ timeoutMs: 5000 });
  key = parseServiceAccountKey(serviceAccountJson(srv.tokenUrl, keyPem), 'sa.json');
});
afterAll(async () => {
  client.close();
  await srv.close();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});
afterEach(() => {
  srv.override = undefined;
  clock = 1_700_000_000_000;
});

const rejection = (p: Promise<unknown>) => expectRejection(p, GrantError);

function credentialError(f: () => unknown): CredentialError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CredentialError);
    return e as CredentialError;
  }
  throw new Error('no error');
}

describe('service account key file', () => {
  it('reads the fields the grant needs', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo2-sa-'));
    dirs.push(dir);
    const file = path.join(dir, 'sa.json');
    fs.writeFileSync(file, serviceAccountJson(srv.tokenUrl, keyPem));
    const k = await readServiceAccountKey(file);
    expect(k.clientEmail).toBe(SA_EMAIL);
    expect(k.clientId).toBe(SA_CLIENT_ID);
    expect(k.privateKeyId).toBe(SA_KEY_ID);
    expect(k.tokenUri).toBe(srv.tokenUrl);
    expect(k.privateKey.asymmetricKeyType).toBe('rsa');
    await expect(readServiceAccountKey(path.join(dir, 'missing.json'))).rejects.toThrow(
      /missing\.json: keyFile: cannot read: ENOENT/,
    );
  });

  it('names the bad field and never quotes the key', () => {
    const ok = (over: Record<string, unknown>) => serviceAccountJson(srv.tokenUrl, keyPem, over);
    const cases: [string, string, RegExp][] = [
      ['{"type": "service_account", ' + keyPem.slice(0, 60), 'keyFile', /not valid JSON/],
      ['[1]', 'keyFile', /not a JSON object/],
      [ok({ type: undefined }), 'type', /missing/],
      [ok({ type: 'authorized_user' }), 'type', /user credential/],
      [ok({ type: 'external_account' }), 'type', /must be "service_account"/],
      [ok({ client_email: undefined }), 'client_email', /missing/],
      [ok({ client_email: 'nobody' }), 'client_email', /not an email/],
      [ok({ private_key: undefined }), 'private_key', /missing/],
      [ok({ private_key: 'abc' }), 'private_key', /not a PEM/],
      [
        ok({ private_key: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n' }),
        'private_key',
        /not a valid PEM/,
      ],
      [ok({ private_key: rsaKeyPem(1024) }), 'private_key', /1024 bits/],
      [ok({ private_key_id: 7 }), 'private_key_id', /non-empty string/],
      [ok({ token_uri: undefined }), 'token_uri', /missing/],
      [ok({ token_uri: 'http://oauth2.example.com/token' }), 'token_uri', /https URL/],
      [ok({ token_uri: 'not a url' }), 'token_uri', /https URL/],
    ];
    const body = keyPem.split('\n')[1]!;
    for (const [text, field, problem] of cases) {
      const e = credentialError(() => parseServiceAccountKey(text, 'sa.json'));
      expect(e.field, text.slice(0, 80)).toBe(field);
      expect(e.problem).toMatch(problem);
      expect(e.message.startsWith(`sa.json: ${field}: `)).toBe(true);
      expect(e.message).not.toContain(body);
    }
    const ec = crypto
      .generateKeyPairSync('ec', { namedCurve: 'P-256' })
      .privateKey.export({ type: 'pkcs8', format: 'pem' });
    expect(credentialError(() => parseServiceAccountKey(ok({ private_key: ec }), 'sa.json')).problem).toMatch(
      /RSA key is needed/,
    );
  });
});

describe('JWT bearer grant', () => {
  it('the server verifies the assertion and issues an access token', async () => {
    const token = await jwtBearerGrant(client, { key, subject: 'alice@example.com', scope: GMAIL, now });
    expect(token.accessToken).toMatch(/^at-/);
    expect(token.expiresInSec).toBe(3600);
    const call = srv.tokenCalls.at(-1)!;
    expect(call.status).toBe(200);
    expect([...call.params.keys()].sort()).toEqual(['assertion', 'grant_type']);
    expect(call.params.get('grant_type')).toBe('urn:ietf:params:oauth:grant-type:jwt-bearer');
    const [h, c] = call.params
      .get('assertion')!
      .split('.')
      .slice(0, 2)
      .map((p) => JSON.parse(Buffer.from(p, 'base64url').toString()));
    expect(h).toEqual({ alg: 'RS256', typ: 'JWT', kid: SA_KEY_ID });
    expect(c).toEqual({
      iss: SA_EMAIL,
      sub: 'alice@example.com',
      scope: GMAIL,
      aud: srv.tokenUrl,
      iat: clock / 1000,
      exp: clock / 1000 + 3600,
    });
  });

  it('not delegated: unauthorized_client with the domain-wide delegation hint', async () => {
    const e = await rejection(
      jwtBearerGrant(client, {
        key,
        subject: 'alice@example.com',
        scope: 'https://www.googleapis.com/auth/drive',
        now,
      }),
    );
    expect(e.oauthError).toBe('unauthorized_client');
    expect(e.kind).toBe('permanent');
    expect(e.hint).toBe(
      `grant domain-wide delegation for client id ${SA_CLIENT_ID} with scope https://www.googleapis.com/auth/drive ` +
        'in the Workspace admin console (Security > Access and data control > API controls > Domain-wide delegation)',
    );
  });

  it('a mailbox outside the domain, a foreign key and a wrong clock are refused with their hints', async () => {
    const stranger = await rejection(
      jwtBearerGrant(client, { key, subject: 'eve@elsewhere.test', scope: GMAIL, now }),
    );
    expect(stranger.oauthError).toBe('invalid_grant');
    expect(stranger.hint).toMatch(/eve@elsewhere.test is not an active user/);

    const foreign = parseServiceAccountKey(serviceAccountJson(srv.tokenUrl, rsaKeyPem()), 'other.json');
    const forged = await rejection(
      jwtBearerGrant(client, { key: foreign, subject: 'alice@example.com', scope: GMAIL, now }),
    );
    expect(forged.oauthError).toBe('invalid_grant');
    expect(forged.description).toBe('Invalid JWT Signature.');
    expect(forged.hint).toMatch(/create a new JSON key/);

    // an hour behind: the assertion is already expired when it arrives
    const late = await rejection(
      jwtBearerGrant(client, {
        key,
        subject: 'alice@example.com',
        scope: GMAIL,
        now: () => clock - 3_700_000,
      }),
    );
    expect(late.oauthError).toBe('invalid_grant');
  });

  it('the assertion is signed with the key (verifiable with its public half)', () => {
    const jwt = serviceAccountAssertion({
      key,
      subject: 'bob@example.com',
      scope: GMAIL,
      tokenUrl: 'https://t.example/token',
      now,
    });
    const [h, c, sig] = jwt.split('.');
    expect(
      crypto.verify(
        'sha256',
        Buffer.from(`${h}.${c}`),
        crypto.createPublicKey(keyPem),
        Buffer.from(sig!, 'base64url'),
      ),
    ).toBe(true);
    expect(JSON.parse(Buffer.from(c!, 'base64url').toString()).aud).toBe('https://t.example/token');
    expect(() => serviceAccountAssertion({ key, subject: 'not a mailbox', scope: GMAIL })).toThrow(/subject/);
  });
});
