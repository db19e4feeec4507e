import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { verifyPassword } from '../../src/accounts/password.js';
import { registerConfigCommands, runCheck, runHashPassword } from '../../src/commands/check.js';
import { loadConfig } from '../../src/config/load.js';
import { tempDir } from '../config/helpers.js';

const EXAMPLES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../examples');

function sink() {
  let text = '';
  return {
    write: (s: string) => (text += s),
    get text() {
      return text;
    },
  };
}

async function check(file: string, env: NodeJS.ProcessEnv = {}) {
  const out = sink();
  const err = sink();
  const code = await runCheck(file, out, err, env);
  return { code, out: out.text, err: err.text };
}

describe('check', async () => {
  const configs = (await readdir(EXAMPLES)).filter((f) => /\.ya?ml$/.test(f) && f !== 'accounts.yaml');

  it('covers the example configs', () => {
    expect(configs.sort()).toEqual(['gmail.yaml', 'microsoft365.yaml', 'xoauth2-proxy.yaml']);
  });

  it.each(configs)('exits 0 on examples/%s with an empty environment', async (name) => {
    const r = await check(path.join(EXAMPLES, name));
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/configuration OK\n$/);
  });

  it('the simulator example has three sim accounts whose passwords match the documented ones', async () => {
    const { config, warnings } = await loadConfig(path.join(EXAMPLES, 'xoauth2-proxy.yaml'), {});
    expect(warnings).toEqual([]);
    expect(config.providers.sim).toMatchObject({
      tokenUrl: 'http://127.0.0.1:8089/token',
      smtp: { host: '127.0.0.1', port: 2626, security: 'none' },
    });
    expect(config.accounts.map((a) => [a.email, a.provider, a.clientId, a.refreshToken])).toEqual(
      [1, 2, 3].map((i) => [`user${i}@example.com`, 'sim', 'sim-client', `simrt.user${i}@example.com.demo`]),
    );
    for (const [i, a] of config.accounts.entries()) {
      expect(await verifyPassword(`demo-password-${i + 1}`, a.passwordHash!)).toBe(true);
    }
  });

  it('the real-provider examples take secrets from the environment', async () => {
    const env = {
      ALICE_REFRESH_TOKEN: '1//alice',
      GOOGLE_CLIENT_SECRET: 'gs',
      XOAUTH2_PROXY_SECRET: 'k'.repeat(40),
    };
    const { config } = await loadConfig(path.join(EXAMPLES, 'gmail.yaml'), env);
    expect(config.accounts[0]).toMatchObject({ refreshToken: '1//alice', clientSecret: 'gs' });
    expect(config.state.secretKey).toBe('k'.repeat(40));
    const ms = await loadConfig(path.join(EXAMPLES, 'microsoft365.yaml'), { M365_TENANT_ID: 'contoso' });
    expect(ms.config.providers.microsoft!.tenant).toBe('contoso');
  });

  it('prints the summary: listeners, http, providers with account counts, warnings', async () => {
    const r = await check(path.join(EXAMPLES, 'gmail.yaml'));
    expect(r.out).toMatch(/^smtp\s+127\.0\.0\.1:2525$/m);
    expect(r.out).toMatch(/^http\s+127\.0\.0\.1:9090 \(admin API disabled\)$/m);
    expect(r.out).toMatch(
      /^ {2}google\s+smtp\.gmail\.com:587 starttls, 5 conn\/account, unlimited; 2 accounts$/m,
    );
    expect(r.out).toMatch(/^ {2}microsoft\s+.*; 0 accounts$/m);
    expect(r.out).toMatch(/^accounts\s+2$/m);
    expect(r.out).toMatch(
      /^ {2}- http\.adminToken: environment variable XOAUTH2_PROXY_ADMIN_TOKEN is not set/m,
    );
  });

  it('exits 1 on a bad file, one `path: message` line per problem on stderr', async () => {
    const dir = await tempDir({
      'bad.yaml': [
        'smtp:',
        '  listen: ["127.0.0.1:2525"]',
        '  idleTimeout: forever',
        'accountsFile: accounts.yaml',
        'accounts:',
        '  - { email: a@example.com, provider: gmial, clientId: c, refreshToken: r }',
      ].join('\n'),
      'accounts.yaml': '- { email: A@example.com, provider: google, clientId: c, refreshToken: r }\n',
    });
    const r = await check(path.join(dir, 'bad.yaml'));
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    const lines = r.err.trimEnd().split('\n');
    expect(lines).toEqual([
      expect.stringMatching(/^smtp\.idleTimeout: expected a duration .*got "forever"$/),
      'accounts[0].provider: unknown provider "gmial" (did you mean "google"?)',
      expect.stringMatching(
        /^accounts\.yaml: accounts\[0\]\.email: duplicate account "a@example\.com" \(also at accounts\[0\]/,
      ),
      `${path.join(dir, 'bad.yaml')}: 3 problems found`,
    ]);
  });

  it('exits 1 naming the file when it does not exist', async () => {
    const r = await check('/nonexistent/xoauth2-proxy.yaml');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^\/nonexistent\/xoauth2-proxy\.yaml: cannot read .*: no such file$/m);
  });
});

