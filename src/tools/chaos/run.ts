// Runs the chaos scenarios one after another against one simulator + proxy, under a fixed-rate
// load, and checks for each: no 250 without the upstream having the message, a reply for every
// other message, nothing delivered that a client abandoned, /readyz up, recovery after the fault,
// and no leaked file descriptors or connections.
import { performance } from 'node:perf_hooks';
import { startBenchEnv, type BenchEnv, type Style } from '../harness/env.js';
import { runGenerator } from '../harness/generator.js';
import {
  describeSeconds,
  Ledger,
  recoverySec,
  secondsAfter,
  type Entry,
  type LedgerCounts,
} from './ledger.js';
import { pollReady, settle, unsettled, type Snapshot } from './probes.js';
import { SCENARIOS, type ChaosContext, type Scenario } from './scenarios.js';

export interface ChaosOptions {
  quick: boolean;
  /** msg/s of the background load */
  rate: number;
  mailboxes: number;
  /** proxy -> simulator over STARTTLS (default: plain) */
  upstreamTls?: boolean;
  /** the provider the simulator plays (microsoft rotates refresh tokens); default google */
  style?: Style;
  only?: string[];
  progress?: (line: string) => void;
}

export interface ScenarioResult {
  name: string;
  fault: string;
  counts: LedgerCounts;
  lost: number;
  abandonedDelivered: number;
  /** s from the fault's end until >= 95 % of each second's messages were accepted within 500 ms */
  recoverySec: number | null;
  notReady: number;
  readyPolls: number;
  /** what the failed /readyz polls got, with counts */
  notReadyWhy: Record<string, number>;
  /** /readyz polls answered 200 only after 2 s */
  readySlow: number;
  before: Snapshot;
  after: Snapshot | null;
  failures: string[];
  pass: boolean;
}

export interface ChaosReport {
  options: Omit<ChaosOptions, 'progress'>;
  startedAt: string;
  durationSec: number;
  results: ScenarioResult[];
  pass: boolean;
}

/** A recovered second also answers promptly: latency of accepted messages under this (ms). */
const HEALTHY_LATENCY_MS = 500;
/** A healthy proxy is back this fast after a fault ends. */
const MAX_RECOVERY_SEC = 10;
/** fds beyond the change in upstream connections: a little slack for timers, DNS, the store */
const FD_SLACK = 3;

/**
 * The leaks an `after` snapshot shows against `before`. fds are counted beside the connections
 * that come and go by design: the upstream pool, the token endpoint's keep-alive pool (at most
 * one refresh per mailbox at a time, so at most one connection each) and our own probes.
 */
function leaks(before: Snapshot, after: Snapshot, mailboxes: number): string[] {
  const out = unsettled(after);
  const own = (s: Snapshot) => s.fds - s.upstream - s.tokenSockets - s.probeSockets;
  const grew = own(after) - own(before);
  if (grew > FD_SLACK)
    out.push(
      `file descriptors grew by ${grew} beyond the upstream pool's change (fds ${before.fds} -> ${after.fds}, ` +
        `upstream ${before.upstream} -> ${after.upstream}, token endpoint ${before.tokenSockets} -> ${after.tokenSockets}, ` +
        `probes ${before.probeSockets} -> ${after.probeSockets})`,
    );
  if (after.tokenSockets > mailboxes)
    out.push(`${after.tokenSockets} connections open to the token endpoint for ${mailboxes} mailboxes`);
  return out;
}

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const say = o.progress ?? ((l: string) => process.stderr.write(l + '\n'));
  const chosen = o.only ? SCENARIOS.filter((s) => o.only!.includes(s.name)) : SCENARIOS;
  const unknown = (o.only ?? []).filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length)
    throw new Error(
      `unknown scenario ${unknown.join(', ')} (known: ${SCENARIOS.map((s) => s.name).join(', ')})`,
    );
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const env = await startBenchEnv({
    mailboxes: o.mailboxes,
    connections: o.mailboxes,
    tls: o.upstreamTls ?? false,
    ...(o.style ? { style: o.style } : {}),
    userPrefix: 'chaos',
    userDomain: 'example.com',
    recipients: 1,
    // short-lived access tokens: refreshes keep happening, so token faults bite
    simArgs: ['--token-lifetime', '20'],
  });
  const results: ScenarioResult[] = [];
  const shared = { users: [...env.users], revoked: [] as string[] };
  try {
    for (const sc of chosen) {
      say(`chaos: ${sc.name}: ${sc.fault}`);
      const r = await runScenario(env, sc, o, shared);
      results.push(r);
      say(
        `chaos: ${sc.name}: ${r.pass ? 'pass' : 'FAIL'} (${r.counts.messages} messages, ${r.counts.accepted} x 250, ` +
          `${r.counts.deferred} x 4xx, ${r.counts.rejected} x 5xx, ${r.counts.noReply} without reply, lost ${r.lost}` +
          `${r.recoverySec !== null ? `, recovered in ${r.recoverySec} s` : ''})` +
          (r.failures.length ? `\n  - ${r.failures.join('\n  - ')}` : ''),
      );
      if (sc.endsProxy) break;
    }
  } finally {
    await env.close();
  }
  const { progress: _p, ...options } = o;
  return {
    options,
    startedAt,
    durationSec: Math.round((performance.now() - t0) / 1000),
    results,
    pass: results.every((r) => r.pass),
  };
}

