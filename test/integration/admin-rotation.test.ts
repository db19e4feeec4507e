// An account added through the admin API with ?verify=true, at a provider that rotates refresh
// tokens and revokes a grant whose retired token is presented again: the verification's refresh
// spent the configured token, so its successor must be the one the proxy uses afterwards (it used
// the retired one: invalid_grant, and with reuse detection the grant was revoked).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/accounts/password.js';
import { simRefreshToken } from '../../src/tools/sim/index.js';
import { simProvider } from '../helpers/procs.js';
import { TEST_PASSWORD } from '../helpers/sim-accounts.js';
import { loginAndSend } from '../helpers/smtp-client.js';
import { useProcs } from '../helpers/use-procs.js';

const ADMIN = 'test-admin-token-not-secret';
const NEW = 'new-mailbox@example.com';

describe('admin API, verified add, rotating provider', () => {
  const procs = useProcs();

  it('keeps the rotation the verification got: the account delivers and the grant survives', async () => {
    const sim = await procs.sim([
      '--style',
      'microsoft',
      '--rotate-refresh-tokens',
      '--detect-refresh-reuse',
    ]);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-admin-rot-'));
    const accountsFile = path.join(dir, 'accounts.yaml');
    fs.writeFileSync(accountsFile, 'accounts: []\n');
    const proxy = await procs.proxy(
      { providers: { sim: simProvider(sim) }, http: { adminToken: ADMIN }, accountsFile },
      { dir },
    );
    const res = await fetch(`http://127.0.0.1:${proxy.httpPort}/admin/accounts?verify=true`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        email: NEW,
        provider: 'sim',
        clientId: 'cid',
        refreshToken: simRefreshToken(NEW, 'admin'),
        passwordHash: await hashPassword(TEST_PASSWORD),
      }),
    });
    expect(res.status, await res.text()).toBe(201);
    const r = await loginAndSend(proxy.smtpPort, NEW, TEST_PASSWORD);
    expect(r.reply.code, r.reply.response).toBe(250);
    const stats = await sim.stats();
    expect(stats.violations.refreshTokenReuse).toBe(0);
    expect(stats.violations.revokedForReuse).toEqual([]);
    expect(stats.refreshesPerUser[NEW]).toBe(2); // the verification, then the proxy's own
  }, 30_000);
});
