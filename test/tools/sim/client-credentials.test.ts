import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../../src/tools/sim/index.js';
import { ephemeral, getStats, postForm, postJson } from './helpers.js';
import {
  base,
  CLIENT_ASSERTION_TYPE,
  rsaKeyPair,
  signJwt,
  smtpAuth,
  tenantUrl,
  x5tOf,
} from './oauth-helpers.js';

const TENANT = 'contoso.onmicrosoft.com';
const APP_SCOPE = 'https://outlook.office365.com/.default';

describe('client credentials, app-only per tenant (microsoft style)', () => {
  let sim: Simulator;
  let cert: { certificate: string; privateKey: string; x5t: string };
  const token = (params: Record<string, string>, tenant = TENANT) =>
    postForm(tenantUrl(sim, tenant, 'token'), {
      grant_type: 'client_credentials',
      scope: APP_SCOPE,
      ...params,
    });
  const withSecret = (extra: Record<string, string> = {}, tenant = TENANT) =>
    token({ client_id: 'secret-app', client_secret: 'fake-app-secret', ...extra }, tenant);
  const now = () => Math.floor(Date.now() / 1000);
  const assertion = (
    over: Record<string, unknown> = {},
    header: Record<string, unknown> = {},
    key: any = cert.privateKey,
  ) =>
    signJwt(
      { alg: 'RS256', typ: 'JWT', x5t: cert.x5t, ...header },
      {
        iss: 'cert-app',
        sub: 'cert-app',
        aud: tenantUrl(sim, TENANT, 'token'),
        jti: randomUUID(),
        nbf: now(),
        exp: now() + 600,
        ...over,
      },
      key,
    );
  const withAssertion = (jwt: string, extra: Record<string, string> = {}) =>
    token({
      client_id: 'cert-app',
      client_assertion_type: CLIENT_ASSERTION_TYPE,
      client_assertion: jwt,
      ...extra,
    });

  beforeAll(async () => {
    sim = await startSimulator({ ...ephemeral, style: 'microsoft' });
    const control = (body: object) => postJson(`${base(sim)}/control/clients`, body);
    expect(
      (
        await control({
          clientId: 'secret-app',
          clientSecret: 'fake-app-secret',
          tenant: TENANT,
          mailboxes: ['shared@contoso.example'],
        })
      ).status,
    ).toBe(200);
    const reg = await control({
      clientId: 'cert-app',
      tenant: TENANT,
      generateCertificate: true,
      mailboxes: ['*'],
    });
    expect(reg.status).toBe(200);
    cert = reg.body;
  });
  afterAll(() => sim.close());

  it('hands out a generated certificate, its private key and x5t', () => {
    expect(cert).toEqual({
      clientId: 'cert-app',
      tenant: TENANT,
      x5t: expect.any(String),
      certificate: expect.stringMatching(/^-----BEGIN CERTIFICATE-----/),
      privateKey: expect.stringMatching(/-----BEGIN (RSA )?PRIVATE KEY-----/),
    });
    expect(cert.x5t).toBe(x5tOf(cert.certificate));
  });

  it('issues an app token for a client secret; SMTP takes it only for mailboxes the app was granted', async () => {
    const r = await withSecret();
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      token_type: 'Bearer',
      expires_in: 3600,
      ext_expires_in: 3600,
      access_token: expect.any(String),
    });
    const at = r.body.access_token;
    expect(await smtpAuth(sim, 'shared@contoso.example', at)).toMatch(/^235 /);
    expect(await smtpAuth(sim, 'ceo@contoso.example', at)).toMatch(
      /^535 5\.7\.3 Authentication unsuccessful/,
    );
    // Add-MailboxPermission, then Remove-: the same token follows.
    await postJson(`${base(sim)}/control/permissions`, {
      clientId: 'secret-app',
      mailbox: 'ceo@contoso.example',
    });
    expect(await smtpAuth(sim, 'ceo@contoso.example', at)).toMatch(/^235 /);
    sim.setPermission({ clientId: 'secret-app', mailbox: 'ceo@contoso.example', allow: false });
    expect(await smtpAuth(sim, 'ceo@contoso.example', at)).toMatch(/^535 5\.7\.3/);
  });

  it('refuses a wrong secret (AADSTS7000215) and no credentials (AADSTS7000218)', async () => {
    const wrong = await withSecret({ client_secret: 'guess' });
    expect(wrong.status).toBe(401);
    expect(wrong.body).toMatchObject({ error: 'invalid_client', error_codes: [7000215] });
    expect(wrong.body.error_description).toMatch(/^AADSTS7000215: Invalid client secret provided\./);
    const none = await token({ client_id: 'secret-app' });
    expect(none.body).toMatchObject({ error: 'invalid_client', error_codes: [7000218] });
  });

  it('does not know the app in another tenant (AADSTS700016), nor on /common (AADSTS50059)', async () => {
    const other = await withSecret({}, 'fabrikam.onmicrosoft.com');
    expect(other.status).toBe(400);
    expect(other.body).toMatchObject({ error: 'unauthorized_client', error_codes: [700016] });
    expect(other.body.error_description).toMatch(
      /^AADSTS700016: Application with identifier 'secret-app' was not found in the directory 'fabrikam\.onmicrosoft\.com'/,
    );
    expect((await withSecret({}, 'common')).body.error_codes).toEqual([50059]);
    expect((await token({ client_id: 'unknown-app', client_secret: 's' })).body.error_codes).toEqual([
      700016,
    ]);
  });

  it('wants the .default scope of Exchange Online (AADSTS70011)', async () => {
    const r = await withSecret({ scope: 'https://outlook.office.com/SMTP.Send' });
    expect(r.body).toMatchObject({ error: 'invalid_scope', error_codes: [70011] });
    expect((await withSecret({ scope: 'https://outlook.office.com/.default' })).status).toBe(200);
    expect((await withSecret({ scope: '' })).body.error_codes).toEqual([900144]);
  });

  it('takes a private_key_jwt client assertion signed with the registered certificate', async () => {
    const r = await withAssertion(assertion());
    expect(r.status).toBe(200);
    expect(await smtpAuth(sim, 'anyone@contoso.example', r.body.access_token)).toMatch(/^235 /);
    expect((await withAssertion(assertion({}, { x5t: undefined }))).status).toBe(200); // x5t is optional
  });

  it('refuses a client assertion that does not prove the app', async () => {
    const refused = async (jwt: string, code: number, extra: Record<string, string> = {}) => {
      const r = await withAssertion(jwt, extra);
      expect(r.status).toBe(401);
      expect(r.body.error).toBe('invalid_client');
      expect(r.body.error_codes).toEqual([code]);
    };
    await refused(assertion({}, {}, rsaKeyPair().privateKey), 700027); // another key
    await refused(assertion({}, { x5t: 'AAAAAAAAAAAAAAAAAAAAAAAAAAA' }), 700027); // another certificate
    await refused(assertion({ aud: tenantUrl(sim, 'fabrikam.onmicrosoft.com', 'token') }), 50027);
    await refused(assertion({ exp: now() - 3600, nbf: now() - 7200 }), 700024);
    await refused(assertion({ iss: 'secret-app' }), 700021);
    await refused(assertion({ jti: undefined }), 50027);
    const badType = await withAssertion(assertion(), { client_assertion_type: 'jwt' });
    expect(badType.body.error).toBe('invalid_request');
    // the secret app has no certificate
    const noCert = await token({
      client_id: 'secret-app',
      client_assertion_type: CLIENT_ASSERTION_TYPE,
      client_assertion: assertion({ iss: 'secret-app', sub: 'secret-app' }),
    });
    expect(noCert.body.error_codes).toEqual([700027]);
  });

  it('takes a certificate registered from a PEM, and counts refusals by reason', async () => {
    sim.reset();
    const pair = rsaKeyPair();
    await sim.registerClient({ clientId: 'pem-app', tenant: TENANT, certificate: pair.publicKeyPem });
    const jwt = signJwt(
      { alg: 'RS256' },
      { iss: 'pem-app', sub: 'pem-app', aud: tenantUrl(sim, TENANT, 'token'), jti: 'j1', exp: now() + 300 },
      pair.privateKey,
    );
    expect(
      (
        await token({
          client_id: 'pem-app',
          client_assertion_type: CLIENT_ASSERTION_TYPE,
          client_assertion: jwt,
        })
      ).status,
    ).toBe(200);
    await withSecret({ client_secret: 'nope' });
    expect((await getStats(sim)).oauth).toMatchObject({
      issued: { client_credentials: 1 },
      refused: { bad_client_secret: 1 },
    });
  });

  it('validates registrations, naming the field', async () => {
    const r = await postJson(`${base(sim)}/control/clients`, { clientId: 'x', certificate: 'not a pem' });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatch(/^client\.certificate: not a PEM certificate or public key/);
    const tenant = await postJson(`${base(sim)}/control/clients`, { clientId: 'x', tenant: 'bad tenant' });
    expect(tenant.body.error).toBe('client.tenant: "bad tenant" is not a tenant id or domain');
    const unknown = await postJson(`${base(sim)}/control/clients`, { clientId: 'x', secret: 's' });
    expect(unknown.body.error).toMatch(/^client: unknown field "secret"/);
    const perm = await postJson(`${base(sim)}/control/permissions`, {
      clientId: 'ghost',
      mailbox: 'a@b.example',
    });
    expect(perm.body.error).toBe('permission.clientId: "ghost" is not a registered client');
  });
});
