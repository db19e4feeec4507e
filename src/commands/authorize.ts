// `accounts authorize EMAIL`: a mailbox owner's consent, obtained by the proxy itself. The
// authorization code with PKCE through a loopback redirect on 127.0.0.1 (a browser opened where
// there is one; `--no-browser`: the final redirect URL is pasted back on stdin), or the device flow
// (`--device`). The refresh token ends sealed in the state store, never in the YAML; a running proxy
// on the same state dir adopts it at once (app/authorize.ts). Output: the URL (or the user code) on a
// line of its own on stdout, then `authorized EMAIL`; exit 0, or 1 with the error and what to do.
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import type { Command } from 'commander';
import { normalizeEmail } from '../shared/email.js';
import {
  AuthorizationError,
  completeAuthorization,
  planAuthorization,
  requireAuthorizeUrl,
  requireDeviceAuthorizationUrl,
  type AuthorizationPlan,
} from '../app/authorize.js';
import { authorizeWithDevice, authorizeWithLoopback, openCliAuthorization } from '../app/authorize-flows.js';
import { ConfigError } from '../config/errors.js';
import { formatIssue } from '../shared/issue.js';
import { parseDuration } from '../config/duration.js';
import { promptHidden } from './check.js';

interface Out {
  write(s: string): unknown;
}

type Input = NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };

export interface AuthorizeOptions {
  config: string;
  provider?: string;
  device?: boolean;
  /** commander's --no-browser sets browser: false */
  browser?: boolean;
  redirectPort?: number;
  passwordStdin?: boolean;
  /** ms to wait for the consent */
  timeoutMs?: number;
}

export interface AuthorizeIo {
  stdin: Input;
  stdout: Out;
  stderr: Out;
  env?: NodeJS.ProcessEnv;
  /** opens the URL in a browser; false when none could be started */
  openBrowser?: (url: string, env: NodeJS.ProcessEnv) => boolean;
}

const DEFAULT_TIMEOUT_MS = 10 * 60_000;

/**
 * `$BROWSER` (a command, or a colon-separated list of them; `%s` stands for the URL), else the
 * platform's opener. Never fails: a host without one just gets the printed URL.
 */
export function openBrowser(url: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const candidates = env.BROWSER
    ? env.BROWSER.split(':').filter(Boolean)
    : process.platform === 'darwin'
      ? ['open']
      : process.platform === 'win32'
        ? []
        : ['xdg-open'];
  const cmd = candidates[0];
  if (!cmd) return false;
  const parts = cmd.trim().split(/\s+/);
  const args = parts.slice(1).map((a) => a.replace('%s', url));
  if (!cmd.includes('%s')) args.push(url);
  try {
    const child = spawn(parts[0]!, args, { stdio: 'ignore', detached: true });
    child.on('error', () => undefined); // no such command: the URL is printed anyway
    child.unref();
    return true;
  } catch {
    return false;
  }
}

/** Lines of stdin, read once and shared (the password line, then pasted URLs). */
function stdinLines(input: Input): { lines: AsyncIterator<string>; close(): void } {
  const rl = readline.createInterface({ input, terminal: false, crlfDelay: Infinity });
  return { lines: rl[Symbol.asyncIterator](), close: () => rl.close() };
}

