// The chaos scenarios: one fault each, switched on after a quiet lead-in and off before a quiet
// tail, under load. Order matters: revocation is undone by the SIGHUP scenario, and SIGTERM ends
// the proxy, so it comes last.
import fs from 'node:fs';
import YAML from 'yaml';
import type { BenchEnv } from '../harness/env.js';
import { BenchSmtpConnection, SmtpClientError } from '../harness/smtp-client.js';
import type { Entry, Ledger } from './ledger.js';
import { vanishMidData } from './vanish.js';

export interface ChaosContext {
  env: BenchEnv;
  quick: boolean;
  ledger: Ledger;
  /** seconds since the scenario started */
  t(): number;
  /** mailboxes the load uses from now on (scenarios may take some away) */
  users: string[];
  /** mailboxes whose refresh token the revoke scenario revoked */
  revoked: string[];
  /** what the SIGHUP scenario changed, for its checks */
  hup?: { removed: string; changed: string };
  sleep(sec: number): Promise<void>;
}

export interface Scenario {
  name: string;
  /** what the fault is, for the table */
  fault: string;
  /** how long the fault lasts (0: a one-off event) */
  faultSec(quick: boolean): number;
  start(ctx: ChaosContext): Promise<void>;
  /** runs beside the load while the fault lasts */
  during?(ctx: ChaosContext, faultSec: number): Promise<void>;
  stop?(ctx: ChaosContext): Promise<void>;
  /** mailboxes whose failures this scenario causes on purpose (not counted for recovery) */
  expectedToFail?(ctx: ChaosContext): ReadonlySet<string>;
  /** checks beyond the common invariants; each string is a failure */
  verify?(ctx: ChaosContext): Promise<string[]>;
  /** the proxy exits during this scenario */
  endsProxy?: boolean;
}

const faults = (ctx: ChaosContext, f: Record<string, number>) => ctx.env.simControl('faults', f);
const CLEAR = {
  latencyMs: 0,
  dropEvery: 0,
  reject421Next: 0,
  tokenErrorRate: 0,
  tokenResetRate: 0,
  tokenLatencyMs: 0,
};

/** The accounts of the proxy's config file (bench env writes them inline). */
interface ConfigDoc {
  accounts: { email: string; password?: string; refreshToken?: string; [k: string]: unknown }[];
  [k: string]: unknown;
}
const readConfig = (env: BenchEnv) => YAML.parse(fs.readFileSync(env.configFile, 'utf8')) as ConfigDoc;
const writeConfig = (env: BenchEnv, doc: ConfigDoc) =>
  fs.writeFileSync(env.configFile, YAML.stringify(doc), { mode: 0o600 });

/** AUTH PLAIN + one message on a fresh connection: the AUTH reply code, then the message's. */
async function tryOnce(
  env: BenchEnv,
  user: string,
  password: string,
  id: string,
): Promise<{ auth: number; send?: number }> {
  let conn;
  try {
    conn = await BenchSmtpConnection.open({
      host: '127.0.0.1',
      port: env.proxySmtpPort,
      auth: { mechanism: 'PLAIN', user, password },
    });
  } catch (err) {
    if (err instanceof SmtpClientError && err.reply) return { auth: err.reply.code };
    throw err;
  }
  const head = Buffer.from(
    `From: <${user}>\r\nTo: <someone@example.net>\r\nSubject: chaos\r\nMessage-ID: ${id}\r\n\r\nhello\r\n`,
  );
  const r = await conn.send(user, ['someone@example.net'], head, Buffer.alloc(0));
  await conn.quit();
  return { auth: 235, send: r.code };
}

