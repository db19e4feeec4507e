// `demo`: the whole path on one machine with no setup: the simulator, a proxy in front of it, a few
// hundred messages through several mailboxes, and a true summary checked against the simulator;
// then one more mailbox authorized end to end (authorize-step.ts) and a few messages through it.
import type { Command } from 'commander';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { startSimulator, simRefreshToken } from '../sim/index.js';
import { hashPassword } from '../../accounts/password.js';
import { createLogger } from '../../shared/log.js';
import { formatHostPort } from '../../shared/net.js';
import { freePort } from '../harness/ports.js';
import { runProxy } from '../../app/run.js';
import { authorizeDemoMailbox } from './authorize-step.js';

interface DemoOptions {
  once?: boolean;
  messages: string;
  mailboxes: string;
  /** commander's --no-authorize sets it false */
  authorize?: boolean;
}

const AUTHORIZED = { email: 'authorized@example.com', password: 'demo-password-authorized' };
const AUTHORIZED_MESSAGES = 3;

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function promisify<T>(fn: (cb: (err: any, v?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v as T))));
}

/** A logged-in client connection to the proxy. */
async function login(port: number, user: { email: string; password: string }): Promise<SMTPConnection> {
  const conn = new SMTPConnection({
    host: '127.0.0.1',
    port,
    ignoreTLS: true,
    name: 'demo-client',
  } as any);
  conn.on('error', () => undefined);
  await promisify<void>((cb) => conn.connect(() => cb(null)));
  await promisify<boolean>((cb) => conn.login({ user: user.email, pass: user.password } as any, cb));
  return conn;
}

function demoMessage(from: string, n: number, id: string): string {
  return (
    `From: ${from}\r\nTo: rcpt${n}@example.net\r\nSubject: demo ${n}\r\nMessage-ID: ${id}\r\n\r\n` +
    `Hello from the xoauth2-proxy demo, message ${n}.\r\n`
  );
}

export async function runDemo(opts: DemoOptions): Promise<number> {
  const messages = Number(opts.messages);
  const mailboxes = Number(opts.mailboxes);
  if (!Number.isInteger(messages) || messages < 1) throw new Error('--messages must be a positive integer');
  if (!Number.isInteger(mailboxes) || mailboxes < 1 || mailboxes > 100)
    throw new Error('--mailboxes must be 1..100');
  const out = (s: string) => process.stdout.write(s + '\n');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xoauth2-proxy-demo-'));
  const sim = await startSimulator({
    smtp: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
    // a registered (public) client: the simulator then knows no other
    clients: [{ clientId: 'demo-client' }],
  });
  out(`simulator: SMTP ${formatHostPort(sim.smtp)}, token endpoint ${sim.tokenUrl}`);
  const smtpPort = await freePort();
  const httpPort = await freePort();
  const users = Array.from({ length: mailboxes }, (_, i) => ({
    email: `demo${i + 1}@example.com`,
    password: `demo-password-${i + 1}`,
  }));
  const accounts = await Promise.all(
    users.map(async (u) => ({
      email: u.email,
      provider: 'google',
      refreshToken: simRefreshToken(u.email, 'demo'),
      passwordHash: await hashPassword(u.password),
    })),
  );
  const configFile = path.join(dir, 'xoauth2-proxy.yaml');
  // in a file of their own, which the authorization adds its mailbox to
  fs.writeFileSync(path.join(dir, 'accounts.yaml'), YAML.stringify({ accounts }), { mode: 0o600 });
  fs.writeFileSync(
    configFile,
    YAML.stringify({
      smtp: { listen: [`127.0.0.1:${smtpPort}`], hostname: 'demo.localhost' },
      http: { listen: `127.0.0.1:${httpPort}` },
      // a throw-away key for a throw-away state dir (a real setup sets its own: README)
      state: { dir: path.join(dir, 'data'), secretKey: randomBytes(32).toString('base64url') },
      log: { level: 'warn', messages: false },
      // the built-in google entry pointed at the simulator keeps Google's manners (access_type=offline)
      providers: {
        google: {
          tokenUrl: sim.tokenUrl,
          authorizeUrl: sim.endpoints.authorize,
          oauthClient: { clientId: 'demo-client' },
          scope: 'https://mail.google.com/',
          smtp: { host: sim.smtp.host, port: sim.smtp.port, security: 'none' },
          maxConnectionsPerAccount: 3,
        },
      },
      accountsFile: './accounts.yaml',
    }),
  );
  const log = createLogger({ level: 'warn' });
  const running = await runProxy(configFile, log);
  out(
    `proxy:     SMTP 127.0.0.1:${smtpPort} (AUTH PLAIN/LOGIN), metrics http://127.0.0.1:${httpPort}/metrics`,
  );
  out(`config:    ${configFile}`);
  out(`sending ${messages} messages through ${mailboxes} mailboxes ...`);

  const latencies: number[] = [];
  const ids: string[] = [];
  let delivered = 0;
  const failures = new Map<string, number>();
  const started = performance.now();
  let next = 0;
  // two client connections per mailbox, each sending its share back to back
  await Promise.all(
    users.flatMap((u) =>
      [0, 1].map(async () => {
        const conn = await login(smtpPort, u);
        while (next < messages) {
          const n = next++;
          const id = `<demo-${n}-${Date.now()}@demo.localhost>`;
          const raw = demoMessage(u.email, n, id);
          const t = performance.now();
          try {
            await promisify((cb) =>
              conn.send({ from: u.email, to: [`rcpt${n}@example.net`] } as any, raw, cb),
            );
            latencies.push(performance.now() - t);
            ids.push(id);
            delivered++;
          } catch (err: any) {
            const key = String(err.response ?? err.message).slice(0, 80);
            failures.set(key, (failures.get(key) ?? 0) + 1);
          }
        }
        conn.quit();
      }),
    ),
  );
  const seconds = (performance.now() - started) / 1000;
  const stats = sim.stats();
  const seen = new Set(stats.messageIds);
  const lost = ids.filter((id) => !seen.has(id)).length;
  latencies.sort((a, b) => a - b);
  out('');
  out(
    `delivered: ${delivered}/${messages} in ${seconds.toFixed(2)} s (${(delivered / seconds).toFixed(0)} msg/s)`,
  );
  out(
    `latency:   p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms ` +
      `(client to upstream and back)`,
  );
  out(
    `upstream:  the simulator received ${stats.messages} messages; ${lost} accepted messages missing (lost)`,
  );
  for (const [reply, n] of failures) out(`failed:    ${n} x ${reply}`);
  let ok = delivered === messages && lost === 0;
  if (opts.authorize !== false) {
    out('');
    ok = (await authorizeAndSend(running, sim, smtpPort, out)) && ok;
  }
  out(`metrics:   curl http://127.0.0.1:${httpPort}/metrics`);
  if (opts.once) {
    await running.stop();
    await sim.close();
    return ok ? 0 : 1;
  }
  out('');
  out(`Still running: send more with e.g.`);
  out(
    `  swaks --server 127.0.0.1:${smtpPort} --auth PLAIN --auth-user ${users[0]!.email} --auth-password ${users[0]!.password} --to someone@example.net`,
  );
  out('Press Ctrl-C to stop.');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await running.stop();
  await sim.close();
  return ok ? 0 : 1;
}

