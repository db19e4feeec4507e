// The load generator: C persistent SMTP connections (connection i sends as users[i % users.length]),
// driven open loop at a fixed rate or closed loop as fast as possible, bounded by count and time.
//
// Open loop: message i is due at t0 + i/rate whatever happens; a message that finds no free
// connection waits in a queue, and its latency is measured from its due time, so a stall of the
// system under test shows up in the percentiles instead of silently lowering the offered load.
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type tls from 'node:tls';
import { LatencyRecorder, type LatencyMs } from './latency.js';
import { makeTemplate, type MessageTemplate } from './message.js';
import {
  BenchSmtpConnection,
  oneLine,
  SmtpClientError,
  type Security,
  type SmtpReply,
} from './smtp-client.js';

export type GeneratorAuth =
  | { mechanism: 'PLAIN'; password: string }
  | { mechanism: 'XOAUTH2'; token: (user: string) => string }
  | { mechanism: 'none' };

export interface GeneratorOptions {
  host: string;
  port: number;
  security?: Security;
  tlsOptions?: tls.ConnectionOptions;
  auth: GeneratorAuth;
  /** mailboxes; connection i sends as users[i % users.length] (MAIL FROM and AUTH user) */
  users: readonly string[];
  connections: number;
  /** msg/s, open loop; undefined = max */
  rate?: number;
  /** at least one of durationSec / count */
  durationSec?: number;
  /**
   * rate mode with durationSec: past durationSec, keep the load going until `done()` says so
   * (asked as each message falls due), for at most `maxDurationSec` in all
   */
  extend?: { done: () => boolean; maxDurationSec: number };
  count?: number;
  size: number;
  recipients: number;
  /** unique per run: goes into every Message-ID `<bench-N-RUNID@bench>` */
  runId: string;
  /** messages each connection sends (back to back) before measuring starts; default 0 */
  warmup?: number;
  /** called right before the measured phase starts (after connecting and warm-up) */
  onMeasureStart?: () => void;
  /** shown in progress lines */
  label?: string;
  quiet?: boolean;
  /** where progress lines go (default stderr) */
  progress?: (line: string) => void;
  /** connections opened at once (default 64) */
  connectConcurrency?: number;
  connectTimeoutMs?: number;
  replyTimeoutMs?: number;
  /** after the last message is due (or the duration ends), wait at most this long for replies (default 30 s) */
  drainTimeoutMs?: number;
  /** reconnect a lost connection after this delay (default 200 ms); at most `connections * 4` reconnects */
  reconnectDelayMs?: number;
  /** every measured message's outcome as it happens (latency as in latencyMs, for accepted ones) */
  onResult?: (r: {
    outcome: MessageOutcome;
    id: string;
    user: string;
    latencyMs: number;
    reply: string;
  }) => void;
}

/** accepted = 2xx, deferred = 4xx, rejected = 5xx, error = no final reply (connection failed) */
export type MessageOutcome = 'accepted' | 'deferred' | 'rejected' | 'error';

export interface EventLoopDelayMs {
  p50: number;
  p99: number;
  max: number;
}

export interface GeneratorResult {
  label: string;
  mode: 'rate' | 'max';
  /** offered load (msg/s) in rate mode, null in max mode */
  offeredPerSec: number | null;
  /** transactions started (MAIL sent) */
  sent: number;
  /** 2xx at end of DATA */
  accepted: number;
  /** 4xx */
  deferred: number;
  /** 5xx */
  rejected: number;
  /** connection failures: messages whose connection failed before the final reply, plus failed (re)connects */
  errors: number;
  /** messages that were due but never sent because the run ended (drain timeout / no connection) */
  unsent: number;
  /** t0 (after connecting and warm-up) to the last reply */
  durationSec: number;
  /** accepted / durationSec */
  throughputPerSec: number;
  /** accepted messages only: rate mode from the due time, max mode from the MAIL write */
  latencyMs: LatencyMs;
  /** Message-IDs of every accepted message, warm-up included (for the loss check) */
  acceptedIds: string[];
  warmupAccepted: number;
  /** reply first lines / error messages of failures, with counts (at most 20 distinct) */
  failures: Record<string, number>;
  connectionsOpened: number;
  reconnects: number;
  /** the generator's own event-loop delay during the measured phase: high = the generator was saturated */
  eventLoopDelayMs: EventLoopDelayMs;
  /** the generator process's CPU during the measured phase (100 = one core) */
  cpuPercent: number;
}

