import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  BUILTIN_PROVIDERS,
  ConfigError,
  loadAccountsFile,
  loadConfig,
  parseConfig,
  validateAccount,
} from '../../src/config/load.js';
import { HASH1, PEM, account, issuesOf, tempDir } from './helpers.js';

const base = { baseDir: '/srv/proxy', env: {} };
const parse = (raw: unknown, env: NodeJS.ProcessEnv = {}) => parseConfig(raw, { ...base, env });

describe('defaults', () => {
  it('an empty document is a valid config with every default applied', async () => {
    const { config, warnings } = await parse(null);
    expect(warnings).toEqual([]);
    expect(config.file).toBeUndefined();
    expect(config.smtp).toEqual({
      listen: [{ host: '127.0.0.1', port: 2525 }],
      tlsListen: [],
      hostname: os.hostname(),
      maxClients: 10_000,
      maxMessageSize: 36_700_160,
      maxRecipients: 100,
      idleTimeoutMs: 300_000,
      minDataRate: 500,
      trustedNetworks: [],
      proxyProtocol: false,
      maxInflightMessages: 10_000,
      maxInflightBytes: 536_870_912,
    });
    expect(config.smtp.requireTls).toBeUndefined();
    expect('requireTls' in config.smtp).toBe(false);
    expect(config.http).toEqual({ listen: { host: '127.0.0.1', port: 9090 } });
    expect(config.state).toEqual({
      dir: '/srv/proxy/data',
      instances: 1,
      keyPrefix: 'xoauth2-proxy:',
      leaseTtlMs: 30_000,
    });
    expect(config.workers).toBe(1);
    expect(config.shutdownTimeoutMs).toBe(30_000);
    expect(config.oauth).toEqual({
      refreshAheadMs: 300_000,
      requestTimeoutMs: 10_000,
      warmupConcurrency: 16,
    });
    expect(config.log).toEqual({ level: 'info', messages: true });
    expect(config.metrics).toEqual({ perAccount: false });
    expect(config.accounts).toEqual([]);
    expect(config.accountsFile).toBeUndefined();
    expect(config.providers).toEqual(BUILTIN_PROVIDERS);
  });

  it('built-in providers carry the documented endpoints and limits', async () => {
    const { config } = await parse({});
    expect(config.providers.google).toMatchObject({
      tokenUrl: 'https://oauth2.googleapis.com/token',
      scope: 'https://mail.google.com/',
      smtp: { host: 'smtp.gmail.com', port: 587, security: 'starttls', rejectUnauthorized: true },
      maxConnectionsPerAccount: 5,
      maxMessagesPerConnection: 100,
      messagesPerMinute: 0,
    });
    expect(config.providers.microsoft).toMatchObject({
      tokenUrl: 'https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token',
      tenant: 'common',
      scope: 'https://outlook.office.com/SMTP.Send offline_access',
      smtp: { host: 'smtp.office365.com', port: 587, security: 'starttls' },
      maxConnectionsPerAccount: 3,
      messagesPerMinute: 30,
    });
  });

  it('parses durations, host:port lists, CIDRs and numeric strings', async () => {
    const { config } = await parse({
      smtp: {
        listen: ['0.0.0.0:25', '[::1]:2525', ':2600'],
        requireTls: false,
        idleTimeout: '1h30m',
        maxClients: '50',
        trustedNetworks: ['10.0.0.0/8', '2001:db8::/32', '192.0.2.7'],
      },
      http: { listen: '' },
      shutdownTimeout: 2500,
      oauth: { refreshAhead: '90s' },
      log: { level: 'debug', messages: 'false' },
    });
    expect(config.smtp.listen).toEqual([
      { host: '0.0.0.0', port: 25 },
      { host: '::1', port: 2525 },
      { host: '127.0.0.1', port: 2600 },
    ]);
    expect(config.smtp.requireTls).toBe(false);
    expect(config.smtp.idleTimeoutMs).toBe(5_400_000);
    expect(config.smtp.maxClients).toBe(50);
    expect(config.smtp.trustedNetworks).toEqual(['10.0.0.0/8', '2001:db8::/32', '192.0.2.7/32']);
    expect(config.http.listen).toBeUndefined();
    expect(config.shutdownTimeoutMs).toBe(2500);
    expect(config.oauth.refreshAheadMs).toBe(90_000);
    expect(config.log).toEqual({ level: 'debug', messages: false });
  });

  it('treats empty secrets (e.g. unset ${VAR}) as absent', async () => {
    const { config, warnings } = await parse({ http: { adminToken: '${NOPE}' }, state: { secretKey: '' } });
    expect(config.http.adminToken).toBeUndefined();
    expect(config.state.secretKey).toBeUndefined();
    expect(warnings).toEqual([
      'http.adminToken: environment variable NOPE is not set; using an empty string',
    ]);
  });
});

