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
 */
export function recoverySec(
  entries: readonly Entry[],
  faultEndSec: number,
  counted: (e: Entry) => boolean = () => true,
  { minOk = 0.95, maxLatencyMs = Infinity }: { minOk?: number; maxLatencyMs?: number } = {},
): number | null {
  const buckets = new Map<number, { ok: number; all: number }>();
  for (const e of entries) {
    if (e.t < faultEndSec || e.outcome.kind === 'abandoned' || !counted(e)) continue;
    const b = Math.floor(e.t - faultEndSec);
    const x = buckets.get(b) ?? { ok: 0, all: 0 };
    x.all++;
    if (e.outcome.kind === 'reply' && e.outcome.code < 300 && (e.latencyMs ?? 0) <= maxLatencyMs) x.ok++;
    buckets.set(b, x);
  }
  const keys = [...buckets.keys()].sort((a, b) => a - b);
  if (!keys.length) return null;
  let from: number | null = null;
  for (const k of keys) {
    const x = buckets.get(k)!;
    if (x.ok / x.all >= minOk) from ??= k;
    else from = null;
  }
  return from;
}
