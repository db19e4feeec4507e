// What must be global when several proxy instances serve the same mailboxes (issue scale-out): one
// interface, three implementations (in-process, the default; worker processes on one host; Redis).
//
// Shape rules, so every implementation fits the same callers:
// - Only the per-message operation (RateGate.take) may answer synchronously; everything else is a
//   Promise, so a remote implementation (Redis, or a worker asking the primary over IPC) can serve it.
// - Arguments and results are plain data (strings, numbers): they cross a process boundary as JSON.
// - Releasing a lease or a lock is fire-and-forget for the caller; the implementation owns retries.
// - When the shared state cannot be reached, operations that need the global truth (a refresh lock,
//   a rotation) reject with SharedStateUnavailable; the rest fall back to a safe local answer. A
//   rotation the provider has already made is the exception where it can be kept ('kept').
import type { StoredAccessToken } from '../state/store.js';

export type { StoredAccessToken };

/** An account's health as the token manager decided it (ok, error, needs_reauth...). */
export interface StoredAccountState {
  state: string;
  lastError?: string;
  /** epoch ms of the last change */
  updatedAt: number;
}

export type Unsubscribe = () => void;

/** Whether the state shared with other instances can be reached. */
export type Health = { state: 'ok' } | { state: 'degraded'; reason: string; since: number };

/** The reason the proxy shows on /readyz and the status page while Redis cannot be reached. */
export const SHARED_STATE_UNREACHABLE = 'shared state unreachable';

/** An operation needed the shared state and it cannot be reached: defer and try again later. */
export class SharedStateUnavailable extends Error {
  readonly code = 'SHARED_STATE_UNREACHABLE';
  constructor(what: string) {
    super(`${SHARED_STATE_UNREACHABLE}: cannot ${what}`);
    this.name = 'SharedStateUnavailable';
  }
}

export type LeaseState = 'held' | 'released' | 'lost';

/**
 * One of a mailbox's global connection slots. Held while its connection lives; renewed by the
 * coordinator's heartbeat (callers never renew); a lease whose instance dies expires after the TTL.
 * `lost`: the slot was given to someone else while this instance could not renew it (it was paused
 * past the TTL, or it is over its safe share after an outage): retire the connection after its
 * current message.
 */
export interface Lease {
  readonly mailbox: string;
  readonly id: string;
  readonly state: LeaseState;
  /** give the slot back (idempotent; no effect on a lost lease) */
  release(): void;
}

/**
 * Per-mailbox messages-per-minute across every instance. take() answers from a local allowance
 * when it can (synchronously: no I/O on the message path) and returns a Promise only when it has to
 * ask the shared state for more. false: over the limit (reply 4xx).
 */
export interface RateGate {
  readonly mailbox: string;
  readonly limit: number;
  take(): boolean | Promise<boolean>;
}

/** The right to refresh one mailbox's token; `fence` increases with every grant of the lock. */
export interface RefreshLock {
  readonly mailbox: string;
  readonly fence: number;
  /** release and wake the instances waiting for this refresh (idempotent) */
  release(): Promise<void>;
}

/**
 * A refresh token's lineage: the token configured in the accounts file (its rotations descend from
 * it), or undefined for an account whose refresh token was obtained by `accounts authorize` (or the
 * web onboarding) and lives in the state itself.
 */
export type RefreshLineage = string | undefined;

export interface RotationWrite {
  /** the lineage the rotation belongs to */
  configured: RefreshLineage;
  /** the refresh token that was sent to the provider */
  used: string;
  /** the one the provider returned */
  next: string;
  /** the fence of the lock held while refreshing */
  fence: number;
}

/**
 * ok: written. stale: the stored refresh token is no longer `used` (another instance rotated it);
 * fenced: the lock was granted to someone else since (this holder was paused or lost it). Either
 * way `next` is not stored and must not be used. kept: the shared state could not be reached after
 * the provider had already retired `used`; `next` is kept here and written there (the same
 * compare-and-set) before this instance counts as recovered, so it is used (Redis only).
 */
export type RotationResult = 'ok' | 'stale' | 'fenced' | 'kept';