describe('environment interpolation', () => {
  it('substitutes values before validation, so numbers and durations may come from the environment', async () => {
    const env = { PORT: '2626', ADMIN: 'tok', T: '45s', SECRET: 'x'.repeat(32) };
    const { config, warnings } = await parse(
      {
        smtp: { listen: ['127.0.0.1:${PORT}'], idleTimeout: '${T}', maxRecipients: '${MAXR:-7}' },
        http: { adminToken: '${ADMIN}' },
        state: { secretKey: '${SECRET}' },
        accounts: [account({ clientSecret: '${CS}' })],
      },
      env,
    );
    expect(config.smtp.listen[0]).toEqual({ host: '127.0.0.1', port: 2626 });
    expect(config.smtp.idleTimeoutMs).toBe(45_000);
    expect(config.smtp.maxRecipients).toBe(7);
    expect(config.http.adminToken).toBe('tok');
    expect(config.state.secretKey).toBe('x'.repeat(32));
    expect(config.accounts[0]!.clientSecret).toBeUndefined();
    expect(warnings).toEqual([
      'accounts[0].clientSecret: environment variable CS is not set; using an empty string',
    ]);
  });

  it('loadConfig uses the env it is given (not process.env)', async () => {
    const dir = await tempDir({ 'c.yaml': 'http:\n  adminToken: "${MY_TOKEN}"\n' });
    const { config } = await loadConfig(path.join(dir, 'c.yaml'), { MY_TOKEN: 'abc' });
    expect(config.http.adminToken).toBe('abc');
  });
});

describe('smtp.proxyProtocol', () => {
  it('is off by default, true, or a list of load balancer addresses', async () => {
    expect((await parse({})).config.smtp.proxyProtocol).toBe(false);
    expect((await parse({ smtp: { proxyProtocol: true } })).config.smtp.proxyProtocol).toBe(true);
    const list = await parse({ smtp: { proxyProtocol: ['10.0.0.5', ' 2001:db8::5 '] } });
    expect(list.config.smtp.proxyProtocol).toEqual(['10.0.0.5', '2001:db8::5']);
  });

  it('names the bad value', async () => {
    const byPath = async (v: unknown) =>
      Object.fromEntries(
        (await issuesOf(parse({ smtp: { proxyProtocol: v } }))).map((i) => [i.path, i.message]),
      );
    expect((await byPath('yes'))['smtp.proxyProtocol']).toBe(
      'expected true, false or a list of load balancer IP addresses, got "yes"',
    );
    const listed = await byPath(['10.0.0.5', '10.0.0.0/8', 7]);
    expect(listed['smtp.proxyProtocol[1]']).toBe(
      'expected the IP address of a load balancer, got "10.0.0.0/8"',
    );
    expect(listed['smtp.proxyProtocol[2]']).toBe('expected the IP address of a load balancer, got number 7');
    expect(listed['smtp.proxyProtocol[0]']).toBeUndefined();
  });
});

