// The web flows between their start and the provider's redirect back: held in memory, keyed by the
// random `state` the authorization URL carries, for a short time, at most `max` at once
// (docs/design.md, principle 1). Every operation is O(1) amortized: entries expire in insertion
// order (one TTL for all), so the oldest are dropped from the front of the Map.
//
// The Map is keyed by a SHA-256 of the state; the entry found is then compared with the received
// state in constant time (sameState), so neither the lookup nor the check leaks the state.
import { createHash } from 'node:crypto';
import { sameState } from '../oauth/grants/authorization-code.js';

export interface PendingFlow {
  state: string;
  /** PKCE code verifier (RFC 7636): never leaves the server */
  verifier: string;
  /** SHA-256 of the browser binding (a cookie set at the start): the flow finishes in that browser */
  bindingDigest: Buffer;
  email: string;
  provider: string;
  tenant?: string;
  redirectUri: string;
  /** who started it: an administrator, or the owner of this onboarding link */
  startedBy: { admin: true } | { linkId: string };
  startedAt: number;
}

export type TakenFlow =
  | { found: 'pending'; flow: PendingFlow }
  /** this state finished (or failed) a moment ago: a reload, or a replayed redirect */
  | { found: 'finished' }
  | { found: 'none' };

interface Entry {
  at: number;
  flow?: PendingFlow;
  /** the received state must equal this one (constant time) */
  state: string;
}

export const FLOW_TTL_MS = 10 * 60_000;
export const MAX_FLOWS = 1000;

const keyOf = (state: string) => createHash('sha256').update(state, 'utf8').digest('base64url');

export class FlowTable {
  private readonly entries = new Map<string, Entry>();
  private readonly ttlMs: number;
  private readonly max: number;
  private readonly now: () => number;

  constructor(opts: { ttlMs?: number; max?: number; now?: () => number } = {}) {
    this.ttlMs = opts.ttlMs ?? FLOW_TTL_MS;
    this.max = opts.max ?? MAX_FLOWS;
    this.now = opts.now ?? Date.now;
  }

  /** false when `max` flows are already waiting (the caller says "try again in a few minutes") */
  add(flow: PendingFlow): boolean {
    this.expire();
    if (this.entries.size >= this.max) return false;
    this.entries.set(keyOf(flow.state), { at: this.now(), flow, state: flow.state });
    return true;
  }

  /**
   * The flow of this state, removed: a state is answered once. What is left is a marker, for the
   * rest of the TTL, so a reload of the result page is told the flow already finished.
   */
  take(state: string): TakenFlow {
    this.expire();
    const key = keyOf(state);
    const e = this.entries.get(key);
    if (!e || !sameState(e.state, state)) return { found: 'none' };
    if (!e.flow) return { found: 'finished' };
    const flow = e.flow;
    // re-inserted at the end with a fresh time, which keeps the Map in expiry order
    this.entries.delete(key);
    this.entries.set(key, { at: this.now(), state });
    return { found: 'pending', flow };
  }

  get size(): number {
    this.expire();
    return this.entries.size;
  }

  private expire(): void {
    const cutoff = this.now() - this.ttlMs;
    for (const [key, e] of this.entries) {
      if (e.at > cutoff) break;
      this.entries.delete(key);
    }
  }
}