async function runScenario(
  env: BenchEnv,
  sc: Scenario,
  o: ChaosOptions,
  shared: { users: string[]; revoked: string[] },
): Promise<ScenarioResult> {
  const lead = o.quick ? 1.5 : 5;
  const tail = o.quick ? 4 : 15;
  const faultSec = sc.faultSec(o.quick);
  const before = (await settle(env)).snapshot;
  await env.simReset(); // the id list now holds this scenario's messages only
  const ledger = new Ledger();
  const start = performance.now();
  const ctx: ChaosContext = {
    env,
    quick: o.quick,
    ledger,
    t: () => (performance.now() - start) / 1000,
    users: shared.users,
    revoked: shared.revoked,
    sleep: (sec) => new Promise((r) => setTimeout(r, sec * 1000)),
  };
  // Recovery is judged on the load after the fault: it runs at least `tail` seconds, and on until
  // delivery has been healthy for half of that (or MAX_RECOVERY_SEC has passed), so a recovery that
  // a busy machine slows down is seen whole instead of cut off at a fixed end.
  const judgesRecovery = faultSec > 0 && !sc.endsProxy;
  const confirmSec = tail / 2;
  let faultEnd: number | undefined = undefined; // set once the fault is over
  const counted = (e: Entry) => !(sc.expectedToFail?.(ctx) ?? new Set()).has(e.user);
  const healthy = { maxLatencyMs: HEALTHY_LATENCY_MS };
  const recovery = () => recoverySec(ledger.entries, faultEnd!, counted, healthy);
  let askedAt = -1;
  let confirmed = false;
  const recoveryConfirmed = () => {
    if (faultEnd === undefined || ctx.t() - askedAt < 0.25) return confirmed;
    askedAt = ctx.t();
    const r = recovery();
    return (confirmed = r !== null && ctx.t() - faultEnd - r >= confirmSec);
  };
  const ready = pollReady(env.proxyHttpPort);
  // the lead-in counts from when the load is on (connecting its clients takes a while on a busy machine)
  let measuring!: () => void;
  const loadOn = new Promise<void>((r) => (measuring = r));
  const load = runGenerator({
    host: env.proxyHost,
    port: env.proxySmtpPort,
    auth: { mechanism: 'PLAIN', password: env.password },
    users: ctx.users,
    connections: ctx.users.length,
    rate: o.rate,
    durationSec: lead + faultSec + tail,
    ...(judgesRecovery
      ? {
          extend: {
            done: recoveryConfirmed,
            maxDurationSec: lead + faultSec + MAX_RECOVERY_SEC + confirmSec + 1,
          },
        }
      : {}),
    size: 2048,
    recipients: 1,
    runId: `chaos-${sc.name}-${Date.now()}`,
    label: sc.name,
    quiet: true,
    drainTimeoutMs: 45_000,
    reconnectDelayMs: 100,
    onMeasureStart: () => measuring(),
    onResult: (r) =>
      ledger.add({
        id: r.id,
        user: r.user,
        t: ctx.t(),
        latencyMs: r.latencyMs,
        outcome:
          r.outcome === 'error'
            ? { kind: 'no-reply', why: r.reply }
            : { kind: 'reply', code: Number(r.reply.slice(0, 3)), text: r.reply },
      }),
  });
  await Promise.race([loadOn, load]); // a load that fails to start ends the wait too
  await ctx.sleep(lead);
  const faultStart = ctx.t();
  await sc.start(ctx);
  if (sc.during) await sc.during(ctx, faultSec);
  else await ctx.sleep(faultSec);
  if (sc.stop) await sc.stop(ctx);
  faultEnd = ctx.t();
  await load;
  const loadEnd = ctx.t();
  const readiness = ready.stop();
  const failures: string[] = [];
  if (sc.verify) failures.push(...(await sc.verify(ctx)));
  shared.users = ctx.users;
  shared.revoked = ctx.revoked;

  // the simulator outlives the proxy, so this works after SIGTERM too
  const stats = await env.simStats(true);
  const check = ledger.check(new Set(stats.messageIds ?? []));
  const counts = ledger.counts();
  if (check.lost.length)
    failures.push(`${check.lost.length} messages got 250 but are not upstream (e.g. ${check.lost[0]})`);
  if (check.abandonedDelivered.length)
    failures.push(`${check.abandonedDelivered.length} abandoned messages were delivered`);
  if (check.noReply.length)
    failures.push(
      `${check.noReply.length} messages got no reply (e.g. ${check.noReply[0]!.id}: ${(check.noReply[0]!.outcome as { why: string }).why})`,
    );
  if (counts.messages === 0) failures.push('no message was sent');

  let recovered: number | null = null;
  let after: Snapshot | null = null;
  if (!sc.endsProxy) {
    if (readiness.notReady)
      failures.push(
        `/readyz failed ${readiness.notReady} of ${readiness.polls} polls (${Object.entries(readiness.why)
          .map(([why, n]) => `${n} x ${why}`)
          .join(', ')})`,
      );
    if (judgesRecovery) {
      recovered = recovery();
      const past = (loadEnd - faultEnd).toFixed(1);
      // the lead-in too: a machine too busy to carry the load before the fault shows there
      const leadIn = secondsAfter(
        ledger.entries.filter((e) => e.t - (e.latencyMs ?? 0) / 1000 < faultStart),
        0,
        counted,
        healthy,
      ).reduce((a, x) => ({ ok: a.ok + x.ok, all: a.all + x.all }), { ok: 0, all: 0 });
      const seen =
        `healthy = 2xx within ${HEALTHY_LATENCY_MS} ms; before the fault ${leadIn.ok}/${leadIn.all}; after it ` +
        describeSeconds(secondsAfter(ledger.entries, faultEnd, counted, healthy));
      if (recovered === null)
        failures.push(
          `delivery did not recover after the fault (the load ran on ${past} s past its end; ${seen})`,
        );
      else if (recovered > MAX_RECOVERY_SEC)
        failures.push(`recovery took ${recovered} s (limit ${MAX_RECOVERY_SEC} s; ${seen})`);
    }
    // the SIGHUP scenario adds a mailbox
    const settled = await settle(env, (s) => leaks(before, s, env.users.length + 1));
    after = settled.snapshot;
    failures.push(
      ...settled.problems.map(
        (p) => `${p} (still so ${(settled.waitedMs / 1000).toFixed(0)} s after the load)`,
      ),
    );
  }
  return {
    name: sc.name,
    fault: sc.fault,
    counts,
    lost: check.lost.length,
    abandonedDelivered: check.abandonedDelivered.length,
    recoverySec: recovered,
    notReady: readiness.notReady,
    readyPolls: readiness.polls,
    notReadyWhy: readiness.why,
    readySlow: readiness.slow,
    before,
    after,
    failures,
    pass: failures.length === 0,
  };
}
