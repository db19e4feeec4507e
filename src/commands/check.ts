// `check` and `hash-password`. The work is in runCheck/runHashPassword (streams in, exit code out)
// so tests drive them without spawning a process; the commander actions only wire in stdio.

import type { Command } from 'commander';
import { hashPassword } from '../accounts/password.js';
import { ConfigError } from '../config/errors.js';
import { formatIssue } from '../shared/issue.js';
import { summarizeConfig } from '../config/summary.js';
import type { Config } from '../config/types.js';
import { loadCheckedConfig } from '../app/credentials.js';
import { offlineAccountStatus } from '../app/account-auth.js';

export const DEFAULT_CONFIG_FILE = './xoauth2-proxy.yaml';

interface Out {
  write(s: string): unknown;
}

/** Validate `file`; 0 with the summary on `out`, or 1 with one `path: message` line per issue on `err`. */
export async function runCheck(
  file: string,
  out: Out,
  err: Out,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  try {
    const { config, warnings } = await loadCheckedConfig(file, env);
    out.write(
      `${summarizeConfig(config, warnings)}\n${authenticationSummary(config, file)}configuration OK\n`,
    );
    return 0;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const issue of e.issues) err.write(`${formatIssue(issue)}\n`);
    for (const w of e.warnings) err.write(`warning: ${w}\n`);
    err.write(`${file}: ${e.issues.length} problem${e.issues.length === 1 ? '' : 's'} found\n`);
    return 1;
  }
}

/**
 * How the mailboxes authenticate upstream, and which still need `accounts authorize` (an account
 * without a refresh token in the file is valid when the state store holds one for it).
 */
function authenticationSummary(config: Config, file: string): string {
  if (!config.accounts.length) return '';
  const all = offlineAccountStatus(config);
  const count = (f: (a: (typeof all)[number]) => boolean) => all.filter(f).length;
  const pending = all.filter((a) => a.state === 'needs_authorization');
  const lines = ['authentication'];
  const row = (label: string, n: number, extra = '') => {
    if (n) lines.push(`  ${label.padEnd(24)}${n}${extra}`);
  };
  row(
    'refresh token in file',
    count((a) => a.source === 'file'),
    ' (plain text in YAML: `accounts authorize` moves it into the state store, sealed)',
  );
  row(
    'refresh token in store',
    count((a) => a.state === 'authorized'),
  );
  row(
    'app-only',
    count((a) => a.source === 'client_credentials'),
  );
  row(
    'service account',
    count((a) => a.source === 'service_account'),
  );
  row(
    'needs authorization',
    pending.length,
    ': no refresh token in the file nor in the state store; until authorized, their mail gets 451 4.7.0',
  );
  for (const a of pending.slice(0, 20))
    lines.push(`    xoauth2-proxy accounts authorize ${a.email} -c ${file}`);
  if (pending.length > 20) lines.push(`    ... and ${pending.length - 20} more`);
  return lines.join('\n') + '\n';
}

type Input = NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };

/** The whole of a non-interactive stream, minus one trailing newline (as `echo pw |` adds). */
export async function readPasswordFromStream(input: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of input) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/** Prompt on `prompt` (stderr, so stdout stays just the hash) and read a line without echo. */
export function promptHidden(input: Input, prompt: Out, question: string): Promise<string> {
  return new Promise((resolve, reject) => {
    prompt.write(question);
    input.setRawMode?.(true);
    input.resume();
    let value = '';
    const done = (e?: Error) => {
      input.setRawMode?.(false);
      input.pause();
      input.removeListener('data', onData);
      prompt.write('\n');
      if (e) reject(e);
      else resolve(value);
    };
    const onData = (data: Buffer | string) => {
      for (const ch of data.toString('utf8')) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return done();
        if (ch === '\u0003') return done(new Error('cancelled'));
        if (ch === '\u007f' || ch === '\b') value = [...value].slice(0, -1).join('');
        else if (ch >= ' ') value += ch;
      }
    };
    input.on('data', onData);
  });
}

export async function runHashPassword(input: Input, out: Out, err: Out): Promise<number> {
  let pw: string;
  try {
    if (input.isTTY) {
      pw = await promptHidden(input, err, 'Password: ');
      const again = await promptHidden(input, err, 'Repeat password: ');
      if (again !== pw) {
        err.write('passwords do not match\n');
        return 1;
      }
    } else {
      pw = await readPasswordFromStream(input);
    }
  } catch (e) {
    err.write(`${(e as Error).message}\n`);
    return 1;
  }
  if (!pw) {
    err.write('empty password: nothing to hash\n');
    return 1;
  }
  out.write(`${await hashPassword(pw)}\n`);
  return 0;
}

export function registerConfigCommands(program: Command): void {
  program
    .command('check')
    .description('validate the config and accounts; print a summary, or each bad field by its path')
    .option('-c, --config <file>', 'config file', DEFAULT_CONFIG_FILE)
    .action(async (opts: { config: string }) => {
      process.exitCode = await runCheck(opts.config, process.stdout, process.stderr);
    });
  program
    .command('hash-password')
    .description('read a password from stdin (prompted when interactive) and print a passwordHash value')
    .action(async () => {
      process.exitCode = await runHashPassword(process.stdin, process.stdout, process.stderr);
    });
}
