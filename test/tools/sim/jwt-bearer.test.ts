import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../../src/tools/sim/index.js';
import { ephemeral, getStats, postForm, postJson } from './helpers.js';
import { accepted, base, JWT_BEARER, rsaKeyPair, signJwt, smtpAuth } from './oauth-helpers.js';

const GMAIL = 'https://mail.google.com/';
const UNAUTHORIZED =
  'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.';
const TIMEFRAME =
  'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.';

describe('JWT bearer grant for service accounts with domain-wide delegation (google style)', () => {
  let sim: Simulator;
  let key: { client_email: string; private_key: string; private_key_id: string; token_uri: string };
  const now = () => Math.floor(Date.now() / 1000);
  const claims = (over: Record<string, unknown> = {}) => ({
    iss: key.client_email,
    sub: 'alice@example.com',
    scope: GMAIL,
    aud: key.token_uri,
    iat: now(),
    exp: now() + 3600,
    ...over,
  });
  const assertion = (over: Record<string, unknown> = {}, privateKey: any = key.private_key) =>
    signJwt({ alg: 'RS256', typ: 'JWT', kid: key.private_key_id }, claims(over), privateKey);
  const grant = (jwt: string) => postForm(sim.tokenUrl, { grant_type: JWT_BEARER, assertion: jwt });

  beforeAll(async () => {
    sim = await startSimulator(ephemeral);
    const res = await postJson(`${base(sim)}/control/service-accounts`, {
      clientEmail: 'mailer@sim-project.iam.gserviceaccount.com',
      mailboxes: ['@example.com'],
    });
    expect(res.status).toBe(200);
    key = res.body.keyFile;
  });
  afterAll(() => sim.close());

  it('hands out a key file in Google service account format', () => {
    expect(key).toEqual({
      type: 'service_account',
      project_id: 'sim-project',
      private_key_id: expect.stringMatching(/^[0-9a-f]{40}$/),
      private_key: expect.stringMatching(/^-----BEGIN PRIVATE KEY-----\n/),
      client_email: 'mailer@sim-project.iam.gserviceaccount.com',
      client_id: expect.stringMatching(/^\d{21}$/),
      auth_uri: `${base(sim)}/authorize`,
      token_uri: sim.tokenUrl,
    });
  });

  it("issues an access token for sub's mailbox from a well-signed assertion", async () => {
    const r = await grant(assertion());
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ access_token: expect.any(String), expires_in: 3600, token_type: 'Bearer' });
    expect(accepted(await smtpAuth(sim, 'alice@example.com', r.body.access_token))).toBe(true);
    expect(accepted(await smtpAuth(sim, 'bob@example.com', r.body.access_token))).toBe(false);
  });

  it('refuses a signature by another key, or a payload changed after signing: Invalid JWT Signature.', async () => {
    const bad = {
      status: 400,
      body: { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' },
    };
    expect(await grant(assertion({}, rsaKeyPair().privateKey))).toEqual(bad);
    const [h, , s] = assertion().split('.');
    const forged = Buffer.from(JSON.stringify(claims({ sub: 'boss@example.com' }))).toString('base64url');
    expect(await grant(`${h}.${forged}.${s}`)).toEqual(bad);
    expect(await grant(signJwt({ alg: 'none' }, claims(), rsaKeyPair().privateKey))).toEqual(bad);
  });

  it('refuses assertions outside a short, current timeframe', async () => {
    for (const over of [
      { iat: now() - 7200, exp: now() - 3600 }, // expired
      { iat: now(), exp: now() + 3601 }, // longer than an hour
      { iat: now() + 600, exp: now() + 1200 }, // issued in the future
      { exp: undefined },
    ]) {
      const r = await grant(assertion(over));
      expect(r, JSON.stringify(over)).toEqual({
        status: 400,
        body: { error: 'invalid_grant', error_description: TIMEFRAME },
      });
    }
  });

  it('checks the audience is its token URL', async () => {
    const r = await grant(assertion({ aud: 'https://oauth2.googleapis.com/token' }));
    expect(r.body.error).toBe('invalid_grant');
    expect(r.body.error_description).toBe(
      `Invalid JWT: Failed audience check. The expected audience is ${sim.tokenUrl}.`,
    );
  });

  it('answers unauthorized_client for a mailbox or scope the delegation does not cover', async () => {
    const refused = { status: 400, body: { error: 'unauthorized_client', error_description: UNAUTHORIZED } };
    expect(await grant(assertion({ sub: 'carol@other.example' }))).toEqual(refused);
    expect(await grant(assertion({ scope: 'https://www.googleapis.com/auth/gmail.send' }))).toEqual(refused);
    // Withdraw the domain, grant one mailbox: the others lose delegation.
    expect(
      (
        await postJson(`${base(sim)}/control/permissions`, {
          serviceAccount: key.client_email,
          mailbox: '@example.com',
          allow: false,
        })
      ).status,
    ).toBe(200);
    sim.setPermission({ serviceAccount: key.client_email, mailbox: 'alice@example.com' });
    try {
      expect((await grant(assertion())).status).toBe(200);
      expect(await grant(assertion({ sub: 'dave@example.com' }))).toEqual(refused);
    } finally {
      sim.setPermission({ serviceAccount: key.client_email, mailbox: '@example.com' });
    }
    const noScope = await grant(assertion({ scope: undefined }));
    expect(noScope.body).toEqual({
      error: 'invalid_scope',
      error_description: 'Invalid oauth scope or ID token audience provided.',
    });
  });

  it('does not know an unregistered service account', async () => {
    const r = await grant(assertion({ iss: 'ghost@sim-project.iam.gserviceaccount.com' }));
    expect(r).toEqual({
      status: 400,
      body: { error: 'invalid_grant', error_description: 'Invalid grant: account not found' },
    });
  });

  it('takes a public key registered for a key made elsewhere', async () => {
    const pair = rsaKeyPair();
    const reg = await sim.registerServiceAccount({
      clientEmail: 'own-key@sim-project.iam.gserviceaccount.com',
      publicKey: pair.publicKeyPem,
      privateKeyId: 'my-key-1',
    });
    expect(reg.keyFile).toBeUndefined();
    const jwt = signJwt(
      { alg: 'RS256', kid: 'my-key-1' },
      claims({ iss: 'own-key@sim-project.iam.gserviceaccount.com', sub: 'erin@anywhere.example' }),
      pair.privateKey,
    );
    const r = await grant(jwt);
    expect(r.status).toBe(200);
    expect(accepted(await smtpAuth(sim, 'erin@anywhere.example', r.body.access_token))).toBe(true);
  });

  it('counts refusals by reason', async () => {
    sim.reset();
    await grant(assertion({}, rsaKeyPair().privateKey));
    await grant(assertion({ sub: 'x@other.example' }));
    expect((await getStats(sim)).oauth).toMatchObject({
      refused: { jwt_signature: 1, no_delegation: 1 },
      issued: {},
    });
  });

  it('validates the registration, naming the field', async () => {
    const bad = await postJson(`${base(sim)}/control/service-accounts`, { clientEmail: 'not-an-email' });
    expect(bad).toEqual({
      status: 400,
      body: { error: 'serviceAccount.clientEmail: must be an email address' },
    });
    const badBox = await postJson(`${base(sim)}/control/service-accounts`, { mailboxes: ['nobody'] });
    expect(badBox.body.error).toBe(
      'serviceAccount.mailboxes[0]: "nobody" is not a mailbox address, @domain or *',
    );
  });
});
