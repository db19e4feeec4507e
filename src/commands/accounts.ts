// `accounts list|add|remove|set-password|import`: edit the accounts file named by the config while
// the proxy is stopped or running (a running proxy picks the change up by watching the file, or on
// SIGHUP). The run* functions do the work (streams in, exit code out) so tests call them directly.

import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import YAML from 'yaml';
import type { AccountValidation } from '../config/accounts.js';
import type { AccountConfig, Config } from '../config/types.js';
import { normalizeEmail } from '../shared/email.js';
import { formatIssue } from '../shared/issue.js';
import { AccountsFileEditor } from '../account-admin/file-editor.js';
import {
  detectFormat,
  isPasswordCsv,
  normalizeProviderName,
  parseImport,
  providersSnippet,
  type ImportFormat,
  type NeededProvider,
} from '../account-admin/import.js';
import { unusableSourceAddresses } from '../accounts/source-address.js';
import { registerAuthorizeCommand } from './authorize.js';
import { offlineAccountStatus } from '../app/account-auth.js';

export const DEFAULT_CONFIG_FILE = './xoauth2-proxy.yaml';

interface Out {
  write(s: string): unknown;
}

/** What the commands need from the config. */
export interface AccountsContext {
  configFile: string;
  /** absolute path of the accounts file (may not exist yet) */
  accountsFile: string;
  /** provider names the config defines (built-ins included) */
  providers: readonly string[];
  /** all accounts of the config (inline and file) */
  accounts: readonly AccountConfig[];
  validate: (raw: unknown) => AccountValidation;
  /** the whole snapshot (providers' auth modes, state dir, http), when loaded from a file */
  config?: Config;
}

/** Load the config with the config module (imported lazily; it is another component). */
export async function loadAccountsContext(
  configFile: string,
  opts: { env?: NodeJS.ProcessEnv; createAccountsFile?: boolean } = {},
): Promise<AccountsContext> {
  const env = opts.env ?? process.env;
  const cfg = await import('../config/load.js');
  if (opts.createAccountsFile) await createMissingAccountsFile(configFile);
  let loaded: Awaited<ReturnType<typeof cfg.loadConfig>>;
  try {
    loaded = await cfg.loadConfig(configFile, env);
  } catch (err) {
    if (err instanceof cfg.ConfigError) {
      throw new Error(
        `${configFile}: invalid configuration (fix it first, e.g. with \`xoauth2-proxy check -c ${configFile}\`):\n` +
          err.issues.map((i) => `  ${formatIssue(i)}`).join('\n'),
      );
    }
    throw err;
  }
  const { config } = loaded;
  if (!config.accountsFile) {
    throw new Error(
      `${configFile} has no accountsFile: add \`accountsFile: ./accounts.yaml\` to it (inline \`accounts:\` are edited by hand)`,
    );
  }
  const providers = Object.keys(config.providers);
  return {
    configFile,
    accountsFile: config.accountsFile,
    providers,
    accounts: config.accounts,
    validate: (raw) => cfg.validateAccount(raw, config.providers),
    config,
  };
}

/**
 * `accounts add` / `import` on a fresh setup: the config names an accounts file that does not exist
 * yet, which the loader reports as an error. Create it empty (mode 0600) first.
 */
async function createMissingAccountsFile(configFile: string): Promise<void> {
  let doc: unknown;
  try {
    doc = YAML.parse(await readFile(configFile, 'utf8'));
  } catch {
    return; // the loader reports it
  }
  const rel = (doc as { accountsFile?: unknown } | null)?.accountsFile;
  if (typeof rel !== 'string' || !rel.trim() || rel.includes('${')) return;
  const file = path.resolve(path.dirname(path.resolve(configFile)), rel.replace(/^~(?=\/|$)/, os.homedir()));
  try {
    await writeFile(file, file.endsWith('.json') ? '{ "accounts": [] }\n' : 'accounts: []\n', {
      flag: 'wx',
      mode: 0o600,
    });
  } catch {
    // exists already (or cannot be created: the loader says so)
  }
}

const editorFor = (ctx: AccountsContext) =>
  new AccountsFileEditor(ctx.accountsFile, { validate: ctx.validate, apply: async () => {} });

const APPLY_HINT = 'a running proxy applies it on its own (the accounts file is watched) or on SIGHUP';