export const SCENARIOS: Scenario[] = [
  {
    name: 'drop-every-nth',
    fault: 'upstream cuts every 7th transaction before its final reply (at MAIL, RCPT or after DATA)',
    faultSec: (q) => (q ? 3 : 15),
    start: (ctx) => faults(ctx, { dropEvery: 7 }),
    stop: (ctx) => faults(ctx, CLEAR),
  },
  {
    name: '421-bursts',
    fault: 'bursts of 421 4.7.0 + close from the upstream (30 MAILs every 2 s)',
    faultSec: (q) => (q ? 3 : 15),
    start: (ctx) => faults(ctx, { reject421Next: 30 }),
    async during(ctx, sec) {
      for (let left = sec - 2; left > 0; left -= 2) {
        await ctx.sleep(2);
        await faults(ctx, { reject421Next: 30 });
      }
    },
    stop: (ctx) => faults(ctx, CLEAR),
  },
  {
    name: 'latency-spike',
    fault: 'upstream answers the end of DATA after 2.5 s',
    faultSec: (q) => (q ? 3 : 10),
    start: (ctx) => faults(ctx, { latencyMs: 2500 }),
    stop: (ctx) => faults(ctx, CLEAR),
  },
  {
    name: 'token-endpoint-down',
    fault:
      'token endpoint down (connections reset, then 500 to everything), then 3 s per answer, then recovers',
    faultSec: (q) => (q ? 8 : 40),
    start: (ctx) => faults(ctx, { tokenResetRate: 1 }),
    async during(ctx, sec) {
      // down for three quarters (unreachable, then failing), slow for the rest
      await ctx.sleep(sec * 0.375);
      await faults(ctx, { tokenResetRate: 0, tokenErrorRate: 1 });
      await ctx.sleep(sec * 0.375);
      await faults(ctx, { tokenErrorRate: 0, tokenLatencyMs: 3000 });
    },
    stop: (ctx) => faults(ctx, CLEAR),
  },
  {
    name: 'token-endpoint-hangs',
    fault: "token endpoint takes every request and answers none within the proxy's 10 s request timeout",
    // tokens expire during it, but pooled upstream connections stay authenticated: only new
    // connections need a token, so few messages feel it
    faultSec: (q) => (q ? 8 : 25),
    start: (ctx) => faults(ctx, { tokenLatencyMs: 15_000 }),
    stop: (ctx) => faults(ctx, CLEAR),
  },
  {
    name: 'refresh-tokens-revoked',
    fault: "two mailboxes' refresh tokens revoked at the provider",
    faultSec: (q) => (q ? 6 : 25),
    async start(ctx) {
      ctx.revoked = ctx.users.slice(0, 2);
      // every refresh token they have had: with rotation the proxy holds a newer one than the config's
      for (const email of ctx.revoked) await ctx.env.simControl('revoke', { grantsOf: email });
    },
    expectedToFail: (ctx) => new Set(ctx.revoked),
    async verify(ctx) {
      const out: string[] = [];
      const bad = ctx.ledger.entries.filter(
        (e) =>
          ctx.revoked.includes(e.user) &&
          e.outcome.kind === 'reply' &&
          e.outcome.code >= 300 &&
          !/^4\d\d /.test(`${e.outcome.code} `),
      );
      if (bad.length) out.push(`${bad.length} messages of revoked mailboxes got a permanent reply`);
      const told = ctx.ledger.entries.filter(
        (e) =>
          ctx.revoked.includes(e.user) &&
          e.outcome.kind === 'reply' &&
          /4\.7\.0/.test(e.outcome.text) &&
          /re-?author/i.test(e.outcome.text),
      ).length;
      if (!ctx.quick && told === 0)
        out.push('no message of a revoked mailbox was told it needs re-authorization');
      return out;
    },
  },
  {
    name: 'sighup-account-changes',
    fault:
      'SIGHUP after adding a mailbox, removing one, changing a password, re-authorizing the revoked ones',
    faultSec: () => 0,
    async start(ctx) {
      const doc = readConfig(ctx.env);
      const removed = ctx.users[ctx.users.length - 1]!;
      const changed = ctx.users[ctx.users.length - 2]!;
      const template = doc.accounts[0]!;
      doc.accounts = doc.accounts
        .filter((a) => a.email !== removed)
        .map((a) => {
          if (a.email === changed) return { ...a, password: 'changed-password-for-chaos' };
          if (ctx.revoked.includes(a.email)) return { ...a, refreshToken: `simrt.${a.email}.renewed` };
          return a;
        });
      doc.accounts.push({
        ...template,
        email: 'added@example.com',
        refreshToken: 'simrt.added@example.com.bench',
      });
      writeConfig(ctx.env, doc);
      process.kill(ctx.env.proxyPid, 'SIGHUP');
      ctx.hup = { removed, changed };
    },
    expectedToFail: (ctx) => new Set([ctx.users[ctx.users.length - 1]!, ...ctx.revoked]),
    async verify(ctx) {
      const { removed, changed } = ctx.hup!;
      const out: string[] = [];
      const pw = ctx.env.password;
      const expect = async (what: string, user: string, password: string, auth: number, send?: number) => {
        const id = `<chaos-hup-${Math.random().toString(36).slice(2)}@chaos>`;
        const r = await tryOnce(ctx.env, user, password, id);
        if (r.auth !== auth || r.send !== send)
          out.push(`${what}: AUTH ${r.auth}, message ${r.send ?? '-'} (want ${auth}, ${send ?? '-'})`);
        if (send === 250)
          ctx.ledger.add({ id, user, t: ctx.t(), outcome: { kind: 'reply', code: r.send ?? 0, text: '' } });
      };
      await expect('added mailbox', 'added@example.com', pw, 235, 250);
      await expect('removed mailbox', removed, pw, 535);
      await expect('changed password, old one', changed, pw, 535);
      await expect('changed password, new one', changed, 'changed-password-for-chaos', 235, 250);
      for (const r of ctx.revoked) await expect(`re-authorized ${r}`, r, pw, 235, 250);
      // later scenarios: without the removed and the changed mailbox (the load uses one password)
      ctx.users = ctx.users.filter((u) => u !== removed && u !== changed);
      ctx.revoked = [];
      return out;
    },
  },
  {
    name: 'clients-vanish-mid-data',
    fault: 'clients disconnect in the middle of DATA (after the 354, mid-body), 4 per second',
    faultSec: (q) => (q ? 3 : 15),
    async start() {},
    async during(ctx, sec) {
      const end = ctx.t() + sec;
      for (let i = 0; ctx.t() < end; i++) {
        const user = ctx.users[i % ctx.users.length]!;
        const id = `<chaos-vanish-${i}-${Date.now()}@chaos>`;
        await vanishMidData({
          port: ctx.env.proxySmtpPort,
          user,
          password: ctx.env.password,
          id,
          bodyBytes: [0, 100, 5000, 60_000][i % 4]!,
        }).then(
          () => ctx.ledger.add({ id, user, t: ctx.t(), outcome: { kind: 'abandoned' } }),
          () => undefined, // refused before DATA: nothing was abandoned
        );
        await ctx.sleep(0.25);
      }
    },
  },
  {
    name: 'sigterm-drain',
    fault: 'SIGTERM under load: in-flight messages finish, new ones get 421, exit 0',
    faultSec: () => 0,
    endsProxy: true,
    async start(ctx) {
      process.kill(ctx.env.proxyPid, 'SIGTERM');
    },
    async verify(ctx) {
      const out: string[] = [];
      const code = await Promise.race([
        ctx.env.proxyExit,
        new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 40_000)),
      ]);
      if (code !== 0) out.push(`the proxy did not exit 0 after SIGTERM (${String(code)})`);
      const after = ctx.ledger.entries.filter(
        (e: Entry) =>
          e.outcome.kind === 'reply' && e.outcome.code >= 400 && !/^421 4\.3\.2/.test(e.outcome.text),
      );
      if (after.length)
        out.push(
          `${after.length} messages failed with something other than 421 4.3.2: ${after[0]!.outcome.kind === 'reply' ? after[0]!.outcome.text : ''}`,
        );
      return out;
    },
  },
];
