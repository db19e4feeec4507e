// The token manager's sources besides a refresh token in the file: a refresh token held in the
// state store (authorized by `accounts authorize` or the web onboarding), and the app-only grants
// (client credentials, service account), against a token endpoint of our own.
import crypto from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { expectSmtpError } from '../helpers/expect-rejection.js';
import { okHandler, useTokenServer } from '../helpers/token-server.js';
import {
  APP_ONLY_RETRY_MS,
  type AppOnlyAccount,
  type RefreshTokenAccount,
} from '../../src/oauth/token-manager.js';
import type { ServiceAccountKey } from '../../src/oauth/grants/service-account-key.js';
import { Harness, gauge, provider } from './helpers.js';

const startTokenServer = useTokenServer();
const h = new Harness();
afterEach(() => h.cleanup());

const storeAccount = (email: string, tokenUrl: string): RefreshTokenAccount => ({
  email,
  provider: provider(tokenUrl),
  clientId: 'cid',
});

describe('refresh token in the state store', () => {
  it('without one the account needs authorization (451 4.7.0 naming the command), asks nothing, and adopts one as soon as it is stored', async () => {
    const srv = await startTokenServer(okHandler());
    const store = h.store();
    const { tm, metrics } = h.manager({ store });
    tm.setAccounts([storeAccount('new@x.com', srv.url)]);
    expect(tm.status('new@x.com')).toMatchObject({ state: 'needs_authorization', source: 'store' });
    expect(await gauge(metrics, 'needs_authorization')).toBe(1);
    const e = await expectSmtpError(tm.getToken('new@x.com'));
    expect(e.code).toBe('NEEDS_AUTHORIZATION');
    expect(e.reply).toEqual({
      code: 451,
      enhanced: '4.7.0',
      text: 'Mailbox new@x.com is not authorized yet: run `xoauth2-proxy accounts authorize new@x.com`',
    });
    expect(await tm.warmup()).toEqual({ ok: 0, failed: 1 });
    expect(srv.requests).toHaveLength(0);

    store.putAuthorizedRefreshToken('new@x.com', 'rt-authorized');
    expect(tm.syncAuthorizations()).toEqual(['new@x.com']);
    expect(await tm.getToken('new@x.com')).toMatch(/^at-/);
    expect(srv.requests.at(-1)!.params.get('refresh_token')).toBe('rt-authorized');
    expect(tm.status('new@x.com')).toMatchObject({ state: 'ok', source: 'store' });
    // nothing new: nothing replaced
    expect(tm.syncAuthorizations()).toEqual([]);
  });

  it('a re-authorization replaces a needs_reauth entry at once; a reload finds it too', async () => {
    const srv = await startTokenServer((req) =>
      req.params.get('refresh_token') === 'rt-old'
        ? { status: 400, body: { error: 'invalid_grant' } }
        : okHandler()(req, 0),
    );
    const store = h.store();
    store.putAuthorizedRefreshToken('a@x.com', 'rt-old');
    const { tm } = h.manager({ store });
    const account = storeAccount('a@x.com', srv.url);
    tm.setAccounts([account]);
    expect((await expectSmtpError(tm.getToken('a@x.com'))).code).toBe('NEEDS_REAUTH');
    expect(tm.status('a@x.com').state).toBe('needs_reauth');

    store.putAuthorizedRefreshToken('a@x.com', 'rt-new');
    tm.setAccounts([account]); // a reload with the same config
    expect(tm.status('a@x.com').state).not.toBe('needs_reauth');
    expect(await tm.getToken('a@x.com')).toMatch(/^at-/);
  });

  it('a rotation of a stored token is stored (sealed) before it is used', async () => {
    const srv = await startTokenServer((req) => ({
      body: { access_token: 'at-1', expires_in: 3600, refresh_token: `${req.params.get('refresh_token')}-r` },
    }));
    const store = h.store();
    store.putAuthorizedRefreshToken('a@x.com', 'rt-1');
    const { tm } = h.manager({ store });
    tm.setAccounts([storeAccount('a@x.com', srv.url)]);
    await tm.getToken('a@x.com');
    expect(store.getAuthorizedRefreshToken('a@x.com')).toBe('rt-1-r');
    expect(tm.syncAuthorizations()).toEqual([]); // its own rotation is not a new authorization
  });

  it('a rotation that comes back after a new authorization was stored does not overwrite it', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const srv = await startTokenServer(async (req) => {
      const rt = req.params.get('refresh_token')!;
      if (rt === 'rt-old') await held;
      return { body: { access_token: `at-${rt}`, expires_in: 3600, refresh_token: `${rt}-rotated` } };
    });
    const store = h.store();
    store.putAuthorizedRefreshToken('a@x.com', 'rt-old');
    const { tm } = h.manager({ store });
    tm.setAccounts([storeAccount('a@x.com', srv.url)]);
    const inFlight = tm.getToken('a@x.com');
    await new Promise((r) => setTimeout(r, 50));
    // meanwhile the owner authorizes again (another process writes the store)
    store.putAuthorizedRefreshToken('a@x.com', 'rt-new');
    release();
    await inFlight;
    expect(store.getAuthorizedRefreshToken('a@x.com')).toBe('rt-new');
    expect(tm.syncAuthorizations()).toEqual(['a@x.com']);
    expect(await tm.getToken('a@x.com')).toBe('at-rt-new');
    expect(store.getAuthorizedRefreshToken('a@x.com')).toBe('rt-new-rotated');
  });
});