/** What the running proxy says about its mailboxes (GET /admin/accounts), when it can be asked. */
interface LiveAccount {
  email: string;
  auth?: string;
  state?: string;
  tokenExpiresAt?: string;
}

/**
 * The running proxy's view of the accounts, through its admin API on http.listen (loopback for a
 * wildcard address), if adminToken is set and it answers within a second; else undefined.
 */
async function liveAccounts(config: Config | undefined): Promise<Map<string, LiveAccount> | undefined> {
  const listen = config?.http.listen;
  const token = config?.http.adminToken;
  if (!listen || !token) return undefined;
  const host = listen.host === '0.0.0.0' ? '127.0.0.1' : listen.host === '::' ? '::1' : listen.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${listen.port}/admin/accounts`;
  try {
    const res = await fetch(url, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(1000),
    });
    if (!res.ok) return undefined;
    const body = (await res.json()) as { accounts?: LiveAccount[] };
    return new Map((body.accounts ?? []).map((a) => [a.email, a]));
  } catch {
    return undefined;
  }
}

export async function runList(
  ctx: AccountsContext,
  out: Out,
  opts: { json?: boolean } = {},
): Promise<number> {
  const offline = ctx.config ? new Map(offlineAccountStatus(ctx.config).map((a) => [a.email, a])) : undefined;
  const live = await liveAccounts(ctx.config);
  const rows = ctx.accounts.map((a) => {
    const off = offline?.get(a.email);
    const now = live?.get(a.email);
    // offline, only a store-held token tells something (authorized or needs_authorization)
    const state = now?.state ?? (off?.state === 'configured' ? undefined : off?.state);
    const tokenExpiresAt = now ? now.tokenExpiresAt : off?.tokenExpiresAt;
    return {
      email: a.email,
      provider: a.provider,
      ...(off ? { auth: now?.auth ?? off.auth } : {}),
      ...(state ? { state } : {}),
      ...(tokenExpiresAt ? { tokenExpiresAt } : {}),
      hasPassword: a.passwordHash !== undefined || a.password !== undefined,
      sourceAddress: a.sourceAddress ?? '',
    };
  });
  if (opts.json) {
    out.write(JSON.stringify(rows, null, 2) + '\n');
    return 0;
  }
  const head = ['EMAIL', 'PROVIDER', 'AUTHENTICATES', 'STATE', 'TOKEN EXPIRES', 'PASSWORD', 'SOURCE ADDRESS'];
  const table = [
    head,
    ...rows.map((r) => [
      r.email,
      r.provider,
      r.auth ?? '-',
      r.state ?? '-',
      r.tokenExpiresAt ?? '-',
      r.hasPassword ? 'yes' : 'no',
      r.sourceAddress || '-',
    ]),
  ];
  const widths = head.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
  for (const r of table)
    out.write(
      r
        .map((cell, c) => cell.padEnd(widths[c]!))
        .join('  ')
        .trimEnd() + '\n',
    );
  out.write(`${rows.length} account${rows.length === 1 ? '' : 's'}`);
  out.write(
    live
      ? '; state and token expiry from the running proxy\n'
      : '; the running proxy was not asked (http.listen and http.adminToken), so STATE shows only what the state store tells\n',
  );
  for (const r of rows)
    if (r.state === 'needs_authorization')
      out.write(
        `${r.email} needs authorization: xoauth2-proxy accounts authorize ${r.email} -c ${ctx.configFile}\n`,
      );
  const bad = unusableSourceAddresses(ctx.accounts);
  for (const [email, reason] of bad) out.write(`warning: ${email}: ${reason}\n`);
  return 0;
}

export interface AddFields {
  email: string;
  provider: string;
  /** absent: the provider's oauthClient (or its app-only auth) */
  clientId?: string;
  clientSecret?: string;
  /** absent: from `accounts authorize` (stored in the state store), or app-only */
  refreshToken?: string;
  sourceAddress?: string;
  tenant?: string;
  maxConnections?: number;
  messagesPerMinute?: number;
  /** already hashed */
  passwordHash?: string;
}

export async function runAdd(ctx: AccountsContext, fields: AddFields, out: Out, err: Out): Promise<number> {
  const raw: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== '') raw[k] = v;
  const r = await editorFor(ctx).add(raw);
  if (!r.ok) {
    err.write(`${r.error}\n`);
    for (const i of r.issues ?? []) err.write(`  ${formatIssue(i)}\n`);
    return 1;
  }
  const email = normalizeEmail(fields.email);
  out.write(`added ${email} to ${ctx.accountsFile}; ${APPLY_HINT}\n`);
  for (const w of r.warnings ?? []) out.write(`warning: ${w}\n`);
  const provider = ctx.config?.providers[fields.provider];
  if (provider && !provider.auth && fields.refreshToken === undefined)
    out.write(
      `${email} has no refresh token yet: run \`xoauth2-proxy accounts authorize ${email} -c ${ctx.configFile}\` ` +
        '(until then its messages get 451 4.7.0)\n',
    );
  return 0;
}

