// The `accounts` commands against a real config file, through commander as the CLI runs them.
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import YAML from 'yaml';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  loadAccountsContext,
  registerAccountsCommands,
  runSetPassword,
} from '../../src/commands/accounts.js';

const FIXTURES = path.join(__dirname, '../fixtures');

let dir: string;
let cfg: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'xo-cli-'));
  cfg = path.join(dir, 'xoauth2-proxy.yaml');
  await writeFile(cfg, 'accountsFile: ./accounts.yaml\n');
  process.exitCode = undefined;
});
afterEach(async () => {
  process.exitCode = undefined;
  await rm(dir, { recursive: true, force: true });
});

async function cli(...args: string[]): Promise<{ out: string; err: string; code: number }> {
  let out = '';
  let err = '';
  const program = new Command().exitOverride();
  registerAccountsCommands(program, {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
  });
  process.exitCode = undefined;
  await program.parseAsync(['node', 'xoauth2-proxy', ...args]);
  const code = Number(process.exitCode ?? 0);
  process.exitCode = undefined;
  return { out, err, code };
}

const accountsFile = () => path.join(dir, 'accounts.yaml');
const stored = async () =>
  YAML.parse(await readFile(accountsFile(), 'utf8')).accounts as Record<string, unknown>[];

describe('accounts CLI', () => {
  it('import JSON: maps accounts, holds back the consumer-Outlook one and prints the provider snippet', async () => {
    const r = await cli('accounts', 'import', path.join(FIXTURES, 'python-proxy-accounts.json'), '-c', cfg);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain('imported sender1@example.com');
    expect(r.out).toContain('imported sender3@example.org');
    expect(r.out).toMatch(/outlook-consumer: sender2@example.net/);
    expect(r.out).toContain('tokenUrl: https://login.live.com/oauth20_token.srf');
    expect(r.out).toMatch(/needs a passwordHash .*hash-password/);
    expect((await stored()).map((a) => a.email)).toEqual(['sender1@example.com', 'sender3@example.org']);
    expect((await stat(accountsFile())).mode & 0o777).toBe(0o600);

    // paste the printed snippet into the config, as the operator would, and import again
    const snippet = r.out.slice(r.out.indexOf('    providers:')).split('\n\n')[0]!.replace(/^ {4}/gm, '');
    await writeFile(cfg, `accountsFile: ./accounts.yaml\n${snippet}\n`);
    const again = await cli(
      'accounts',
      'import',
      path.join(FIXTURES, 'python-proxy-accounts.json'),
      '-c',
      cfg,
    );
    expect(again.code).toBe(0);
    expect(again.out).toContain('imported sender2@example.net');
    expect(again.out).toMatch(/skipped sender1@example.com: already in accounts.yaml/);
    const all = await stored();
    expect(all.find((a) => a.email === 'sender2@example.net')).toMatchObject({
      provider: 'outlook-consumer',
    });
    // the config with the imported accounts is valid as a whole
    const ctx = await loadAccountsContext(cfg);
    expect(ctx.accounts.map((a) => a.email)).toEqual([
      'sender1@example.com',
      'sender3@example.org',
      'sender2@example.net',
    ]);
  });

  it('import CSV --dry-run writes nothing; errors name the line', async () => {
    const csv = path.join(dir, 'in.csv');
    await writeFile(
      csv,
      (await readFile(path.join(FIXTURES, 'python-proxy-accounts.csv'), 'utf8')) +
        'who@x.io,id,rt,opaque-client\n',
    );
    const r = await cli('accounts', 'import', csv, '--dry-run', '-c', cfg);
    expect(r.out).toContain('would import sender4@example.com');
    expect(r.out).toContain('would import sender5@hotmail.example');
    expect(r.out).toContain('dry run: nothing written');
    expect(r.err).toMatch(/in\.csv: line 4 \(who@x\.io\): cannot tell the provider/);
    expect(r.code).toBe(1);
    expect(await stored()).toEqual([]);
    const forced = await cli('accounts', 'import', csv, '--provider', 'gmail', '-c', cfg);
    expect(forced.out).toContain('imported who@x.io');
    expect((await stored()).map((a) => a.provider)).toEqual(['google', 'google', 'google']);
    expect((await cli('accounts', 'import', csv, '--provider', 'nope', '-c', cfg)).code).toBe(1);
  });

  it('add, list (no secrets), set-password, remove', async () => {
    const add = await cli(
      'accounts',
      'add',
      '-c',
      cfg,
      '--email',
      'Ops@Example.com',
      '--provider',
      'microsoft',
      '--client-id',
      '11111111-2222-3333-4444-555555555555',
      '--client-secret',
      'TOPSECRET',
      '--refresh-token',
      'RTSECRET',
      '--source-address',
      '127.0.0.1',
      '--tenant',
      'contoso',
    );
    expect(add.err).toBe('');
    expect(add.out).toContain('added ops@example.com');
    const dup = await cli(
      'accounts',
      'add',
      '-c',
      cfg,
      '--email',
      'ops@example.com',
      '--provider',
      'google',
      '--client-id',
      'c',
      '--refresh-token',
      'r',
    );
    expect(dup.code).toBe(1);
    expect(dup.err).toMatch(/already exists/);
    const bad = await cli(
      'accounts',
      'add',
      '-c',
      cfg,
      '--email',
      'x@example.com',
      '--provider',
      'gmial',
      '--client-id',
      'c',
      '--refresh-token',
      'r',
    );
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/provider: unknown provider "gmial"/);

    const list = await cli('accounts', 'list', '-c', cfg);
    expect(list.out).toMatch(
      /ops@example\.com\s+microsoft\s+refresh token in file\s+-\s+-\s+no\s+127\.0\.0\.1/,
    );
    expect(list.out).not.toMatch(/SECRET/);
    const json = JSON.parse((await cli('accounts', 'list', '--json', '-c', cfg)).out);
    expect(json).toEqual([
      {
        email: 'ops@example.com',
        provider: 'microsoft',
        auth: 'refresh token in file',
        hasPassword: false,
        sourceAddress: '127.0.0.1',
      },
    ]);

    const hash = '$scrypt$ln=14,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
    const ctx = await loadAccountsContext(cfg);
    expect(await runSetPassword(ctx, 'OPS@example.com', hash, { write: () => 0 }, { write: () => 0 })).toBe(
      0,
    );
    expect((await stored())[0]).toMatchObject({
      passwordHash: hash,
      tenant: 'contoso',
      clientSecret: 'TOPSECRET',
    });
    expect((await cli('accounts', 'list', '-c', cfg)).out).toMatch(
      /ops@example\.com\s+microsoft\s+refresh token in file\s+-\s+-\s+yes/,
    );

    expect((await cli('accounts', 'remove', 'ops@example.com', '-c', cfg)).code).toBe(0);
    const gone = await cli('accounts', 'remove', 'ops@example.com', '-c', cfg);
    expect(gone.code).toBe(1);
    expect(gone.err).toMatch(/no account "ops@example.com"/);
  });

  it('add: an app-only account is an email (and password); a refresh-token account without a token is told to authorize', async () => {
    await writeFile(
      cfg,
      YAML.stringify({
        accountsFile: './accounts.yaml',
        providers: {
          m365: {
            tokenUrl: 'http://127.0.0.1:1/{tenant}/token',
            smtp: { host: '127.0.0.1', port: 1 },
            auth: {
              type: 'client_credentials',
              tenant: 'contoso.example',
              clientId: 'app',
              clientSecret: 'not-real',
            },
          },
          google: { oauthClient: { clientId: 'g.apps.googleusercontent.com' } },
        },
      }),
    );
    const app = await cli('accounts', 'add', '--email', 'A@contoso.example', '--provider', 'm365', '-c', cfg);
    expect(app.err).toBe('');
    expect(app.code).toBe(0);
    expect(app.out).not.toMatch(/authorize/);
    const extra = await cli(
      'accounts',
      'add',
      '--email',
      'b@contoso.example',
      '--provider',
      'm365',
      '--client-id',
      'c',
      '-c',
      cfg,
    );
    expect(extra.code).toBe(1);
    expect(extra.err).toMatch(
      /clientId: not used: provider "m365" gets tokens for its mailboxes as Microsoft app-only/,
    );
    const delegated = await cli(
      'accounts',
      'add',
      '--email',
      'c@example.com',
      '--provider',
      'google',
      '-c',
      cfg,
    );
    expect(delegated.code).toBe(0);
    expect(delegated.out).toMatch(
      /c@example\.com has no refresh token yet: run `xoauth2-proxy accounts authorize c@example\.com/,
    );
    expect(await stored()).toEqual([
      { email: 'a@contoso.example', provider: 'm365' },
      { email: 'c@example.com', provider: 'google' },
    ]);
    const list = await cli('accounts', 'list', '-c', cfg);
    expect(list.out).toMatch(/a@contoso\.example\s+m365\s+app-only\s+-/);
    expect(list.out).toMatch(/c@example\.com\s+google\s+refresh token in store\s+needs_authorization/);
    expect(list.out).toMatch(
      /c@example\.com needs authorization: xoauth2-proxy accounts authorize c@example\.com/,
    );
  });

  it('a config without accountsFile is refused with a clear message', async () => {
    await writeFile(cfg, 'accounts: []\n');
    await expect(cli('accounts', 'list', '-c', cfg)).rejects.toThrow(/has no accountsFile/);
  });
});