interface Slot {
  index: number;
  user: string;
  conn: BenchSmtpConnection | undefined;
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

/** monitorEventLoopDelay samples with a timer of this period and records the whole period. */
const ELD_RESOLUTION_MS = 5;
/** recorded ns -> delay beyond the sampling period, ms */
const eldMs = (ns: number) => (Number.isFinite(ns) ? round3(Math.max(0, ns / 1e6 - ELD_RESOLUTION_MS)) : 0);

export async function runGenerator(o: GeneratorOptions): Promise<GeneratorResult> {
  if (!o.users.length) throw new Error('runGenerator: no users');
  if (o.durationSec === undefined && o.count === undefined)
    throw new Error('runGenerator: give durationSec or count (every run is bounded)');
  const label = o.label ?? 'bench';
  const progress = o.progress ?? ((line: string) => process.stderr.write(line + '\n'));
  const template = makeTemplate({ size: o.size, recipients: o.recipients, runId: o.runId });
  const warmTemplate = makeTemplate({ size: o.size, recipients: o.recipients, runId: `${o.runId}-warmup` });
  const drainTimeoutMs = o.drainTimeoutMs ?? 30_000;
  const reconnectDelayMs = o.reconnectDelayMs ?? 200;
  const maxReconnects = o.connections * 4;

  const latency = new LatencyRecorder();
  const acceptedIds: string[] = [];
  const failures = new Map<string, number>();
  let sent = 0,
    accepted = 0,
    deferred = 0,
    rejected = 0,
    errors = 0,
    unsent = 0,
    warmupAccepted = 0,
    connectionsOpened = 0,
    reconnects = 0;
  const noteFailure = (key: string) => {
    if (failures.has(key) || failures.size < 20) failures.set(key, (failures.get(key) ?? 0) + 1);
  };

  const open = async (slot: Slot): Promise<BenchSmtpConnection | undefined> => {
    const auth =
      o.auth.mechanism === 'PLAIN'
        ? { mechanism: 'PLAIN' as const, user: slot.user, password: o.auth.password }
        : o.auth.mechanism === 'XOAUTH2'
          ? { mechanism: 'XOAUTH2' as const, user: slot.user, token: o.auth.token(slot.user) }
          : { mechanism: 'none' as const, user: slot.user };
    try {
      const conn = await BenchSmtpConnection.open({
        host: o.host,
        port: o.port,
        security: o.security,
        tlsOptions: o.tlsOptions,
        auth,
        connectTimeoutMs: o.connectTimeoutMs,
        replyTimeoutMs: o.replyTimeoutMs,
      });
      connectionsOpened++;
      return conn;
    } catch (err) {
      errors++;
      noteFailure(`connect: ${(err as Error).message}`);
      return undefined;
    }
  };

  // ---- connect ----------------------------------------------------------------------------------
  const slots: Slot[] = Array.from({ length: o.connections }, (_, i) => ({
    index: i,
    user: o.users[i % o.users.length]!,
    conn: undefined,
  }));
  {
    let next = 0;
    const worker = async () => {
      while (next < slots.length) {
        const slot = slots[next++]!;
        slot.conn = await open(slot);
      }
    };
    await Promise.all(Array.from({ length: Math.min(o.connectConcurrency ?? 64, slots.length) }, worker));
  }
  if (!slots.some((s) => s.conn)) {
    const why = [...failures.keys()][0] ?? 'unknown';
    throw new Error(
      `${label}: could not open any of ${o.connections} connections to ${o.host}:${o.port}: ${why}`,
    );
  }

  // ---- one transaction ------------------------------------------------------------------------
  type Outcome = MessageOutcome;
  const classify = (reply: SmtpReply): Outcome =>
    reply.code < 300 ? 'accepted' : reply.code < 500 ? 'deferred' : 'rejected';
  const transact = async (
    conn: BenchSmtpConnection,
    tpl: MessageTemplate,
    n: number,
  ): Promise<{ outcome: Outcome; id: string; reply: string; user: string }> => {
    const [head, tail] = tpl.parts(n, conn.user);
    const id = tpl.messageId(n);
    try {
      const reply = await conn.send(conn.user, tpl.recipients, head, tail);
      const outcome = classify(reply);
      const line = oneLine(reply);
      if (outcome !== 'accepted') noteFailure(line);
      return { outcome, id, reply: line, user: conn.user };
    } catch (err) {
      const why = err instanceof SmtpClientError ? `${err.code}: ${err.message}` : String(err);
      noteFailure(why);
      return { outcome: 'error', id, reply: why, user: conn.user };
    }
  };

  // ---- warm-up (not measured; ids still loss-checked) ------------------------------------------
  const warmup = o.warmup ?? 0;
  if (warmup > 0) {
    let w = 0;
    await Promise.all(
      slots.map(async (slot) => {
        for (let k = 0; k < warmup && slot.conn && slot.conn.state === 'ready'; k++) {
          const r = await transact(slot.conn, warmTemplate, w++);
          if (r.outcome === 'accepted') {
            warmupAccepted++;
            acceptedIds.push(r.id);
          }
        }
      }),
    );
  }

  // ---- measured phase -------------------------------------------------------------------------
  o.onMeasureStart?.();
  const eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
  eld.enable();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let tLast = t0;
  const rate = o.rate;
  const extend = rate !== undefined && o.durationSec !== undefined ? o.extend : undefined;
  const planned = (sec: number | undefined) =>
    rate !== undefined && sec !== undefined ? Math.max(1, Math.floor(sec * rate)) : Number.MAX_SAFE_INTEGER;
  // with `extend`, the run may last up to maxDurationSec; it ends earlier once done() holds
  let total = Math.min(o.count ?? Number.MAX_SAFE_INTEGER, planned(extend?.maxDurationSec ?? o.durationSec));
  const minimum = Math.min(total, planned(o.durationSec));
  const deadline = o.durationSec !== undefined ? t0 + o.durationSec * 1000 : Infinity;
  let finished = false; // no more messages will be started
  let stopped = false; // results are final
  let reconnecting = 0;
  let inflight = 0;
  let released = 0; // rate mode: messages due so far
  let dispatched = 0; // messages started (== sent)
  const idle: Slot[] = [];
  let wake: (() => void) | undefined; // resolves the "all done" wait
  const timers = new Set<NodeJS.Timeout>();
  const later = (fn: () => void, ms: number) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  const record = (
    { outcome, id, reply, user }: { outcome: Outcome; id: string; reply: string; user: string },
    startedAt: number,
  ) => {
    if (stopped) return; // counted as stuck at the hard stop
    const now = performance.now();
    tLast = now;
    o.onResult?.({ outcome, id, user, latencyMs: now - startedAt, reply });
    switch (outcome) {
      case 'accepted':
        accepted++;
        acceptedIds.push(id);
        latency.recordMs(now - startedAt);
        break;
      case 'deferred':
        deferred++;
        break;
      case 'rejected':
        rejected++;
        break;
      case 'error':
        errors++;
        break;
    }
  };

  const done = () => finished && inflight === 0 && (rate === undefined || dispatched >= released);
  const checkDone = () => {
    if (done()) wake?.();
  };

  const lost = (slot: Slot) => {
    // The connection failed: try again later while the run goes on, within the reconnect budget.
    slot.conn = undefined;
    if (finished || reconnects >= maxReconnects) return;
    reconnects++;
    reconnecting++;
    later(async () => {
      if (finished) {
        reconnecting--;
        return;
      }
      const conn = await open(slot);
      reconnecting--;
      if (!conn) return lost(slot);
      if (finished) {
        void conn.quit();
        return;
      }
      slot.conn = conn;
      ready(slot);
    }, reconnectDelayMs);
  };

  // rate mode: a free connection takes the oldest due message
  const dispatchRate = () => {
    while (dispatched < released && idle.length) {
      const slot = idle.shift()!;
      if (!slot.conn || slot.conn.state !== 'ready') {
        lost(slot);
        continue;
      }
      const n = dispatched++;
      const due = t0 + (n * 1000) / rate!;
      sent++;
      inflight++;
      const conn = slot.conn;
      void transact(conn, template, n).then((r) => {
        if (stopped) return;
        inflight--;
        record(r, due);
        const { outcome } = r;
        if (outcome === 'error' || conn.state !== 'ready') lost(slot);
        else idle.push(slot);
        dispatchRate();
        checkDone();
      });
    }
  };

  const tick = () => {
    const now = performance.now();
    released = Math.min(total, Math.floor(((now - t0) * rate!) / 1000) + 1);
    if (extend && released >= minimum && released < total && extend.done()) total = released;
    dispatchRate();
    if (released >= total) {
      finished = true;
      checkDone();
      return;
    }
    later(tick, Math.max(0, t0 + (released * 1000) / rate! - performance.now()));
  };

  // max mode: every connection sends back to back
  const claim = (): number => {
    if (finished) return -1;
    if (dispatched >= total || performance.now() >= deadline) {
      finished = true;
      return -1;
    }
    return dispatched++;
  };
  const loopMax = async (slot: Slot) => {
    for (;;) {
      const conn = slot.conn;
      if (!conn || conn.state !== 'ready') return lost(slot);
      const n = claim();
      if (n < 0) return checkDone();
      const startedAt = performance.now();
      sent++;
      inflight++;
      const r = await transact(conn, template, n);
      if (stopped) return;
      inflight--;
      record(r, startedAt);
      const { outcome } = r;
      if (outcome === 'error') {
        lost(slot);
        return checkDone();
      }
    }
  };

  function ready(slot: Slot) {
    if (rate !== undefined) {
      idle.push(slot);
      dispatchRate();
    } else void loopMax(slot);
  }

  // progress
  let lastSent = 0;
  let lastAt = t0;
  const progressTimer = o.quiet
    ? undefined
    : setInterval(() => {
        const now = performance.now();
        const perSec = ((sent - lastSent) * 1000) / (now - lastAt);
        lastSent = sent;
        lastAt = now;
        const queued = rate !== undefined ? released - dispatched : 0;
        progress(
          `[${label}] ${((now - t0) / 1000).toFixed(0)}s sent ${sent} (${perSec.toFixed(0)} msg/s) ` +
            `accepted ${accepted} deferred ${deferred} rejected ${rejected} errors ${errors} ` +
            `p99 ${latency.percentileMs(99).toFixed(2)} ms in-flight ${inflight} queued ${queued}`,
        );
      }, 1000);

  const allDone = new Promise<void>((resolve) => (wake = resolve));
  for (const slot of slots) {
    if (slot.conn) ready(slot);
    else lost(slot);
  }
  if (rate !== undefined) tick();
  // Every run ends by itself: at the latest drainTimeoutMs after the last message was due (rate mode)
  // or the duration ended (max mode). Max mode with only a count ends when the count is reached;
  // each reply is bounded by replyTimeoutMs and reconnects by their budget.
  const endBy = (rate !== undefined ? t0 + ((total - 1) * 1000) / rate : deadline) + drainTimeoutMs;
  let drainTimer: NodeJS.Timeout | undefined;
  const hardStop = new Promise<void>((resolve) => {
    if (Number.isFinite(endBy)) drainTimer = setTimeout(resolve, Math.max(0, endBy - performance.now()));
  });
  // If every connection is gone and no reconnect is pending, nothing more can happen.
  const watchdog = setInterval(() => {
    if (reconnecting === 0 && !slots.some((s) => s.conn)) {
      finished = true;
      wake?.();
    }
  }, 250);
  await Promise.race([allDone, hardStop]);
  finished = true;
  stopped = true;
  clearTimeout(drainTimer);
  clearInterval(watchdog);
  if (progressTimer) clearInterval(progressTimer);
  for (const t of timers) clearTimeout(t);
  timers.clear();
  eld.disable();
  const cpu = process.cpuUsage(cpu0);
  const wallMs = performance.now() - t0;

  // Whatever is still in flight after the drain timeout is a failure; due-but-unsent messages too.
  const stuck = inflight;
  errors += stuck;
  if (stuck) noteFailure(`no final reply within the drain timeout (${drainTimeoutMs} ms)`);
  if (rate !== undefined) unsent = Math.max(0, total - dispatched);
  else if (o.count !== undefined && o.durationSec === undefined) unsent = Math.max(0, o.count - dispatched);
  const durationSec = Math.max(1e-6, (tLast - t0) / 1000);
  const result: GeneratorResult = {
    label,
    mode: rate === undefined ? 'max' : 'rate',
    offeredPerSec: rate ?? null,
    sent,
    accepted,
    deferred,
    rejected,
    errors,
    unsent,
    durationSec: round3(durationSec),
    throughputPerSec: round3(accepted / durationSec),
    latencyMs: latency.summary(),
    acceptedIds,
    warmupAccepted,
    failures: Object.fromEntries(failures),
    connectionsOpened,
    reconnects,
    eventLoopDelayMs: {
      p50: eldMs(eld.percentile(50)),
      p99: eldMs(eld.percentile(99)),
      max: eldMs(eld.max),
    },
    cpuPercent: Math.round(((cpu.user + cpu.system) / 1000 / Math.max(1, wallMs)) * 1000) / 10,
  };
  if (stuck) for (const s of slots) s.conn?.destroy();
  else await Promise.all(slots.map((s) => s.conn?.quit()));
  return result;
}