function serviceAccountKey(tokenUri: string): ServiceAccountKey {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { clientEmail: 'sa@p.iam.gserviceaccount.com', clientId: '1234567890', privateKey, tokenUri };
}

describe('app-only sources', () => {
  it('client credentials: one token per mailbox, nothing rotated, the grant by the form', async () => {
    const srv = await startTokenServer(okHandler());
    const { tm } = h.manager({ store: h.store() });
    const p = provider(srv.url);
    const app = (email: string): AppOnlyAccount => ({
      email,
      provider: p,
      appOnly: {
        grant: 'client_credentials',
        tokenUrl: srv.url,
        clientId: 'app-id',
        scope: 'https://outlook.office365.com/.default',
        auth: { clientSecret: 'app-secret' },
        fingerprint: 'f1',
      },
    });
    tm.setAccounts([app('a@x.com'), app('b@x.com')]);
    const [ta, tb] = [await tm.getToken('a@x.com'), await tm.getToken('b@x.com')];
    expect(ta).not.toBe(tb);
    expect(srv.requests.map((r) => r.params.get('grant_type'))).toEqual([
      'client_credentials',
      'client_credentials',
    ]);
    expect(srv.requests[0]!.params.get('scope')).toBe('https://outlook.office365.com/.default');
    expect(srv.requests[0]!.params.get('client_secret')).toBe('app-secret');
    expect(tm.status('a@x.com')).toMatchObject({ state: 'ok', source: 'client_credentials' });
    expect(await tm.getToken('a@x.com')).toBe(ta); // cached
  });

  it('a refused service account grant names the delegation to grant, and is tried again after APP_ONLY_RETRY_MS', async () => {
    let allowed = false;
    const srv = await startTokenServer(() =>
      allowed
        ? { body: { access_token: 'at-sa', expires_in: 3600, token_type: 'Bearer' } }
        : {
            status: 401,
            body: {
              error: 'unauthorized_client',
              error_description: 'Client is unauthorized to retrieve access tokens using this method.',
            },
          },
    );
    let now = Date.now();
    const { tm } = h.manager({ store: h.store(), now: () => now });
    tm.setAccounts([
      {
        email: 'a@x.com',
        provider: provider(srv.url),
        appOnly: {
          grant: 'jwt_bearer',
          key: serviceAccountKey(srv.url),
          scope: 'https://mail.google.com/',
          fingerprint: 'k',
        },
      },
    ]);
    const e = await expectSmtpError(tm.getToken('a@x.com'));
    expect(e.code).toBe('GRANT_FAILED');
    expect(e.reply.code).toBe(451);
    expect(e.reply.enhanced).toBe('4.7.0');
    expect(e.reply.text).toMatch(
      /^Mailbox a@x\.com cannot get an access token \(unauthorized_client\): grant domain-wide delegation for client id 1234567890 with scope https:\/\/mail\.google\.com\//,
    );
    expect(srv.requests[0]!.params.get('grant_type')).toBe('urn:ietf:params:oauth:grant-type:jwt-bearer');
    expect(tm.status('a@x.com')).toMatchObject({ state: 'needs_reauth', source: 'service_account' });
    // fails fast meanwhile
    await expectSmtpError(tm.getToken('a@x.com'));
    expect(srv.requests).toHaveLength(1);
    allowed = true; // the administrator granted it
    now += APP_ONLY_RETRY_MS + 1;
    expect(await tm.getToken('a@x.com')).toBe('at-sa');
  });

  it('authRejected: an app-only mailbox the upstream refuses names Add-MailboxPermission; a delegated one keeps the generic reply', async () => {
    const srv = await startTokenServer(okHandler());
    const { tm } = h.manager({ store: h.store() });
    const p = provider(srv.url);
    tm.setAccounts([
      {
        email: 'app@x.com',
        provider: p,
        appOnly: {
          grant: 'client_credentials',
          tokenUrl: srv.url,
          clientId: 'app-id',
          scope: 'https://outlook.office365.com/.default',
          auth: { clientSecret: 's' },
          fingerprint: 'f',
        },
      },
      { email: 'user@x.com', provider: p, clientId: 'cid', refreshToken: 'rt' },
    ]);
    await tm.getToken('app@x.com');
    const e = tm.authRejected('app@x.com', '535 5.7.3 Authentication unsuccessful')!;
    expect(e.code).toBe('GRANT_FAILED');
    expect(e.reply.text).toMatch(/Add-MailboxPermission -Identity app@x\.com/);
    expect(Buffer.byteLength(e.reply.text)).toBeLessThanOrEqual(480);
    expect(tm.status('app@x.com').state).toBe('needs_reauth');
    expect((await expectSmtpError(tm.getToken('app@x.com'))).code).toBe('GRANT_FAILED');
    // a reload (the operator granted it) tries again at once
    tm.setAccounts([
      {
        email: 'app@x.com',
        provider: p,
        appOnly: {
          grant: 'client_credentials',
          tokenUrl: srv.url,
          clientId: 'app-id',
          scope: 'https://outlook.office365.com/.default',
          auth: { clientSecret: 's' },
          fingerprint: 'f',
        },
      },
      { email: 'user@x.com', provider: p, clientId: 'cid', refreshToken: 'rt' },
    ]);
    expect(await tm.getToken('app@x.com')).toMatch(/^at-/);
    expect(tm.authRejected('user@x.com', '535 5.7.8 no')).toBeUndefined();
  });
});