export async function runAuthorize(
  emailArg: string,
  opts: AuthorizeOptions,
  io: AuthorizeIo,
): Promise<number> {
  const { stdout: out, stderr: err } = io;
  const env = io.env ?? process.env;
  const email = normalizeEmail(emailArg);
  let cli: Awaited<ReturnType<typeof openCliAuthorization>>;
  try {
    cli = await openCliAuthorization(opts.config, env);
  } catch (e) {
    if (e instanceof ConfigError) {
      err.write(`${opts.config}: invalid configuration:\n`);
      for (const i of e.issues) err.write(`  ${formatIssue(i)}\n`);
      return 1;
    }
    throw e;
  }
  let stdin: ReturnType<typeof stdinLines> | undefined;
  const lines = () => (stdin ??= stdinLines(io.stdin)).lines;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  try {
    const plan: AuthorizationPlan = planAuthorization(
      cli.config,
      email,
      opts.provider ? { provider: opts.provider } : {},
    );
    // refused flows are said before anyone types a password or goes through a consent
    if (opts.device) requireDeviceAuthorizationUrl(plan);
    else requireAuthorizeUrl(plan);

    // a new account needs its client password before the owner goes through the consent
    let password: string | undefined;
    if (!plan.account) {
      if (opts.passwordStdin) {
        const first = await lines().next();
        password = first.done ? '' : first.value.replace(/\r$/, '');
      } else if (io.stdin.isTTY) {
        password = await promptHidden(io.stdin, err, `Client password for ${email}: `);
        const again = await promptHidden(io.stdin, err, 'Repeat it: ');
        if (again !== password) {
          err.write('the passwords do not match; nothing was changed\n');
          return 1;
        }
      } else {
        err.write(
          `${email} is not in the accounts file yet: it needs a client password (the one its SMTP client ` +
            'will log in with): give --password-stdin with the password on the first line of stdin, or run ' +
            'this on a terminal to be prompted\n',
        );
        return 1;
      }
      if (!password) {
        err.write('empty client password; nothing was changed\n');
        return 1;
      }
    }

    const tokens = opts.device
      ? await authorizeWithDevice(cli.tokenClient, plan, {
          signal: abort.signal,
          onCode: (d) => {
            out.write(
              `To authorize ${email}, open this page in a browser on any device:\n${d.verificationUri}\n`,
            );
            out.write(
              `and enter this code (valid for ${Math.round(d.expiresInSec / 60)} minutes):\n${d.userCode}\n`,
            );
            if (d.verificationUriComplete) out.write(`(or open ${d.verificationUriComplete})\n`);
          },
          onPending: ({ intervalSec, slowDown }) => {
            if (slowDown) err.write(`the provider asked to poll less often: every ${intervalSec} s now\n`);
          },
        })
      : await authorizeWithLoopback(cli.tokenClient, plan, {
          ...(opts.redirectPort !== undefined ? { redirectPort: opts.redirectPort } : {}),
          signal: abort.signal,
          ...(opts.browser === false
            ? {
                pasted: lines(),
                onBadPaste: (m: string) => err.write(`${m}\nPaste the address again:\n`),
              }
            : {}),
          onUrl: (url, redirectUri) => {
            if (opts.browser === false) {
              out.write(
                `Open this URL in a browser on any machine, sign in as ${email} and allow access:\n${url}\n`,
              );
              out.write(
                `The browser then goes to ${redirectUri}, which may not load there: copy that address from ` +
                  'the address bar and paste it here:\n',
              );
            } else {
              out.write(`Open this URL in a browser, sign in as ${email} and allow access:\n${url}\n`);
              const opened = (io.openBrowser ?? openBrowser)(url, env);
              err.write(
                opened
                  ? `(a browser was started; waiting for its redirect to ${redirectUri})\n`
                  : `(no browser found; on a host without one use --no-browser or --device)\n`,
              );
            }
          },
        });

    const r = await completeAuthorization(cli.deps, plan, tokens, password !== undefined ? { password } : {});
    out.write(`authorized ${email}\n`);
    out.write(
      `  refresh token stored encrypted in ${cli.config.state.dir}` +
        (r.added ? `; account added to ${cli.config.accountsFile}` : '') +
        (r.removedPlainRefreshToken
          ? `; the plain refreshToken was removed from ${cli.config.accountsFile}`
          : '') +
        '\n',
    );
    out.write(`  verified: a token refresh and AUTH XOAUTH2 at ${r.verifiedAt}\n`);
    out.write('  a proxy running on this state dir uses it now (no restart)\n');
    for (const w of r.warnings) out.write(`warning: ${w}\n`);
    return 0;
  } catch (e) {
    if (abort.signal.aborted && !(e instanceof AuthorizationError)) {
      err.write(
        `not authorized: no consent arrived within ${Math.round((opts.timeoutMs ?? DEFAULT_TIMEOUT_MS) / 1000)} s; nothing was stored\n`,
      );
      return 1;
    }
    if (e instanceof AuthorizationError) {
      err.write(`not authorized: ${e.message}\n  ${e.hint}\n`);
      return 1;
    }
    const ge = e as { name?: string; message?: string; hint?: string };
    if (ge?.name === 'GrantError') {
      // GrantError's message is "reason (provider's description): hint"
      err.write(`not authorized: ${ge.message}\n  nothing was stored\n`);
      return 1;
    }
    throw e;
  } finally {
    clearTimeout(timer);
    stdin?.close();
    if (stdin) io.stdin.pause?.();
    cli.close();
  }
}

const port = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535)
    throw new Error(`--redirect-port must be 1 to 65535, got "${v}"`);
  return n;
};

const timeout = (v: string) => {
  const ms = parseDuration(v);
  if (ms === undefined || ms <= 0)
    throw new Error(`--timeout must be a duration such as "10m" or "90s", got "${v}"`);
  return ms;
};

export function registerAuthorizeCommand(accounts: Command, defaultConfig: string): void {
  accounts
    .command('authorize')
    .argument('<email>', 'the mailbox to authorize (added to the accounts file if missing)')
    .description(
      "get a mailbox owner's consent (authorization code + PKCE, or --device) and store its refresh token encrypted in the state store",
    )
    .option('-c, --config <file>', 'config file', defaultConfig)
    .option('--provider <name>', 'provider of a new account (default: the only one with an oauthClient)')
    .option('--device', 'device authorization grant (RFC 8628): a code to enter on another device')
    .option('--no-browser', 'do not start a browser; paste the final redirect URL back on stdin')
    .option(
      '--redirect-port <port>',
      'port of the loopback redirect on 127.0.0.1 (default: a free one)',
      port,
    )
    .option('--password-stdin', "a new account's client password on the first line of stdin (stored hashed)")
    .option('--timeout <duration>', 'how long to wait for the consent', timeout, DEFAULT_TIMEOUT_MS)
    .action(async (email: string, o: AuthorizeOptions & { timeout: number }) => {
      process.exitCode = await runAuthorize(
        email,
        { ...o, timeoutMs: o.timeout },
        { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr },
      );
      // stdin may still be referenced by a paused reader: nothing else is left to wait for
      process.stdin.destroy();
    });
}
