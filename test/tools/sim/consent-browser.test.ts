// The consent and device pages in a real browser (Debian's chromium via playwright-core), with the
// redirect landing on a loopback listener as it does for `accounts authorize`.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, requireChromium, useBrowser } from '../../helpers/browser.js';
import { startSimulator, type Simulator } from '../../../src/tools/sim/index.js';
import { ephemeral, postForm } from './helpers.js';
import {
  accepted,
  authorizeQuery,
  base,
  DEVICE_CODE,
  RFC7636_VERIFIER,
  smtpAuth,
  tenantUrl,
} from './oauth-helpers.js';

describe.skipIf(!requireChromium('simulator consent browser test'))(
  `simulator consent pages in chromium (skipped when ${CHROMIUM} is missing)`,
  () => {
    let sim: Simulator;
    const browser = useBrowser();
    let callback: http.Server;
    let redirectUri: string;
    const landed: URL[] = [];

    beforeAll(async () => {
      sim = await startSimulator({
        ...ephemeral,
        style: 'microsoft',
        clients: [{ clientId: 'browser-app' }],
      });
      callback = http.createServer((req, res) => {
        const url = new URL(req.url ?? '/', redirectUri);
        if (url.pathname === '/callback') landed.push(url); // not the browser's /favicon.ico
        res.end('done');
      });
      await new Promise<void>((r) => callback.listen(0, '127.0.0.1', r));
      redirectUri = `http://127.0.0.1:${(callback.address() as AddressInfo).port}/callback`;
    });
    afterAll(async () => {
      callback?.close();
      await sim?.close();
    });

    it('Allow on the consent page lands on the loopback redirect with a code that redeems', async () => {
      const page = await browser().newPage();
      const scope = 'https://outlook.office.com/SMTP.Send offline_access';
      const q = authorizeQuery({
        clientId: 'browser-app',
        redirectUri,
        scope,
        state: 'browser-state',
        extra: { login_hint: 'web@contoso.example' },
      });
      await page.goto(`${tenantUrl(sim, 'common', 'authorize')}?${q}`);
      expect(await page.inputValue('#login')).toBe('web@contoso.example');
      await Promise.all([page.waitForURL(/\/callback\?/), page.click('#allow')]);
      const back = landed.at(-1)!;
      expect(back.searchParams.get('state')).toBe('browser-state');
      const r = await postForm(tenantUrl(sim, 'common', 'token'), {
        grant_type: 'authorization_code',
        client_id: 'browser-app',
        code: back.searchParams.get('code')!,
        redirect_uri: redirectUri,
        code_verifier: RFC7636_VERIFIER,
      });
      expect(r.status).toBe(200);
      expect(accepted(await smtpAuth(sim, 'web@contoso.example', r.body.access_token))).toBe(true);
      await page.close();
    });

    it('Deny lands with error=access_denied', async () => {
      const page = await browser().newPage();
      const q = authorizeQuery({ clientId: 'browser-app', redirectUri, scope: 'openid', state: 's2' });
      await page.goto(`${base(sim)}/authorize?${q}`);
      await Promise.all([page.waitForURL(/\/callback\?/), page.click('#deny')]);
      expect(landed.at(-1)!.searchParams.get('error')).toBe('access_denied');
      await page.close();
    });

    it('the device verification page takes the user code and approves', async () => {
      sim.setFlows({ deviceIntervalMs: 50 });
      const start = await postForm(tenantUrl(sim, 'common', 'devicecode'), {
        client_id: 'browser-app',
        scope: 'https://outlook.office.com/SMTP.Send offline_access',
      });
      const page = await browser().newPage();
      await page.goto(start.body.verification_uri);
      await page.fill('#user_code', start.body.user_code);
      await page.fill('#login', 'tv@contoso.example');
      await Promise.all([page.waitForSelector('#result'), page.click('#allow')]);
      expect(await page.getAttribute('#result', 'data-result')).toBe('approved');
      const r = await postForm(tenantUrl(sim, 'common', 'token'), {
        grant_type: DEVICE_CODE,
        client_id: 'browser-app',
        device_code: start.body.device_code,
      });
      expect(r.status).toBe(200);
      await page.close();
    });
  },
);
