import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { postForm, simulateProgram } from './helpers.js';
import { waitFor } from '../../helpers/wait.js';
import { get, JWT_BEARER, rsaKeyPair, signJwt } from './oauth-helpers.js';

const listen = ['--smtp', '127.0.0.1:0', '--http', '127.0.0.1:0'];

/** Run `simulate` until its listening line; returns the event, the printed lines and a stop(). */
async function run(args: string[]) {
  const lines: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: any) => {
    lines.push(...String(chunk).split('\n').filter(Boolean));
    return true;
  });
  const { cmd } = simulateProgram();
  const done = cmd.parseAsync(['simulate', ...listen, ...args], { from: 'user' });
  const json = await waitFor(
    'the listening line',
    () => lines.find((l) => l.startsWith('{')),
    (l) => l !== undefined,
    6000,
  ).catch(() => {
    throw new Error(`no listening line: ${lines.join(' | ')}`);
  });
  const event = JSON.parse(json!);
  return {
    event,
    lines,
    stop: async () => {
      process.emit('SIGTERM', 'SIGTERM');
      await done;
    },
  };
}

describe('simulate: registering clients, apps, service accounts and permissions', () => {
  afterEach(() => vi.restoreAllMocks());

  it('registers what the options say and writes the service account key file', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sim-reg-'));
    const keyFile = path.join(dir, 'svc.json');
    const certFile = path.join(dir, 'app.pem');
    await writeFile(certFile, rsaKeyPair().publicKeyPem);
    const sim = await run([
      '--client',
      'desktop.apps.example:fake-secret',
      '--client',
      'public.apps.example',
      '--app',
      'contoso.onmicrosoft.com/app-guid:fake-app-secret',
      '--app-certificate',
      `app-guid=${certFile}`,
      '--permission',
      'app-guid=shared@contoso.example',
      '--redirect-uri',
      'https://proxy.example.test/cb',
      '--service-account',
      `svc@sim-project.iam.gserviceaccount.com=${keyFile}`,
      '--permission',
      'svc@sim-project.iam.gserviceaccount.com=@example.com',
      '--device-interval',
      '250',
      '--code-lifetime',
      '30',
    ]);
    try {
      expect(sim.lines).toContain(
        `simulator: service account svc@sim-project.iam.gserviceaccount.com key file written to ${keyFile}`,
      );
      expect(sim.event.endpoints.authorize).toBe(`http://${sim.event.http}/authorize`);
      const dirInfo = (await get(`http://${sim.event.http}/control/directory`)).json;
      expect(dirInfo).toMatchObject({
        clientsOpen: false,
        serviceAccountsOpen: false,
        redirectUris: ['https://proxy.example.test/cb'],
        flows: { codeLifetimeSec: 30, deviceIntervalMs: 250, deviceCodeLifetimeSec: 900 },
      });
      expect(dirInfo.clients).toEqual([
        expect.objectContaining({ clientId: 'desktop.apps.example', tenant: null, hasSecret: true }),
        expect.objectContaining({ clientId: 'public.apps.example', confidential: false }),
        expect.objectContaining({
          clientId: 'app-guid',
          tenant: 'contoso.onmicrosoft.com',
          hasSecret: true,
          certificate: { x5t: null },
          mailboxes: ['shared@contoso.example'],
        }),
      ]);
      expect(dirInfo.serviceAccounts).toEqual([
        expect.objectContaining({
          clientEmail: 'svc@sim-project.iam.gserviceaccount.com',
          mailboxes: ['@example.com'],
        }),
      ]);
      expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
      const key = JSON.parse(await readFile(keyFile, 'utf8'));
      expect(key.token_uri).toBe(sim.event.tokenUrl);
      const now = Math.floor(Date.now() / 1000);
      const jwt = signJwt(
        { alg: 'RS256', kid: key.private_key_id },
        {
          iss: key.client_email,
          sub: 'a@example.com',
          scope: 'https://mail.google.com/',
          aud: key.token_uri,
          iat: now,
          exp: now + 600,
        },
        key.private_key,
      );
      expect((await postForm(sim.event.tokenUrl, { grant_type: JWT_BEARER, assertion: jwt })).status).toBe(
        200,
      );
    } finally {
      await sim.stop();
    }
  });

  it.each([
    [
      ['--app', 'no-tenant'],
      /option '--app <tenant\/id\[:secret\]>' argument 'no-tenant' is invalid\. must be TENANT\/ID/,
    ],
    [['--client', 'id:'], /option '--client <id\[:secret\]>'.*must be ID or ID:SECRET/],
    [['--permission', 'nomailbox'], /option '--permission <id=mailbox>'.*must be ID=MAILBOX/],
    [['--device-interval', '0'], /option '--device-interval <ms>'.*must be a number >= 1/],
  ])('rejects %j naming the option', async (args, pattern) => {
    const { cmd, errors } = simulateProgram();
    await expect(cmd.parseAsync(['simulate', ...listen, ...args], { from: 'user' })).rejects.toThrow();
    expect(errors.join('')).toMatch(pattern);
  });

  it.each([
    [
      ['--permission', 'ghost=a@example.com'],
      /--permission ghost=a@example.com: permission.clientId: "ghost" is not a registered client/,
    ],
    [
      ['--app-certificate', 'ghost=/nonexistent.pem'],
      /--app-certificate: "ghost" is not given by --client or --app/,
    ],
    [
      ['--redirect-uri', 'https://x.example/cb#frag'],
      /redirectUris\[0\]: "https:\/\/x.example\/cb#frag" must not have a fragment/,
    ],
  ])('refuses %j at start with a clear error', async (args, pattern) => {
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const { cmd, errors } = simulateProgram();
    await expect(cmd.parseAsync(['simulate', ...listen, ...args], { from: 'user' })).rejects.toThrow();
    expect(errors.join('')).toMatch(pattern);
  });
});