export async function runRemove(ctx: AccountsContext, arg: string, out: Out, err: Out): Promise<number> {
  const email = normalizeEmail(arg);
  const r = await editorFor(ctx).remove(email);
  if (!r.ok) {
    err.write(`${r.error} in ${ctx.accountsFile}\n`);
    return 1;
  }
  out.write(`removed ${email} from ${ctx.accountsFile}; ${APPLY_HINT}\n`);
  return 0;
}

export async function runSetPassword(
  ctx: AccountsContext,
  arg: string,
  passwordHash: string,
  out: Out,
  err: Out,
): Promise<number> {
  const email = normalizeEmail(arg);
  const r = await editorFor(ctx).update(email, { passwordHash, password: null });
  if (!r.ok) {
    err.write(`${r.error}\n`);
    for (const i of r.issues ?? []) err.write(`  ${formatIssue(i)}\n`);
    return 1;
  }
  out.write(`password of ${email} set; ${APPLY_HINT}\n`);
  return 0;
}

export interface ImportOptions {
  format?: ImportFormat;
  provider?: string;
  dryRun?: boolean;
  replace?: boolean;
}

export async function runImport(
  ctx: AccountsContext,
  fileName: string,
  text: string,
  opts: ImportOptions,
  out: Out,
  err: Out,
): Promise<number> {
  if (opts.provider && !ctx.providers.includes(normalizeProviderName(opts.provider))) {
    err.write(`--provider: unknown provider "${opts.provider}" (known: ${ctx.providers.join(', ')})\n`);
    return 1;
  }
  const format = opts.format ?? detectFormat(fileName, text);
  let provider = opts.provider;
  const passwords = format === 'csv' && isPasswordCsv(text);
  if (passwords && !provider) {
    // email,password lines: the provider whose app-only auth serves them, when there is just one
    const appOnly = Object.values(ctx.config?.providers ?? {}).filter((p) => p.auth);
    if (appOnly.length === 1) provider = appOnly[0]!.name;
  }
  const parsed = parseImport(text, format, provider ? { provider } : {});
  for (const e of parsed.errors) err.write(`${fileName}: ${formatIssue(e)}\n`);
  // the client passwords of email,password lines are stored hashed, never as given
  await hashImportedPasswords(parsed.accounts.map((a) => a.account));

  // Accounts that need a provider the config does not define yet are held back: written now they
  // would make the config invalid (and a running proxy would refuse the reload).
  const missing: NeededProvider[] = parsed.providers.filter((p) => !ctx.providers.includes(p.name));
  const held = new Set(missing.flatMap((p) => p.accounts));
  const ready = parsed.accounts.filter((a) => !held.has(a.account.email));

  const r = await editorFor(ctx).importMany(
    ready.map((a) => ({ raw: a.account, source: `${fileName}: ${a.source}` })),
    { replace: opts.replace === true, dryRun: opts.dryRun === true },
  );
  const verb = opts.dryRun ? 'would import' : 'imported';
  for (const e of r.added) out.write(`${verb} ${e}\n`);
  for (const e of r.replaced) out.write(`${opts.dryRun ? 'would replace' : 'replaced'} ${e}\n`);
  for (const e of r.skipped)
    out.write(`skipped ${e}: already in ${path.basename(ctx.accountsFile)} (--replace overwrites)\n`);
  for (const inv of r.invalid) {
    err.write(`${inv.source}: not imported: ${inv.issues.map(formatIssue).join('; ')}\n`);
  }
  for (const n of parsed.notes) out.write(`note: ${n}\n`);
  if (missing.length) {
    out.write(
      `\n${held.size} account(s) use an OAuth token endpoint that no configured provider has ` +
        `(${missing.map((p) => `${p.name}: ${p.accounts.join(', ')}`).join('; ')}).\n` +
        `Add this under \`providers:\` in ${ctx.configFile}, then run the import again ` +
        `(accounts already imported are skipped):\n\n${indent(providersSnippet(missing))}\n`,
    );
  }
  const imported = r.added.length + r.replaced.length;
  const withoutPassword = ready.filter(
    (a) =>
      a.account.passwordHash === undefined &&
      (r.added.includes(a.account.email) || r.replaced.includes(a.account.email)),
  ).length;
  if (withoutPassword) {
    out.write(
      `\n${imported} account(s) ${opts.dryRun ? 'would have' : 'have'} no password. Each needs a passwordHash ` +
        '(`echo -n PASSWORD | xoauth2-proxy accounts set-password EMAIL` stores the hash; or put a value ' +
        'from `xoauth2-proxy hash-password` in passwordHash), ' +
        'or must send from smtp.trustedNetworks (the account is chosen by MAIL FROM).\n',
    );
  }
  const toAuthorize = ready.filter(
    (a) =>
      a.account.refreshToken === undefined &&
      !ctx.config?.providers[a.account.provider]?.auth &&
      (r.added.includes(a.account.email) || r.replaced.includes(a.account.email)),
  );
  if (toAuthorize.length)
    out.write(
      `\n${toAuthorize.length} account(s) have no refresh token yet: authorize each with ` +
        `\`xoauth2-proxy accounts authorize EMAIL -c ${ctx.configFile}\` (or the status page's onboarding)\n`,
    );
  const written = new Set([...r.added, ...r.replaced]);
  const bad = unusableSourceAddresses(
    ready.filter((a) => written.has(a.account.email)).map((a) => a.account as unknown as AccountConfig),
  );
  for (const [email, reason] of bad) out.write(`warning: ${email}: ${reason}\n`);
  if (!r.result.ok) {
    err.write(`${r.result.error}\n`);
    return 1;
  }
  if (!opts.dryRun && imported) out.write(`${ctx.accountsFile} updated; ${APPLY_HINT}\n`);
  if (opts.dryRun) out.write('dry run: nothing written\n');
  return parsed.errors.length || r.invalid.length ? 1 : 0;
}

