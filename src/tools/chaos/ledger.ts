// What happened to every message a chaos scenario sent, and the invariants checked against what
// the upstream received: a 250 is a promise that the upstream has the message; anything else must
// be an SMTP reply the client can act on; a message we abandoned mid-DATA must not be delivered.

export type Outcome =
  { kind: 'reply'; code: number; text: string } | { kind: 'no-reply'; why: string } | { kind: 'abandoned' };

export interface Entry {
  id: string;
  user: string;
  /** seconds since the scenario started, when the outcome was known */
  t: number;
  outcome: Outcome;
  /** client-side latency of a reply, when known */
  latencyMs?: number;
}

export interface LedgerCounts {
  messages: number;
  accepted: number;
  deferred: number;
  rejected: number;
  noReply: number;
  abandoned: number;
}

export interface LedgerCheck {
  /** got 250, never reached the upstream */
  lost: string[];
  /** abandoned by the client mid-DATA, yet delivered */
  abandonedDelivered: string[];
  /** neither a 250 nor a 4xx/5xx: the client cannot know what happened */
  noReply: Entry[];
}

export class Ledger {
  readonly entries: Entry[] = [];

  add(e: Entry): void {
    this.entries.push(e);
  }

  counts(): LedgerCounts {
    const c = { messages: 0, accepted: 0, deferred: 0, rejected: 0, noReply: 0, abandoned: 0 };
    for (const e of this.entries) {
      c.messages++;
      const o = e.outcome;
      if (o.kind === 'abandoned') c.abandoned++;
      else if (o.kind === 'no-reply') c.noReply++;
      else if (o.code < 300) c.accepted++;
      else if (o.code < 500) c.deferred++;
      else c.rejected++;
    }
    return c;
  }

  check(upstream: ReadonlySet<string>): LedgerCheck {
    const lost: string[] = [];
    const abandonedDelivered: string[] = [];
    const noReply: Entry[] = [];
    for (const e of this.entries) {
      const o = e.outcome;
      if (o.kind === 'abandoned') {
        if (upstream.has(e.id)) abandonedDelivered.push(e.id);
      } else if (o.kind === 'no-reply') noReply.push(e);
      else if (o.code < 300 && !upstream.has(e.id)) lost.push(e.id);
    }
    return { lost, abandonedDelivered, noReply };
  }
}

/**
 * Seconds from the end of the fault until delivery is healthy again: the start of the first 1 s
 * bucket from which every later bucket (with messages) has at least `minOk` of its messages
 * accepted within `maxLatencyMs`. null if it never recovers; 0 if it was healthy at once. Only
 * entries `counted` count (e.g. not the mailboxes a scenario broke on purpose).
 *
 * Every message answered after the fault counts, in the bucket of the second it was due (its
 * answer less its latency; one due during the fault goes in the first): bucketed by answer, the
 * few stragglers answered after the load stopped made a last bucket of their own, and one slow
 * straggler there was "no recovery".
 */
export function recoverySec(
  entries: readonly Entry[],
  faultEndSec: number,
  counted: (e: Entry) => boolean = () => true,
  opts: RecoveryOptions = {},
): number | null {
  const minOk = opts.minOk ?? 0.95;
  let from: number | null = null;
  const seconds = secondsAfter(entries, faultEndSec, counted, opts);
  for (const x of seconds) {
    if (x.ok / x.all >= minOk) from ??= x.sec;
    else from = null;
  }
  return from;
}

export interface RecoveryOptions {
  /** share of a second's messages that must be healthy (default 0.95) */
  minOk?: number;
  /** a 2xx slower than this (from its due time) is not healthy (default: no bound) */
  maxLatencyMs?: number;
}

export interface SecondAfter {
  /** seconds after the fault's end, by due time */
  sec: number;
  all: number;
  /** 2xx within the latency bound */
  ok: number;
  /** 2xx, but slower */
  slow: number;
  /** anything else: 4xx, 5xx, no reply */
  failed: number;
}

/** The seconds after the fault that had messages, as recoverySec judges them. */
export function secondsAfter(
  entries: readonly Entry[],
  faultEndSec: number,
  counted: (e: Entry) => boolean = () => true,
  { maxLatencyMs = Infinity }: RecoveryOptions = {},
): SecondAfter[] {
  const buckets = new Map<number, SecondAfter>();
  for (const e of entries) {
    if (e.t < faultEndSec || e.outcome.kind === 'abandoned' || !counted(e)) continue;
    const due = e.t - (e.latencyMs ?? 0) / 1000;
    const sec = Math.floor(Math.max(due, faultEndSec) - faultEndSec);
    const x = buckets.get(sec) ?? { sec, all: 0, ok: 0, slow: 0, failed: 0 };
    x.all++;
    if (e.outcome.kind !== 'reply' || e.outcome.code >= 300) x.failed++;
    else if ((e.latencyMs ?? 0) <= maxLatencyMs) x.ok++;
    else x.slow++;
    buckets.set(sec, x);
  }
  return [...buckets.values()].sort((a, b) => a.sec - b.sec);
}

/** `0 s: 98/100 ok (2 slow), 1 s: 100/100 ok, ...`: what a failed recovery saw, second by second. */
export function describeSeconds(seconds: readonly SecondAfter[]): string {
  return seconds
    .map((x) => {
      const bad = [x.slow ? `${x.slow} slow` : '', x.failed ? `${x.failed} failed` : ''].filter(Boolean);
      return `${x.sec} s: ${x.ok}/${x.all} ok${bad.length ? ` (${bad.join(', ')})` : ''}`;
    })
    .join(', ');
}