export interface Coordinator {
  /** 'in-process' | 'redis' (and, with workers, 'ipc') */
  readonly kind: string;
  /** this instance's id in the shared state (owner of its leases and locks) */
  readonly instanceId: string;

  /** connect (Redis: starts degraded rather than failing when it cannot be reached) */
  start(): Promise<void>;
  /** release leases and locks (unless `release: false`, as a crash would), stop timers, disconnect */
  close(opts?: { release?: boolean }): Promise<void>;

  health(): Health;
  onHealth(listener: (health: Health) => void): Unsubscribe;

  // --- connection leases ---
  /** one of `max` global slots for `mailbox`, or undefined when all are held */
  acquireLease(mailbox: string, max: number, onLost?: (lease: Lease) => void): Promise<Lease | undefined>;
  /** a slot of `mailbox` was released somewhere: a waiter may try again (best effort; retry on a timer too) */
  onLeaseFreed(listener: (mailbox: string) => void): Unsubscribe;
  /**
   * another instance was refused a slot of `mailbox` (every one held) and this one holds more than
   * its fair part (all of them, or two more than the one refused): close an idle connection of it
   * now, or the next one released without a message waiting, so the slot goes where the mail is
   * (best effort; not every implementation announces it yet, hence optional)
   */
  onLeaseWanted?(listener: (mailbox: string) => void): Unsubscribe;

  // --- rate windows ---
  /** the mailbox's gate; the same gate (and history) while the limit stays the same */
  rateGate(mailbox: string, limit: number): RateGate;

  // --- access-token cache (sealed at rest) ---
  getAccessToken(mailbox: string, lineage?: string): Promise<StoredAccessToken | undefined>;
  putAccessToken(mailbox: string, token: string, expiresAt: number, lineage?: string): Promise<void>;
  /** forget the cached token; with `token`, only if it is still that one (a newer one stays) */
  invalidateAccessToken(mailbox: string, token?: string): Promise<void>;

  // --- one refresh in flight per mailbox, rotations that never fork ---
  /** the lock, or undefined when another instance holds it; rejects SharedStateUnavailable when degraded */
  acquireRefreshLock(mailbox: string, ttlMs: number): Promise<RefreshLock | undefined>;
  /**
   * another instance released a mailbox's refresh lock (it may have rotated the refresh token):
   * an implementation whose instances keep their own copies (Redis) announces it, so each reads the
   * rotation at once rather than at its next refresh (optional; in-process and IPC share one store)
   */
  onRefreshDone?(listener: (mailbox: string) => void): Unsubscribe;
  /** resolves when the current holder releases the lock, its TTL ends, or after `timeoutMs` */
  waitForRefresh(mailbox: string, timeoutMs: number): Promise<void>;
  /** the latest rotation descending from `configured`; undefined lineage: the authorized token */
  getRefreshToken(mailbox: string, configured: RefreshLineage): Promise<string | undefined>;
  /**
   * compare-and-set: store `next` only if `fence` is current and the stored token is still `used`
   * (a configured lineage with nothing stored yet: the fence alone decides); Redis: no fence at all
   * (its data was lost mid-refresh) lets the holder store, and an unreachable Redis gives 'kept'
   */
  rotateRefreshToken(mailbox: string, write: RotationWrite): Promise<RotationResult>;
  /** a new authorization (accounts authorize, web onboarding); rejects SharedStateUnavailable when degraded */
  putAuthorizedRefreshToken(mailbox: string, refreshToken: string): Promise<void>;

  // --- account state ---
  getAccountState(mailbox: string): Promise<StoredAccountState | undefined>;
  setAccountState(mailbox: string, state: string, lastError?: string): Promise<void>;
  /** another instance changed a mailbox's state (e.g. needs_reauth) */
  onAccountState(listener: (mailbox: string, state: string) => void): Unsubscribe;
  /** the account was removed: forget its tokens and state */
  deleteAccount(mailbox: string): Promise<void>;

  // --- admin changes ---
  /** tell the other instances to reload the accounts (this instance has already applied the change) */
  announceAccountsChanged(): void;
  /** another instance changed the accounts, or shared state came back after an outage: reload */
  onAccountsChanged(listener: () => void): Unsubscribe;
}