describe('smtp.minDataRate', () => {
  it('is 500 bytes/s by default; 0 turns the DATA deadline off; a negative or fractional rate is refused', async () => {
    expect((await parse({ smtp: { minDataRate: 0 } })).config.smtp.minDataRate).toBe(0);
    const bad = async (v: unknown) =>
      (await issuesOf(parse({ smtp: { minDataRate: v } }))).map((i) => [i.path, i.message]);
    expect(await bad(-1)).toEqual([['smtp.minDataRate', expect.stringMatching(/-1/)]]);
    expect(await bad('fast')).toEqual([['smtp.minDataRate', expect.stringMatching(/"fast"/)]]);
  });
});

describe('shared state and workers (scale-out)', () => {
  const key = 'k'.repeat(32);
  it('takes a Redis URL, the instance count, a key prefix and workers ("auto" = the cores)', async () => {
    const { config } = await parse({
      state: {
        redis: 'redis://127.0.0.1:6379/2',
        secretKey: key,
        instances: 3,
        keyPrefix: 'mail:',
        leaseTtl: '10s',
      },
      workers: 'auto',
    });
    expect(config.state).toMatchObject({
      redis: 'redis://127.0.0.1:6379/2',
      instances: 3,
      keyPrefix: 'mail:',
      leaseTtlMs: 10_000,
    });
    expect(config.workers).toBe(os.availableParallelism());
    expect((await parse({ workers: 2 })).config.workers).toBe(2);
  });

  it('names the bad field, and never echoes a Redis password', async () => {
    const bad = async (raw: unknown) =>
      Object.fromEntries((await issuesOf(parse(raw))).map((i) => [i.path, i.message]));
    expect(await bad({ state: { redis: 'redis://127.0.0.1:6379' } })).toEqual({
      'state.secretKey': expect.stringMatching(/required with state\.redis/),
    });
    const wrong = await bad({ state: { redis: 'http://user:hunter2-fake@host:1', secretKey: key } });
    expect(wrong['state.redis']).toMatch(/redis:\/\/host:port/);
    expect(JSON.stringify(wrong)).not.toContain('hunter2-fake');
    expect(await bad({ workers: 0 })).toEqual({ workers: expect.stringMatching(/from 1 to 1024, got 0/) });
    expect(await bad({ workers: 'many' })).toEqual({ workers: expect.stringMatching(/"many"/) });
    expect(await bad({ state: { instances: 0 } })).toEqual({
      'state.instances': expect.stringMatching(/got 0/),
    });
    expect(await bad({ state: { keyPrefix: 'a {b}' } })).toEqual({
      'state.keyPrefix': expect.stringMatching(/braces/),
    });
  });
});

