// Runs fuzz cases against a real proxy (and simulator) over loopback and checks after every case
// that the replies are well-formed SMTP and no undelivered message was answered `250`; after every
// batch that the process is alive, healthy and within its memory bound; at the end that its file
// descriptors are back to where they started and that a normal client still gets its mail through.
// Attacks that run once per run rather than per case: slowloris (in a command and in DATA) and a
// flood of idle connections.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { startBenchEnv, type BenchEnv } from '../harness/env.js';
import { BenchSmtpConnection } from '../harness/smtp-client.js';
import { parseStatusRss } from '../harness/proc.js';
import { readFile } from 'node:fs/promises';
import { countFds } from '../chaos/probes.js';
import { seededRandom } from '../harness/random.js';
import { FAMILIES, makeCase, type Family, type FuzzCase } from './cases.js';
import { checkReplies, isDeliveredReply } from './oracle.js';

export interface FuzzOptions {
  cases: number;
  /** keep going until this many minutes passed (instead of stopping at `cases`) */
  minutes?: number;
  seed: number;
  concurrency: number;
  only?: Family[];
  /** the once-per-run attacks (slowloris, idle flood) */
  connectionAttacks: boolean;
  progress?: (line: string) => void;
}

export interface Finding {
  case: number;
  family: string;
  problem: string;
  /** the first bytes the case sent, for a report */
  sample: string;
}

export interface FuzzReport {
  seed: number;
  cases: number;
  perFamily: Record<string, number>;
  durationSec: number;
  casesPerSec: number;
  replies: number;
  deliveredClaims: number;
  rssStartBytes: number;
  rssMaxBytes: number;
  fdsBefore: number;
  fdsAfter: number;
  attacks: Record<string, string>;
  findings: Finding[];
  ok: boolean;
}

const IDLE_TIMEOUT_SEC = 3;
/** maxClients of the fuzzed proxy; the idle flood opens twice as many connections */
const MAX_CLIENTS = 1000;
/** RSS bound: generous for a proxy whose steady state is ~100 MB, tight enough to catch growth */
const MAX_RSS_BYTES = 512 * 1024 * 1024;

async function rssOf(pid: number): Promise<number> {
  return parseStatusRss(await readFile(`/proc/${pid}/status`, 'utf8')) ?? 0;
}