/**
 * Authorizes AUTHORIZED through the real flow, then sends AUTHORIZED_MESSAGES through it and checks
 * they reached the simulator. False (said in a line) when any step fails.
 */
async function authorizeAndSend(
  running: Awaited<ReturnType<typeof runProxy>>,
  sim: Awaited<ReturnType<typeof startSimulator>>,
  smtpPort: number,
  out: (s: string) => void,
): Promise<boolean> {
  try {
    await authorizeDemoMailbox(running, AUTHORIZED.email, AUTHORIZED.password, out);
  } catch (err) {
    out(`authorize: FAILED: ${(err as Error).message}`);
    return false;
  }
  const ids: string[] = [];
  let conn: SMTPConnection | undefined;
  try {
    conn = await login(smtpPort, AUTHORIZED);
    for (let n = 0; n < AUTHORIZED_MESSAGES; n++) {
      const id = `<demo-authorized-${n}-${Date.now()}@demo.localhost>`;
      await promisify((cb) =>
        conn!.send(
          { from: AUTHORIZED.email, to: [`rcpt${n}@example.net`] } as any,
          demoMessage(AUTHORIZED.email, n, id),
          cb,
        ),
      );
      ids.push(id);
    }
  } catch (err: any) {
    out(`authorize: FAILED sending through ${AUTHORIZED.email}: ${String(err.response ?? err.message)}`);
    return false;
  } finally {
    conn?.quit();
  }
  const seen = new Set(sim.stats().messageIds);
  const arrived = ids.filter((id) => seen.has(id)).length;
  out(
    `authorize: ${arrived}/${AUTHORIZED_MESSAGES} messages delivered through ${AUTHORIZED.email} ` +
      `(AUTH PLAIN at the proxy, AUTH XOAUTH2 upstream with the new token)`,
  );
  return arrived === AUTHORIZED_MESSAGES;
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('start the simulator and a proxy, send messages through it, print what happened')
    .option('--once', 'exit after the summary')
    .option('--messages <n>', 'how many messages', '300')
    .option('--mailboxes <n>', 'how many mailboxes', '5')
    .option('--no-authorize', `skip authorizing ${AUTHORIZED.email} end to end`)
    .action(async (opts: DemoOptions) => {
      process.exitCode = await runDemo(opts);
      if (opts.once) setTimeout(() => process.exit(process.exitCode ?? 0), 100).unref();
    });
}