describe('errors name the path of every bad field', () => {
  it('reports all problems at once, across sections', async () => {
    const issues = await issuesOf(
      parse({
        smtp: {
          listn: ['127.0.0.1:25'],
          listen: ['127.0.0.1:99999', 'nope'],
          maxClients: 'lots',
          idleTimeout: '5 minutes',
          trustedNetworks: ['10.0.0.0/33', '1.2.3', 'fd00::/8', 'fd00::/129'],
        },
        http: { listen: 9090.5 },
        state: { secretKey: 'short' },
        log: { level: 'verbose' },
        shutdownTimout: '10s',
        accounts: [account({ provider: 'gmial' }), account({ email: 'b@example.com', refreshToken: '' })],
      }),
    );
    const byPath = Object.fromEntries(issues.map((i) => [i.path, i.message]));
    expect(byPath['smtp.listn']).toBe('unknown key "listn" (did you mean "listen"?)');
    expect(byPath['smtp.listen[0]']).toMatch(/port 99999 is out of range/);
    expect(byPath['smtp.listen[1]']).toMatch(/"nope" is not HOST:PORT/);
    expect(byPath['smtp.maxClients']).toBe('expected an integer >= 1, got "lots"');
    expect(byPath['smtp.idleTimeout']).toMatch(
      /^expected a duration such as "250ms", "30s", "5m", "1h".*got "5 minutes"$/,
    );
    expect(byPath['smtp.trustedNetworks[0]']).toMatch(/prefix length must be 0 to 32/);
    expect(byPath['smtp.trustedNetworks[1]']).toMatch(/not a CIDR/);
    expect(byPath['smtp.trustedNetworks[2]']).toBeUndefined();
    expect(byPath['smtp.trustedNetworks[3]']).toMatch(/prefix length must be 0 to 128/);
    expect(byPath['http.listen']).toMatch(/expected "HOST:PORT"/);
    expect(byPath['state.secretKey']).toBe('must be at least 32 characters (got 5)');
    expect(byPath['log.level']).toMatch(/expected one of "fatal", .*got "verbose"/);
    expect(byPath.shutdownTimout).toBe('unknown key "shutdownTimout" (did you mean "shutdownTimeout"?)');
    expect(byPath['accounts[0].provider']).toBe('unknown provider "gmial" (did you mean "google"?)');
    expect(byPath['accounts[1].refreshToken']).toBe(
      'expected a non-empty string (leave refreshToken out to use the one `xoauth2-proxy accounts authorize` stores)',
    );
    expect(issues).toHaveLength(14);
  });

  it('wrong types say what was expected', async () => {
    const issues = await issuesOf(
      parse({ smtp: 'yes', metrics: { perAccount: 'sometimes' }, accounts: { email: 'x' }, providers: [] }),
    );
    expect(issues).toEqual(
      expect.arrayContaining([
        { path: 'smtp', message: 'expected a mapping, got "yes"' },
        { path: 'metrics.perAccount', message: 'expected true or false, got "sometimes"' },
        { path: 'accounts', message: 'expected a list of accounts, got a mapping' },
        { path: 'providers', message: 'expected a mapping of provider names, got a list' },
      ]),
    );
    expect(issues).toHaveLength(4);
  });

  it('an unknown key far from any allowed key lists the allowed ones', async () => {
    const issues = await issuesOf(parse({ metrics: { zzzzzzzz: 1 } }));
    expect(issues).toEqual([
      { path: 'metrics.zzzzzzzz', message: 'unknown key "zzzzzzzz" (expected one of: perAccount)' },
    ]);
  });

  it('the top level must be a mapping', async () => {
    const issues = await issuesOf(parse(['a']));
    expect(issues[0]!.message).toBe('expected a mapping of settings, got a list');
  });

  it('ConfigError carries the issues and a readable message', async () => {
    const err = await parse({ smtp: { maxRecipients: 0 } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toBe(
      'invalid configuration: smtp.maxRecipients: expected an integer >= 1, got 0',
    );
  });

  it('cross-field rules: tlsListen and requireTls need tls; the byte budget must fit one message', async () => {
    const issues = await issuesOf(
      parse({
        smtp: { tlsListen: ['0.0.0.0:465'], requireTls: true, maxMessageSize: 1000, maxInflightBytes: 999 },
      }),
    );
    expect(issues.map((i) => i.path).sort()).toEqual([
      'smtp.maxInflightBytes',
      'smtp.requireTls',
      'smtp.tlsListen',
    ]);
  });

  it('a non-loopback listener without TLS is a warning, not an error', async () => {
    const { warnings } = await parse({ smtp: { listen: ['0.0.0.0:2525'] } });
    expect(warnings).toEqual([expect.stringMatching(/^smtp\.listen\[0\]: 0\.0\.0\.0:2525 is not loopback/)]);
  });
});

describe('providers', () => {
  it('overrides fields of a built-in, merging smtp field by field', async () => {
    const { config } = await parse({
      providers: { google: { messagesPerMinute: 20, smtp: { port: 465, security: 'tls' } }, microsoft: null },
    });
    expect(config.providers.google).toEqual({
      ...BUILTIN_PROVIDERS.google,
      messagesPerMinute: 20,
      smtp: { host: 'smtp.gmail.com', port: 465, security: 'tls', rejectUnauthorized: true },
    });
    expect(config.providers.microsoft).toEqual(BUILTIN_PROVIDERS.microsoft);
    // the built-in table itself is untouched
    expect(BUILTIN_PROVIDERS.google.messagesPerMinute).toBe(0);
  });

  it('a new provider gets the provider defaults and needs tokenUrl, smtp.host and smtp.port', async () => {
    const { config } = await parse({
      providers: {
        sim: {
          tokenUrl: 'http://127.0.0.1:8089/token',
          smtp: { host: '127.0.0.1', port: 2626, security: 'none' },
        },
      },
    });
    expect(config.providers.sim).toEqual({
      name: 'sim',
      tokenUrl: 'http://127.0.0.1:8089/token',
      tenant: '',
      scope: '',
      smtp: { host: '127.0.0.1', port: 2626, security: 'none', rejectUnauthorized: true },
      maxConnectionsPerAccount: 3,
      maxMessagesPerConnection: 100,
      messagesPerMinute: 0,
      connectionIdleTimeoutMs: 60_000,
      connectionMaxAgeMs: 600_000,
      acquireTimeoutMs: 10_000,
      commandTimeoutMs: 30_000,
    });

    const issues = await issuesOf(
      parse({ providers: { other: { scope: 'x', smtp: { security: 'startls' } } } }),
    );
    expect(issues.map((i) => i.path)).toEqual(['providers.other.smtp.security']);
    const missing = await issuesOf(parse({ providers: { other: { scope: 'x', tokenUrl: 'ftp://x' } } }));
    expect(missing.map((i) => i.path)).toEqual(['providers.other.tokenUrl']);
    const required = await issuesOf(parse({ providers: { other: { scope: 'x' } } }));
    expect(required.map((i) => i.path)).toEqual([
      'providers.other.tokenUrl',
      'providers.other.smtp.host',
      'providers.other.smtp.port',
    ]);
    expect(required[0]!.message).toMatch(/^required: /);
  });

  it('a security typo gets a did-you-mean', async () => {
    const issues = await issuesOf(parse({ providers: { google: { smtp: { security: 'startls' } } } }));
    expect(issues).toEqual([
      {
        path: 'providers.google.smtp.security',
        message: 'expected one of "none", "starttls", "tls", got "startls" (did you mean "starttls"?)',
      },
    ]);
  });

  it('reads smtp.ca relative to the config directory, naming the path when unreadable', async () => {
    const dir = await tempDir({ 'ca.pem': PEM });
    const sim = {
      tokenUrl: 'https://t.example/token',
      smtp: { host: 'mx.example', port: 465, security: 'tls' },
    };
    const ok = await parseConfig(
      { providers: { sim: { ...sim, smtp: { ...sim.smtp, ca: './ca.pem' } } } },
      { baseDir: dir, env: {} },
    );
    expect(ok.config.providers.sim!.smtp.ca).toBe(PEM);
    const issues = await issuesOf(
      parseConfig(
        { providers: { sim: { ...sim, smtp: { ...sim.smtp, ca: 'missing.pem' } } } },
        { baseDir: dir, env: {} },
      ),
    );
    expect(issues).toEqual([
      {
        path: 'providers.sim.smtp.ca',
        message: `cannot read CA file ${path.join(dir, 'missing.pem')}: no such file`,
      },
    ]);
  });

  it('an account naming a provider that failed validation is not also "unknown provider"', async () => {
    const issues = await issuesOf(
      parse({ providers: { sim: { scope: 1 } }, accounts: [account({ provider: 'sim' })] }),
    );
    expect(issues.map((i) => i.path)).toEqual(['providers.sim.scope']);
  });
});

describe('accounts', () => {
  it('lower-cases emails and keeps only the fields that are set', async () => {
    const { config, warnings } = await parse({
      accounts: [
        account({
          email: 'Alice@Example.COM',
          sourceAddress: '192.0.2.10',
          maxConnections: 2,
          messagesPerMinute: 0,
        }),
      ],
    });
    expect(config.accounts).toEqual([
      {
        email: 'alice@example.com',
        provider: 'google',
        clientId: 'cid',
        refreshToken: 'rt',
        passwordHash: HASH1,
        sourceAddress: '192.0.2.10',
        maxConnections: 2,
        messagesPerMinute: 0,
      },
    ]);
    expect(warnings).toEqual([]);
  });

  it('validates each field, naming it', async () => {
    const issues = await issuesOf(
      parse({
        accounts: [
          { email: 'not-an-email', provider: 'google' },
          account({
            passwordHash: '$2b$10$bcrypt',
            sourceAddress: '300.1.1.1',
            maxConnections: 0,
            messagesPerMinute: -1,
          }),
          account({ email: 'c@example.com', password: 'pw', clientSecret: 5 }),
        ],
      }),
    );
    expect(issues).toEqual(
      expect.arrayContaining([
        { path: 'accounts[0].email', message: 'expected an email address, got "not-an-email"' },
        {
          path: 'accounts[0].clientId',
          message:
            'required: expected the OAuth client id (or set providers.google.oauthClient for every account of "google")',
        },
        { path: 'accounts[1].passwordHash', message: expect.stringMatching(/hash-password/) },
        { path: 'accounts[1].sourceAddress', message: 'expected an IPv4 or IPv6 address, got "300.1.1.1"' },
        { path: 'accounts[1].maxConnections', message: 'expected an integer >= 1, got 0' },
        { path: 'accounts[1].messagesPerMinute', message: 'expected an integer >= 0, got -1' },
        { path: 'accounts[2].clientSecret', message: 'expected a string, got a number (quote it)' },
      ]),
    );
    expect(issues).toHaveLength(7);
  });

  it('warns about plain-text passwords and accounts without any password', async () => {
    const { config, warnings } = await parse({
      accounts: [
        account({ email: 'p@example.com', passwordHash: undefined, password: 'pw' }),
        account({ email: 'n@example.com', passwordHash: undefined }),
      ],
    });
    expect(config.accounts[0]!.password).toBe('pw');
    expect(warnings).toEqual([
      expect.stringMatching(/^accounts\[0\]\.password: plain-text password/),
      expect.stringMatching(
        /^accounts\[1\]: n@example\.com has no passwordHash or password.*trustedNetworks/,
      ),
    ]);
  });

  it('password and passwordHash together are an error', async () => {
    const issues = await issuesOf(parse({ accounts: [account({ password: 'pw' })] }));
    expect(issues).toEqual([
      { path: 'accounts[0].password', message: 'set either passwordHash or password, not both' },
    ]);
  });

  it('merges the accounts file (list or {accounts:}) with inline accounts; duplicates name both places', async () => {
    const fileAccounts = [account({ email: 'f1@example.com' }), account({ email: 'DUP@example.com' })];
    for (const doc of [fileAccounts, { accounts: fileAccounts }]) {
      const dir = await tempDir({ 'accounts.json': JSON.stringify(doc) });
      const ok = await parseConfig(
        { accountsFile: 'accounts.json', accounts: [account({ email: 'inline@example.com' })] },
        { baseDir: dir, env: {} },
      );
      expect(ok.config.accountsFile).toBe(path.join(dir, 'accounts.json'));
      expect(ok.config.accounts.map((a) => a.email)).toEqual([
        'inline@example.com',
        'f1@example.com',
        'dup@example.com',
      ]);

      const issues = await issuesOf(
        parseConfig(
          { accountsFile: './accounts.json', accounts: [account({ email: 'dup@EXAMPLE.com' })] },
          { baseDir: dir, env: {} },
        ),
      );
      expect(issues).toEqual([
        {
          path: 'accounts.json: accounts[1].email',
          message: 'duplicate account "dup@example.com" (also at accounts[0]; emails are case-insensitive)',
        },
      ]);
    }
  });

  it('prefixes issues in the accounts file with its name and interpolates it too', async () => {
    const dir = await tempDir({
      'accounts.yaml': [
        'accounts:',
        '  - { email: a@example.com, provider: google, clientId: c, refreshToken: "${RT_A}" }',
        '  - { email: b@example.com, provider: gmail, clientId: c, refreshToken: r, extra: 1 }',
        '  - { email: b@example.com, provider: google, clientId: c, refreshToken: r }',
      ].join('\n'),
    });
    const issues = await issuesOf(parseConfig({ accountsFile: 'accounts.yaml' }, { baseDir: dir, env: {} }));
    expect(issues).toEqual([
      {
        path: 'accounts.yaml: accounts[0].refreshToken',
        message: expect.stringMatching(/^expected a non-empty string \(leave refreshToken out/),
      },
      { path: 'accounts.yaml: accounts[1].extra', message: expect.stringMatching(/^unknown key "extra"/) },
      {
        path: 'accounts.yaml: accounts[1].provider',
        message: 'unknown provider "gmail" (did you mean "google"?)',
      },
      {
        path: 'accounts.yaml: accounts[2].email',
        message: expect.stringMatching(
          /^duplicate account "b@example.com" \(also at accounts.yaml: accounts\[1\]/,
        ),
      },
    ]);
    const ok = await parseConfig(
      { accountsFile: 'accounts.yaml' },
      { baseDir: dir, env: { RT_A: 'x' } },
    ).catch((e: ConfigError) => e);
    expect(ok).toBeInstanceOf(ConfigError); // still the other two entries
    expect((ok as ConfigError).issues).toHaveLength(3);
  });

  it('an unreadable or malformed accounts file is reported at accountsFile', async () => {
    const dir = await tempDir({ 'bad.yaml': 'accounts: [\n', 'scalar.yaml': '42\n' });
    const missing = await issuesOf(parseConfig({ accountsFile: 'nope.yaml' }, { baseDir: dir, env: {} }));
    expect(missing).toEqual([
      { path: 'accountsFile', message: `cannot read ${path.join(dir, 'nope.yaml')}: no such file` },
    ]);
    const bad = await issuesOf(parseConfig({ accountsFile: 'bad.yaml' }, { baseDir: dir, env: {} }));
    expect(bad).toEqual([{ path: 'accountsFile', message: expect.stringMatching(/^not valid YAML\/JSON/) }]);
    const scalar = await issuesOf(parseConfig({ accountsFile: 'scalar.yaml' }, { baseDir: dir, env: {} }));
    expect(scalar).toEqual([
      { path: 'scalar.yaml', message: expect.stringMatching(/^expected a list of accounts/) },
    ]);
  });

  it('validateAccount is usable on its own (admin API) with relative paths', () => {
    const good = validateAccount(account({ email: 'X@Example.com' }), ['google']);
    expect(good).toEqual({
      ok: true,
      account: expect.objectContaining({ email: 'x@example.com' }),
      warnings: [],
    });
    const bad = validateAccount({ ...account({ provider: 'outlook' }), refreshToken: 7 }, BUILTIN_PROVIDERS);
    expect(bad).toEqual({
      ok: false,
      issues: [
        { path: 'refreshToken', message: 'expected a non-empty string, got a number (quote it)' },
        { path: 'provider', message: 'unknown provider "outlook" (did you mean "microsoft"?)' },
      ],
    });
    const unrelated = validateAccount(account({ provider: 'zzzzzz' }), ['google', 'sim']);
    expect(unrelated).toMatchObject({
      ok: false,
      issues: [{ path: 'provider', message: 'unknown provider "zzzzzz" (known providers: google, sim)' }],
    });
  });

  it('loadAccountsFile validates a file on its own', async () => {
    const dir = await tempDir({
      'accts.yaml':
        '- { email: A@example.com, provider: sim, clientId: c, refreshToken: r, password: "${PW}" }\n',
    });
    const r = await loadAccountsFile(path.join(dir, 'accts.yaml'), { providers: ['sim'], env: { PW: 'pw' } });
    expect(r.accounts).toEqual([
      { email: 'a@example.com', provider: 'sim', clientId: 'c', refreshToken: 'r', password: 'pw' },
    ]);
    expect(r.warnings).toEqual([expect.stringMatching(/^accts\.yaml: accounts\[0\]\.password: plain-text/)]);
    const issues = await issuesOf(loadAccountsFile(path.join(dir, 'accts.yaml'), { env: {} }));
    expect(issues.map((i) => i.path)).toEqual(['accts.yaml: accounts[0].provider']);
  });
});

describe('loadConfig', () => {
  it('reads YAML, resolves paths against the config directory and reads TLS files', async () => {
    const dir = await tempDir({
      'proxy.yaml': [
        'smtp:',
        '  listen: "0.0.0.0:587"',
        '  tls: { cert: certs/../cert.pem, key: ./key.pem }',
        'state: { dir: var/state }',
        'accountsFile: accounts.yaml',
      ].join('\n'),
      'cert.pem': PEM,
      'key.pem': PEM.replace(/CERTIFICATE/g, 'PRIVATE KEY'),
      'accounts.yaml': 'accounts: []\n',
    });
    const { config, warnings } = await loadConfig(path.join(dir, 'proxy.yaml'), {});
    expect(config.file).toBe(path.join(dir, 'proxy.yaml'));
    expect(config.state.dir).toBe(path.join(dir, 'var/state'));
    expect(config.accountsFile).toBe(path.join(dir, 'accounts.yaml'));
    expect(config.smtp.tls).toEqual({
      cert: PEM,
      key: PEM.replace(/CERTIFICATE/g, 'PRIVATE KEY'),
      certPath: path.join(dir, 'cert.pem'),
      keyPath: path.join(dir, 'key.pem'),
    });
    expect(warnings).toEqual([]); // non-loopback is fine with TLS
  });

  it('reads JSON too', async () => {
    const dir = await tempDir({ 'c.json': JSON.stringify({ smtp: { maxRecipients: 5 } }) });
    const { config } = await loadConfig(path.join(dir, 'c.json'), {});
    expect(config.smtp.maxRecipients).toBe(5);
  });

  it('names unreadable TLS files and unreadable or broken config files', async () => {
    const dir = await tempDir({
      'c.yaml': 'smtp:\n  tls: { cert: nope.pem, key: c.yaml }\n',
      'dup.yaml': 'a: 1\na: 2\n',
    });
    const issues = await issuesOf(loadConfig(path.join(dir, 'c.yaml'), {}));
    expect(issues).toEqual([
      {
        path: 'smtp.tls.cert',
        message: `cannot read certificate file ${path.join(dir, 'nope.pem')}: no such file`,
      },
      {
        path: 'smtp.tls.key',
        message: `${path.join(dir, 'c.yaml')} is not a PEM file (no "-----BEGIN" line)`,
      },
    ]);
    const missing = await issuesOf(loadConfig(path.join(dir, 'missing.yaml'), {}));
    expect(missing[0]!.message).toMatch(/cannot read .*missing\.yaml: no such file/);
    const dup = await issuesOf(loadConfig(path.join(dir, 'dup.yaml'), {}));
    expect(dup[0]!.message).toMatch(/^not valid YAML\/JSON at line 2/);
  });

  it('returns a deep-frozen snapshot', async () => {
    const { config } = await parse({ accounts: [account()] });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.smtp.listen[0])).toBe(true);
    expect(Object.isFrozen(config.providers.google!.smtp)).toBe(true);
    expect(Object.isFrozen(config.accounts[0])).toBe(true);
    expect(() => {
      (config.smtp as { maxClients: number }).maxClients = 1;
    }).toThrow(TypeError);
    expect(() => (config.accounts as unknown as unknown[]).push({})).toThrow(TypeError);
  });
});
