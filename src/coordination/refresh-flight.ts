// One refresh of a mailbox's access token across every instance, in the order that keeps a rotating
// refresh token from forking (docs/design.md, principle 5, extended to several instances):
//
//   1. a token in the shared cache that is still good enough: use it, no refresh;
//   2. else take the refresh lock; whoever holds it refreshes, the others wait for its release and
//      go back to 1 (so N instances missing at once cost the provider one request);
//   3. the holder looks again (a refresh may have finished between its miss and its lock), then
//      refreshes with the latest rotation and stores the next one by compare-and-set under the
//      lock's fence before it uses anything: a holder that lost its lock meanwhile stores nothing
//      and goes back to 1, where the winner's token is waiting. A rotation the shared state cannot
//      take now is kept by the coordinator and written when it answers ('kept'): the provider has
//      retired the token used, so dropping the new one would leave only a retired token to present.
import type { Coordinator, RefreshLineage, StoredAccessToken } from './types.js';

export interface RefreshOutcome {
  accessToken: string;
  /** epoch ms */
  expiresAt: number;
  /** present when the provider rotated the refresh token */
  refreshToken?: string;
}

export interface RefreshFlightOptions {
  mailbox: string;
  /** the credentials fingerprint the cached token must carry */
  lineage?: string;
  /** the configured refresh token (the lineage of the rotations); undefined: the authorized one */
  configured: RefreshLineage;
  /** a cached token is used only if it stays valid at least this much longer */
  minValidityMs: number;
  /** never this one from the cache (the upstream just rejected it; its invalidation may be in flight) */
  rejected?: string;
  /** longer than one token request can take (a holder that pauses past it is fenced out) */
  lockTtlMs: number;
  /** give up waiting for another instance's refresh after this long */
  waitMs: number;
  /** the grant itself */
  refresh: (refreshToken: string) => Promise<RefreshOutcome>;
  /** a cache write failed (the token is still returned) */
  onCacheError?: (err: unknown) => void;
  /** wall clock, ms */
  now?: () => number;
}

export interface FlightResult {
  accessToken: string;
  expiresAt: number;
  /** false: another instance's refresh (or the cache) served it */
  refreshed: boolean;
  /** the refresh token that was used (the latest rotation, or the configured one) */
  refreshTokenUsed?: string;
}

/** An account without a refresh token in the config has none in the state either. */
export class NoRefreshToken extends Error {
  readonly code = 'NO_REFRESH_TOKEN';
  constructor(mailbox: string) {
    super(`no refresh token is stored for ${mailbox} (authorize it: accounts authorize)`);
    this.name = 'NoRefreshToken';
  }
}

/** Another instance holds the refresh for longer than `waitMs`. */
export class RefreshBusy extends Error {
  readonly code = 'REFRESH_BUSY';
  constructor(mailbox: string) {
    super(`another instance is refreshing the token of ${mailbox}`);
    this.name = 'RefreshBusy';
  }
}

export async function refreshOnce(coord: Coordinator, o: RefreshFlightOptions): Promise<FlightResult> {
  const now = o.now ?? Date.now;
  const deadline = now() + o.waitMs;
  const usable = (t: StoredAccessToken | undefined): t is StoredAccessToken =>
    t !== undefined && t.expiresAt - now() > o.minValidityMs && t.token !== o.rejected;
  for (;;) {
    const hit = await coord.getAccessToken(o.mailbox, o.lineage);
    if (usable(hit)) return { accessToken: hit.token, expiresAt: hit.expiresAt, refreshed: false };
    const lock = await coord.acquireRefreshLock(o.mailbox, o.lockTtlMs);
    if (!lock) {
      const left = deadline - now();
      if (left <= 0) throw new RefreshBusy(o.mailbox);
      await coord.waitForRefresh(o.mailbox, left);
      continue;
    }
    try {
      const again = await coord.getAccessToken(o.mailbox, o.lineage);
      if (usable(again)) return { accessToken: again.token, expiresAt: again.expiresAt, refreshed: false };
      const used = (await coord.getRefreshToken(o.mailbox, o.configured)) ?? o.configured;
      if (used === undefined) throw new NoRefreshToken(o.mailbox);
      const out = await o.refresh(used);
      if (out.refreshToken !== undefined && out.refreshToken !== used) {
        const r = await coord.rotateRefreshToken(o.mailbox, {
          configured: o.configured,
          used,
          next: out.refreshToken,
          fence: lock.fence,
        });
        if (r !== 'ok' && r !== 'kept') {
          if (now() >= deadline) throw new RefreshBusy(o.mailbox);
          continue; // fenced out or overtaken: the winner's token is in the cache (or on its way)
        }
      }
      await coord
        .putAccessToken(o.mailbox, out.accessToken, out.expiresAt, o.lineage)
        .catch((err: unknown) => o.onCacheError?.(err));
      return {
        accessToken: out.accessToken,
        expiresAt: out.expiresAt,
        refreshed: true,
        refreshTokenUsed: used,
      };
    } finally {
      await lock.release();
    }
  }
}