/** `password` -> `passwordHash` in place, a few KDF runs at a time (scrypt runs on the thread pool). */
async function hashImportedPasswords(accounts: Record<string, unknown>[]): Promise<void> {
  const todo = accounts.filter((a) => typeof a.password === 'string');
  if (!todo.length) return;
  const { hashPassword } = await import('../accounts/password.js');
  let i = 0;
  const worker = async () => {
    while (i < todo.length) {
      const a = todo[i++]!;
      a.passwordHash = await hashPassword(a.password as string);
      delete a.password;
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, todo.length) }, worker));
}

function indent(s: string): string {
  return s
    .trimEnd()
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}

async function readStdin(input: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of input) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

async function hashFromStdin(): Promise<string> {
  const pw = await readStdin(process.stdin);
  if (!pw) throw new Error('empty password on stdin');
  const { hashPassword } = await import('../accounts/password.js');
  return hashPassword(pw);
}

const int = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a whole number, got "${v}"`);
  return n;
};

export interface AccountsCommandDeps {
  loadContext?: (configFile: string) => Promise<AccountsContext>;
  stdout?: Out;
  stderr?: Out;
}

export function registerAccountsCommands(program: Command, deps: AccountsCommandDeps = {}): void {
  const load = deps.loadContext ?? ((f: string) => loadAccountsContext(f, { createAccountsFile: true }));
  const stdout = deps.stdout ?? process.stdout;
  const stderr = deps.stderr ?? process.stderr;
  const accounts = program
    .command('accounts')
    .description('manage the accounts file named by the config (accountsFile), offline');
  const cfgOpt = (c: Command) => c.option('-c, --config <file>', 'config file', DEFAULT_CONFIG_FILE);

  cfgOpt(accounts.command('list'))
    .description(
      'list accounts: email, provider, how it authenticates, state and token expiry (from the running proxy when its admin API answers), password, sourceAddress (never secrets)',
    )
    .option('--json', 'print JSON')
    .action(async (o: { config: string; json?: boolean }) => {
      process.exitCode = await runList(await load(o.config), stdout, { json: o.json === true });
    });

  cfgOpt(accounts.command('add'))
    .description('add an account')
    .requiredOption('--email <email>', 'mailbox address (the AUTH username)')
    .requiredOption('--provider <name>', 'google, microsoft or a provider from the config')
    .option(
      '--client-id <id>',
      "OAuth client id (default: the provider's oauthClient; none for app-only providers)",
    )
    .option('--client-secret <secret>', 'OAuth client secret (omit for public clients)')
    .option(
      '--refresh-token <token>',
      'OAuth refresh token (stored in the accounts file as is; better: leave it out and run `accounts authorize`)',
    )
    .option('--password-stdin', 'read the client password from stdin and store its hash')
    .option('--source-address <ip>', 'local address for upstream connections')
    .option('--tenant <tenant>', 'Microsoft tenant (default: the provider\'s, "common")')
    .option('--max-connections <n>', 'per-account connection limit', int('--max-connections'))
    .option(
      '--messages-per-minute <n>',
      'per-account rate limit (0 = unlimited)',
      int('--messages-per-minute'),
    )
    .action(
      async (o: {
        config: string;
        email: string;
        provider: string;
        clientId?: string;
        clientSecret?: string;
        refreshToken?: string;
        passwordStdin?: boolean;
        sourceAddress?: string;
        tenant?: string;
        maxConnections?: number;
        messagesPerMinute?: number;
      }) => {
        const ctx = await load(o.config);
        const fields: AddFields = {
          email: o.email,
          provider: normalizeProviderName(o.provider),
          ...(o.clientId !== undefined ? { clientId: o.clientId } : {}),
          ...(o.refreshToken !== undefined ? { refreshToken: o.refreshToken } : {}),
          ...(o.clientSecret !== undefined ? { clientSecret: o.clientSecret } : {}),
          ...(o.sourceAddress !== undefined ? { sourceAddress: o.sourceAddress } : {}),
          ...(o.tenant !== undefined ? { tenant: o.tenant } : {}),
          ...(o.maxConnections !== undefined ? { maxConnections: o.maxConnections } : {}),
          ...(o.messagesPerMinute !== undefined ? { messagesPerMinute: o.messagesPerMinute } : {}),
          ...(o.passwordStdin ? { passwordHash: await hashFromStdin() } : {}),
        };
        process.exitCode = await runAdd(ctx, fields, stdout, stderr);
      },
    );

  registerAuthorizeCommand(accounts, DEFAULT_CONFIG_FILE);

  cfgOpt(accounts.command('remove').argument('<email>'))
    .description('remove an account')
    .action(async (email: string, o: { config: string }) => {
      process.exitCode = await runRemove(await load(o.config), email, stdout, stderr);
    });

  cfgOpt(accounts.command('set-password').argument('<email>'))
    .description("set an account's client password (read from stdin) as a passwordHash")
    .option(
      '--password-stdin',
      'read the password from stdin (the default; the flag is accepted for clarity)',
    )
    .action(async (email: string, o: { config: string }) => {
      const ctx = await load(o.config);
      process.exitCode = await runSetPassword(ctx, email, await hashFromStdin(), stdout, stderr);
    });

  cfgOpt(accounts.command('import').argument('<file>'))
    .description(
      "import accounts: CSV email,password (app-only providers, or mailboxes to authorize later), the Python PowerMTA proxy's JSON, or its CSV email,account_id,refresh_token,client_id",
    )
    .option('--format <format>', 'csv or json (default: from the file name or content)')
    .option(
      '--provider <name>',
      'provider for every imported account (google, microsoft or a configured name; email,password files: default the only app-only provider)',
    )
    .option('--dry-run', 'show what would be imported; write nothing')
    .option('--replace', 'overwrite accounts that already exist')
    .action(
      async (
        file: string,
        o: { config: string; format?: string; provider?: string; dryRun?: boolean; replace?: boolean },
      ) => {
        if (o.format !== undefined && o.format !== 'csv' && o.format !== 'json') {
          throw new Error(`--format must be csv or json, got "${o.format}"`);
        }
        const ctx = await load(o.config);
        const text = await readFile(file, 'utf8');
        process.exitCode = await runImport(
          ctx,
          file,
          text,
          {
            ...(o.format ? { format: o.format as ImportFormat } : {}),
            ...(o.provider ? { provider: o.provider } : {}),
            dryRun: o.dryRun === true,
            replace: o.replace === true,
          },
          stdout,
          stderr,
        );
      },
    );
}