describe('hash-password', () => {
  it('hashes the whole of stdin minus one trailing newline', async () => {
    const out = sink();
    const err = sink();
    const code = await runHashPassword(
      Readable.from([Buffer.from('s3cret pass'), Buffer.from('word\n')]),
      out,
      err,
    );
    expect(code).toBe(0);
    expect(err.text).toBe('');
    const hash = out.text.trimEnd();
    expect(await verifyPassword('s3cret password', hash)).toBe(true);
    expect(await verifyPassword('s3cret password\n', hash)).toBe(false);
  });

  it('keeps all but the last newline (a password may end in whitespace)', async () => {
    const out = sink();
    expect(await runHashPassword(Readable.from(['pw \n\n']), out, sink())).toBe(0);
    expect(await verifyPassword('pw \n', out.text.trimEnd())).toBe(true);
  });

  it('refuses an empty password', async () => {
    const out = sink();
    const err = sink();
    expect(await runHashPassword(Readable.from(['\n']), out, err)).toBe(1);
    expect(out.text).toBe('');
    expect(err.text).toMatch(/empty password/);
  });

  it('prompts without echo on a TTY and asks twice', async () => {
    const rawModes: boolean[] = [];
    const stream = new Readable({ read() {} });
    const input = Object.assign(stream, {
      isTTY: true,
      setRawMode(raw: boolean) {
        rawModes.push(raw);
        // type the answer once the prompt has switched the terminal to raw mode
        if (raw) queueMicrotask(() => stream.push('tty-pwx\u007f\r'));
        return stream;
      },
    });
    const out = sink();
    const err = sink();
    expect(await runHashPassword(input, out, err)).toBe(0);
    expect(err.text).toBe('Password: \nRepeat password: \n');
    expect(rawModes).toEqual([true, false, true, false]);
    expect(await verifyPassword('tty-pw', out.text.trimEnd())).toBe(true);
  });
});

describe('registerConfigCommands', () => {
  it('adds check (with -c defaulting to ./xoauth2-proxy.yaml) and hash-password', () => {
    const program = new Command();
    registerConfigCommands(program);
    const check = program.commands.find((c) => c.name() === 'check')!;
    expect(check.options.map((o) => o.flags)).toEqual(['-c, --config <file>']);
    expect(check.options[0]!.defaultValue).toBe('./xoauth2-proxy.yaml');
    expect(program.commands.map((c) => c.name())).toContain('hash-password');
  });

  it('check sets process.exitCode instead of exiting', async () => {
    const program = new Command().exitOverride();
    registerConfigCommands(program);
    const before = process.exitCode;
    const dir = await tempDir({ 'c.yaml': 'smtp: { maxClients: 0 }\n' });
    const write = process.stderr.write;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      await program.parseAsync(['node', 'cli', 'check', '-c', path.join(dir, 'c.yaml')]);
      expect(process.exitCode).toBe(1);
    } finally {
      process.stderr.write = write;
      process.exitCode = before;
    }
  });
});