/** Send a case, collect everything the proxy writes back until it goes quiet or closes. */
export async function runCase(port: number, c: FuzzCase): Promise<{ raw: Buffer; closed: boolean }> {
  const s = net.connect({ host: '127.0.0.1', port });
  const chunks: Buffer[] = [];
  let closed = false;
  let lastData = performance.now();
  s.on('data', (d: Buffer) => {
    chunks.push(d);
    lastData = performance.now();
  });
  s.on('error', () => undefined);
  const closedP = new Promise<void>((r) => s.once('close', () => ((closed = true), r())));
  await new Promise<void>((r) => (s.connecting ? s.once('connect', () => r()) : r()));
  // wait for the greeting: talking first is a different (early-talker) case the families cover
  const greetBy = performance.now() + 2000;
  while (!chunks.length && !closed && performance.now() < greetBy) await sleep(5);
  for (const step of c.steps) {
    if (closed) break;
    if (typeof step === 'number') {
      await sleep(step);
      continue;
    }
    if (!s.write(step)) await Promise.race([new Promise((r) => s.once('drain', r)), closedP]);
  }
  if (c.vanish) {
    s.destroy();
    return { raw: Buffer.concat(chunks), closed: true };
  }
  // quiet for 150 ms (or closed), at most ~IDLE_TIMEOUT + 2 s: the proxy's idle timer bounds it
  const deadline = performance.now() + (IDLE_TIMEOUT_SEC + 2) * 1000;
  while (!closed && performance.now() < deadline && performance.now() - lastData < 150) await sleep(25);
  if (!closed) {
    s.write('\r\nQUIT\r\n');
    await Promise.race([closedP, sleep(1000)]);
  }
  s.destroy();
  return { raw: Buffer.concat(chunks), closed };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Slowloris: one byte a second, after `prelude` (sent at once). The proxy must cut such a client
 * off, not hold it forever: in a command, and in a message body (DATA).
 */
async function slowloris(port: number, seconds: number, prelude: string, trickle: string): Promise<string> {
  const s = net.connect({ host: '127.0.0.1', port });
  s.on('error', () => undefined);
  let got = '';
  s.on('data', (d) => (got += d.toString('latin1')));
  let closed = false;
  s.once('close', () => (closed = true));
  if (prelude) {
    // talking before the greeting is refused (early-talker check), so wait for it
    for (let i = 0; i < 100 && !got.includes('\r\n') && !closed; i++) await sleep(50);
    s.write(prelude);
  }
  const t0 = performance.now();
  for (let i = 0; !closed && (performance.now() - t0) / 1000 < seconds; i++) {
    s.write(trickle[i % trickle.length]!);
    await sleep(1000);
  }
  const held = ((performance.now() - t0) / 1000).toFixed(0);
  s.destroy();
  const check = checkReplies(Buffer.from(got, 'latin1'));
  if (!check.ok) throw new Error(`slowloris: malformed reply: ${check.problem}`);
  if (!closed)
    throw new Error(`slowloris: a client sending one byte a second was still connected after ${held} s`);
  return `cut off after ${held} s (${check.replies.at(-1)?.text ?? 'no reply'})`;
}

/**
 * Thousands of idle connections, opened in waves of 200 (below the listen backlog, so the kernel's
 * accept queue does not drop handshakes and every connection reaches the proxy): at no moment are
 * more than maxClients greeted, the rest are refused with 421, and the greeted ones, saying nothing,
 * are closed by the proxy itself after its idle timeout (the slots come back without the attacker's
 * help). Nothing breaks.
 */
async function idleFlood(port: number, n: number): Promise<string> {
  const WAVE = 200;
  let open = 0;
  let maxOpen = 0;
  const conns: { s: net.Socket; first: string; closedAt?: number; text: string }[] = [];
  const one = async () => {
    const c = {
      s: net.connect({ host: '127.0.0.1', port }),
      first: '',
      closedAt: undefined as number | undefined,
      text: '',
    };
    conns.push(c);
    c.s.on('error', () => undefined);
    c.first = await new Promise<string>((resolve) => {
      c.s.on('data', (d) => {
        c.text += d.toString('latin1');
        if (!c.first && c.text.includes('\r\n')) {
          if (c.text.startsWith('220')) maxOpen = Math.max(maxOpen, ++open);
          resolve(c.text.slice(0, 3));
        }
      });
      c.s.once('close', () => {
        if (c.text.startsWith('220')) open--;
        c.closedAt = performance.now();
        resolve(c.text.slice(0, 3) || 'closed');
      });
      setTimeout(() => resolve(c.text.slice(0, 3) || 'silent'), 5000);
    });
  };
  try {
    for (let i = 0; i < n; i += WAVE) await Promise.all(Array.from({ length: Math.min(WAVE, n - i) }, one));
    const counts: Record<string, number> = {};
    for (const c of conns) counts[c.first] = (counts[c.first] ?? 0) + 1;
    if (maxOpen > MAX_CLIENTS)
      throw new Error(`idle flood: ${maxOpen} connections greeted at once, maxClients is ${MAX_CLIENTS}`);
    const bad = Object.keys(counts).filter((k) => k !== '220' && k !== '421');
    if (bad.length) throw new Error(`idle flood: unexpected first replies ${JSON.stringify(counts)}`);
    if (!counts['421'])
      throw new Error(`idle flood: ${n} connections and none refused (maxClients ${MAX_CLIENTS})`);
    // the greeted ones stay silent: the proxy must close them after idleTimeout (plus its 1 s sweep)
    const t0 = performance.now();
    const greeted = conns.filter((c) => c.first === '220');
    const by = t0 + (IDLE_TIMEOUT_SEC + 3) * 1000;
    while (greeted.some((c) => c.closedAt === undefined) && performance.now() < by) await sleep(100);
    const left = greeted.filter((c) => c.closedAt === undefined).length;
    if (left)
      throw new Error(`idle flood: ${left} idle connections still open ${IDLE_TIMEOUT_SEC + 3} s later`);
    const told = greeted.filter((c) => /\r\n421 /.test(c.text)).length;
    return (
      `${n} idle connections: ${counts['220']} greeted (220, at most ${maxOpen} at once), ` +
      `${counts['421']} refused (421); the proxy closed every idle one itself (${told} with a 421)`
    );
  } finally {
    for (const c of conns) c.s.destroy();
  }
}

async function healthy(env: BenchEnv): Promise<string | undefined> {
  try {
    process.kill(env.proxyPid, 0);
  } catch {
    return 'the proxy process died';
  }
  try {
    const r = await fetch(`http://127.0.0.1:${env.proxyHttpPort}/healthz`, {
      signal: AbortSignal.timeout(5000),
    });
    await r.arrayBuffer();
    if (r.status !== 200) return `/healthz answered ${r.status}`;
  } catch (err) {
    return `/healthz failed: ${(err as Error).message}`;
  }
  return undefined;
}

async function validTransaction(env: BenchEnv): Promise<string | undefined> {
  const user = env.users[0]!;
  const id = `<fuzz-final-${Date.now()}@fuzz.test>`;
  try {
    const conn = await BenchSmtpConnection.open({
      host: '127.0.0.1',
      port: env.proxySmtpPort,
      auth: { mechanism: 'PLAIN', user, password: env.password },
    });
    const head = Buffer.from(
      `From: <${user}>\r\nTo: <someone@example.net>\r\nMessage-ID: ${id}\r\n\r\nafter the fuzz\r\n`,
    );
    const r = await conn.send(user, ['someone@example.net'], head, Buffer.alloc(0));
    await conn.quit();
    if (r.code !== 250) return `a valid message after fuzzing got ${r.code} ${r.text}`;
    const ids = (await env.simStats(true)).messageIds ?? [];
    if (!ids.includes(id)) return 'a valid message after fuzzing got 250 but is not upstream';
  } catch (err) {
    return `a valid client failed after fuzzing: ${(err as Error).message}`;
  }
  return undefined;
}

export async function runFuzz(o: FuzzOptions): Promise<FuzzReport> {
  const say = o.progress ?? ((l: string) => process.stderr.write(l + '\n'));
  const env = await startBenchEnv({
    mailboxes: 4,
    connections: 4,
    tls: false,
    userPrefix: 'fuzz',
    userDomain: 'example.com',
    recipients: 1,
    smtpOverrides: { idleTimeout: `${IDLE_TIMEOUT_SEC}s`, maxClients: MAX_CLIENTS, maxRecipients: 100 },
  });
  const findings: Finding[] = [];
  const perFamily: Record<string, number> = {};
  const claims: { id: string; n: number; family: string; sample: string }[] = [];
  const attacks: Record<string, string> = {};
  let replies = 0;
  let done = 0;
  const rnd = seededRandom(o.seed);
  const families = o.only?.length ? o.only : FAMILIES;
  const cred = { user: env.users[0]!, password: env.password };
  const rssStart = await rssOf(env.proxyPid);
  let rssMax = rssStart;
  // idle pooled upstream connections come and go; count fds with the proxy quiet
  await validTransaction(env);
  await sleep(500);
  const fdsBefore = await countFds(env.proxyPid);
  const t0 = performance.now();
  const endAt = o.minutes !== undefined ? t0 + o.minutes * 60_000 : Infinity;
  const more = () => (o.minutes !== undefined ? performance.now() < endAt : done < o.cases);
  try {
    let n = 0;
    while (more() && findings.length < 20) {
      const batch: FuzzCase[] = [];
      for (let i = 0; i < Math.max(o.concurrency * 4, 50) && (o.minutes !== undefined || n < o.cases); i++)
        batch.push(makeCase(n++, families[Math.floor(rnd() * families.length)]!, rnd, cred));
      let next = 0;
      await Promise.all(
        Array.from({ length: o.concurrency }, async () => {
          while (next < batch.length) {
            const c = batch[next++]!;
            const sample = JSON.stringify(
              Buffer.concat(c.steps.filter((s): s is Buffer => Buffer.isBuffer(s)))
                .subarray(0, 120)
                .toString('latin1'),
            );
            const { raw } = await runCase(env.proxySmtpPort, c);
            perFamily[c.family] = (perFamily[c.family] ?? 0) + 1;
            done++;
            const check = checkReplies(raw);
            replies += check.replies.length;
            if (!check.ok) findings.push({ case: c.n, family: c.family, problem: check.problem!, sample });
            if (c.messageId && check.replies.some(isDeliveredReply))
              claims.push({ id: c.messageId, n: c.n, family: c.family, sample });
          }
        }),
      );
      const sick = await healthy(env);
      if (sick) {
        findings.push({ case: n - 1, family: 'batch', problem: sick, sample: '' });
        break;
      }
      rssMax = Math.max(rssMax, await rssOf(env.proxyPid));
      if (rssMax > MAX_RSS_BYTES)
        findings.push({ case: n - 1, family: 'batch', problem: `RSS ${rssMax} bytes`, sample: '' });
      say(
        `fuzz: ${done} cases, ${((done * 1000) / (performance.now() - t0)).toFixed(0)}/s, ${findings.length} findings, RSS ${(rssMax / 2 ** 20).toFixed(0)} MiB`,
      );
    }
    const durationSec = (performance.now() - t0) / 1000;
    if (o.connectionAttacks) {
      for (const [name, attack] of [
        [
          'slowloris',
          () =>
            slowloris(env.proxySmtpPort, IDLE_TIMEOUT_SEC * 10, '', 'EHLO slowly-but-surely.example.com\r\n'),
        ],
        [
          'slowloris in DATA',
          () =>
            slowloris(
              env.proxySmtpPort,
              IDLE_TIMEOUT_SEC * 10,
              `EHLO slow-data.example.com\r\nAUTH PLAIN ${Buffer.from(`\0${cred.user}\0${cred.password}`).toString('base64')}\r\n` +
                `MAIL FROM:<${cred.user}>\r\nRCPT TO:<slow@example.net>\r\nDATA\r\n`,
              'Subject: one byte a second\r\n',
            ),
        ],
        ['idle flood', () => idleFlood(env.proxySmtpPort, 2 * MAX_CLIENTS)],
      ] as const) {
        try {
          attacks[name] = await attack();
        } catch (err) {
          attacks[name] = `FAILED: ${(err as Error).message}`;
          findings.push({ case: -1, family: name, problem: (err as Error).message, sample: '' });
        }
        const sick = await healthy(env);
        if (sick) findings.push({ case: -1, family: name, problem: sick, sample: '' });
      }
    }
    // every "250 upstream:" was a message the upstream has
    const upstream = new Set((await env.simStats(true)).messageIds ?? []);
    for (const c of claims) {
      if (!upstream.has(c.id))
        findings.push({
          case: c.n,
          family: c.family,
          problem: `250 for ${c.id}, which is not upstream`,
          sample: c.sample,
        });
    }
    const final = await validTransaction(env);
    if (final) findings.push({ case: -1, family: 'after', problem: final, sample: '' });
    // fds back to the baseline once the idle timeout has closed whatever is left
    let fdsAfter = await countFds(env.proxyPid);
    for (let i = 0; i < 40 && fdsAfter > fdsBefore + 3; i++) {
      await sleep(250);
      fdsAfter = await countFds(env.proxyPid);
    }
    if (fdsAfter > fdsBefore + 3)
      findings.push({
        case: -1,
        family: 'after',
        problem: `file descriptors ${fdsBefore} -> ${fdsAfter}`,
        sample: '',
      });
    return {
      seed: o.seed,
      cases: done,
      perFamily,
      durationSec: Math.round(durationSec * 10) / 10,
      casesPerSec: Math.round(done / durationSec),
      replies,
      deliveredClaims: claims.length,
      rssStartBytes: rssStart,
      rssMaxBytes: rssMax,
      fdsBefore,
      fdsAfter,
      attacks,
      findings,
      ok: findings.length === 0,
    };
  } finally {
    await env.close();
  }
}
