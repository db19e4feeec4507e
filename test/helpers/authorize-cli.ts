// `xoauth2-proxy accounts authorize` as a child process, the way a person runs it: the test reads
// the URL (or the user code) it prints, answers the simulator's consent page (in Chromium or by a
// plain form post), and writes to its stdin (a password, a pasted redirect URL).
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI } from './procs.js';
import { waitFor } from './wait.js';

export interface AuthorizeRun {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** the first stdout line matching `re` (waits for it) */
  line(re: RegExp, ms?: number): Promise<string>;
  /** one line to stdin */
  type(line: string): void;
  exited: Promise<number | null>;
}

/**
 * Starts `accounts authorize EMAIL -c CONFIG ARGS...`. BROWSER is a command that does nothing
 * (`true`), so no browser of this host is ever started; the test opens the URL itself.
 */
export function startAuthorize(email: string, configFile: string, args: string[] = []): AuthorizeRun {
  const child = spawn(process.execPath, [CLI, 'accounts', 'authorize', email, '-c', configFile, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, BROWSER: 'true' },
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    async line(re, ms = 15_000) {
      return waitFor(
        `a stdout line matching ${re} (stderr: ${err.slice(-300)})`,
        () => out.split('\n').find((l) => re.test(l)),
        (l) => l !== undefined,
        ms,
      ) as Promise<string>;
    },
    type(line) {
      child.stdin!.write(line + '\n');
    },
    exited,
  };
}

/** The URL line `authorize` prints (its own line, starting with http). */
export const URL_LINE = /^https?:\/\/\S+\?\S*response_type=code/;

/**
 * Answers the simulator's consent page without a browser: GET the authorization URL, post the form
 * (Allow or Deny) as `login`, return where the simulator redirects (the final redirect URL).
 */
export async function consentByForm(
  authUrl: string,
  login: string,
  action: 'allow' | 'deny' = 'allow',
): Promise<string> {
  const pageRes = await fetch(authUrl);
  const html = await pageRes.text();
  const tx = /name="tx" value="([^"]*)"/.exec(html)?.[1];
  const formAction = /<form[^>]*action="([^"]*)"/.exec(html)?.[1];
  if (!tx || !formAction) throw new Error(`no consent form at ${authUrl}: ${html.slice(0, 300)}`);
  const res = await fetch(new URL(formAction, authUrl), {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ tx, login, action }).toString(),
  });
  const location = res.headers.get('location');
  if (res.status !== 302 || !location) throw new Error(`consent answered ${res.status}: ${await res.text()}`);
  return location;
}

/** Approves (or denies) a device code on the simulator's verification page. */
export async function approveDeviceCode(
  verificationUri: string,
  userCode: string,
  login: string,
  action: 'allow' | 'deny' = 'allow',
): Promise<string> {
  const res = await fetch(verificationUri, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ user_code: userCode, login, action }).toString(),
  });
  const html = await res.text();
  return /data-result="([^"]*)"/.exec(html)?.[1] ?? `(no result: ${res.status})`;
}
