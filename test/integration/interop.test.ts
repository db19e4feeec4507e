// Third-party clients against the real proxy: swaks (Debian) and Python's smtplib.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { simProvider, type ProxyProc, type SimProc } from '../helpers/procs.js';
import { TEST_PASSWORD as PW, simAccount } from '../helpers/sim-accounts.js';
import { useProcs } from '../helpers/use-procs.js';

const run = promisify(execFile);
const USER = 'interop@example.com';
const hasSwaks = fs.existsSync('/usr/bin/swaks');

describe('interop', () => {
  const procs = useProcs('all');
  let sim: SimProc;
  let proxy: ProxyProc;
  beforeAll(async () => {
    sim = await procs.sim();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-interop-'));
    const c = await (
      await import('selfsigned')
    ).generate([{ name: 'commonName', value: 'localhost' }], { keySize: 2048 } as any);
    fs.writeFileSync(path.join(dir, 'cert.pem'), c.cert);
    fs.writeFileSync(path.join(dir, 'key.pem'), c.private);
    proxy = await procs.proxy(
      {
        smtp: { tls: { cert: './cert.pem', key: './key.pem' } },
        providers: { sim: simProvider(sim) },
        accounts: [simAccount(USER)],
      },
      { dir },
    );
  });

  for (const auth of ['PLAIN', 'LOGIN']) {
    for (const tls of [false, true]) {
      it.skipIf(!hasSwaks)(`swaks AUTH ${auth}${tls ? ' with STARTTLS' : ''}`, async () => {
        const id = `<swaks-${auth}-${tls}-${Date.now()}@test>`;
        const args = [
          '--server',
          `127.0.0.1:${proxy.smtpPort}`,
          '--auth',
          auth,
          '--auth-user',
          USER,
          '--auth-password',
          PW,
          '--from',
          USER,
          '--to',
          'rcpt@example.net',
          '--header',
          `Message-Id: ${id}`,
          '--timeout',
          '20',
        ];
        if (tls) args.push('--tls');
        const { stdout } = await run('swaks', args);
        expect(stdout).toMatch(/<[~-] {2}250 2\.0\.0 upstream: /);
        expect((await sim.stats()).messageIds).toContain(id);
      });
    }
  }

  it('Python smtplib with STARTTLS and login()', async () => {
    const id = `<py-${Date.now()}@test>`;
    const script = `
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=20)
s.ehlo(); s.starttls(context=ctx); s.ehlo(); s.login(sys.argv[2], sys.argv[3])
msg = "From: %s\\r\\nTo: r@example.net\\r\\nSubject: py\\r\\nMessage-ID: %s\\r\\n\\r\\nhello\\r\\n" % (sys.argv[2], sys.argv[4])
print(s.sendmail(sys.argv[2], ['r@example.net'], msg)); s.quit(); print('OK')
`;
    const { stdout } = await run('python3', ['-c', script, String(proxy.smtpPort), USER, PW, id]);
    expect(stdout.trim().split('\n').pop()).toBe('OK');
    expect((await sim.stats()).messageIds).toContain(id);
  });
});
