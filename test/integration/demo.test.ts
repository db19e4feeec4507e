// `xoauth2-proxy demo --once` as a person runs it: the built CLI in a child process. Its summary,
// and the one mailbox it authorizes end to end (consent form, loopback redirect, code exchange,
// sealed refresh token, account added) before sending through it.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { describe, expect, it } from 'vitest';
import { CLI } from '../helpers/procs.js';

function demo(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'demo', '--once', ...args], { timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('demo --once', () => {
  it('delivers its messages, then authorizes a mailbox through the consent page and delivers through it', async () => {
    const started = Date.now();
    const r = await demo(['--messages', '40', '--mailboxes', '2']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(r.stdout).toMatch(/^delivered: 40\/40 /m);
    expect(r.stdout).toMatch(/0 accepted messages missing \(lost\)/);
    const lines = r.stdout.split('\n').filter((l) => l.startsWith('authorize:'));
    expect(lines).toHaveLength(5);
    expect(lines[0]).toMatch(
      /^authorize: authorized@example\.com: consent page at http:\/\/127\.0\.0\.1:\d+\/authorize \(client demo-client, PKCE S256, state /,
    );
    expect(lines[1]).toMatch(/Allow: redirected to http:\/\/127\.0\.0\.1:\d+\/callback$/);
    expect(lines[2]).toMatch(/code exchanged with the PKCE verifier .*: access and refresh token granted$/);
    expect(lines[3]).toMatch(/refresh token stored sealed in .*state\.db \(not in plain text on disk\)/);
    expect(lines[4]).toMatch(/^authorize: 3\/3 messages delivered through authorized@example\.com /);

    // what it left on disk: the account in the accounts file with a password hash and no token
    const config = /^config: +(\S+)$/m.exec(r.stdout)![1]!;
    const accounts = (
      YAML.parse(fs.readFileSync(path.join(path.dirname(config), 'accounts.yaml'), 'utf8')) as {
        accounts: Record<string, unknown>[];
      }
    ).accounts;
    const added = accounts.find((a) => a.email === 'authorized@example.com');
    expect(added).toMatchObject({ provider: 'google', passwordHash: expect.stringMatching(/^\$scrypt\$/) });
    expect(added).not.toHaveProperty('refreshToken');
    expect(added).not.toHaveProperty('password');
  }, 60_000);

  it('--no-authorize skips the authorization', async () => {
    const r = await demo(['--messages', '10', '--mailboxes', '1', '--no-authorize']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^delivered: 10\/10 /m);
    expect(r.stdout).not.toMatch(/^authorize:/m);
  }, 60_000);
});
