// The behaviour every coordinator must show, run against each implementation: several coordinators
// that share one state (members of one in-process hub, or instances on one Redis) act as one.
import { afterEach, describe, expect, it } from 'vitest';
import { refreshOnce } from '../../src/coordination/refresh-flight.js';
import type { Coordinator, Lease } from '../../src/coordination/types.js';
import { sleep, waitFor } from '../helpers/wait.js';

export const LEASE_TTL_MS = 800;
export const RATE_VALIDITY_MS = 300;

export interface Fixture {
  /** a coordinator sharing state with every other one this fixture made */
  make(): Promise<Coordinator>;
  close(): Promise<void>;
}

const MB = 'mailbox@example.test';

async function takeAll(c: Coordinator, max: number, n: number): Promise<Lease[]> {
  const got = await Promise.all(Array.from({ length: n }, () => c.acquireLease(MB, max)));
  return got.filter((l): l is Lease => l !== undefined);
}

async function taken(c: Coordinator, limit: number, n: number): Promise<number> {
  const gate = c.rateGate(MB, limit);
  let ok = 0;
  for (let i = 0; i < n; i++) if (await gate.take()) ok++;
  return ok;
}

export function coordinatorContract(name: string, newFixture: () => Promise<Fixture>): void {
  describe(`${name}: coordinator contract`, () => {
    let fx: Fixture | undefined;
    const fixture = async () => (fx = await newFixture());
    afterEach(async () => {
      await fx?.close();
      fx = undefined;
    });

    it('never grants more than max connection leases across coordinators', async () => {
      const f = await fixture();
      const [a, b] = [await f.make(), await f.make()];
      const [la, lb] = await Promise.all([takeAll(a, 3, 5), takeAll(b, 3, 5)]);
      expect(la.length + lb.length).toBe(3);
      expect(await a.acquireLease(MB, 3)).toBeUndefined();
      expect(await b.acquireLease(MB, 3)).toBeUndefined();
      // another mailbox has its own slots
      expect(await a.acquireLease('other@example.test', 3)).toBeDefined();
    });

    it('frees a released slot at once and tells the other coordinators', async () => {
      const f = await fixture();
      const [a, b] = [await f.make(), await f.make()];
      const held = await takeAll(a, 2, 2);
      expect(held).toHaveLength(2);
      expect(await b.acquireLease(MB, 2)).toBeUndefined();
      const heard: string[] = [];
      b.onLeaseFreed((m) => heard.push(m));
      held[0]!.release();
      held[0]!.release(); // twice: still one slot
      expect(held[0]!.state).toBe('released');
      await waitFor(
        'b hears the release',
        () => heard,
        (h) => h.includes(MB),
        3000,
      );
      expect(await b.acquireLease(MB, 2)).toBeDefined();
      expect(await b.acquireLease(MB, 2)).toBeUndefined();
    });

    it('gives back the slots of a coordinator that died without releasing, after the lease TTL', async () => {
      const f = await fixture();
      const [a, b] = [await f.make(), await f.make()];
      expect(await takeAll(a, 2, 2)).toHaveLength(2);
      await a.close({ release: false });
      const t0 = Date.now();
      expect(await b.acquireLease(MB, 2)).toBeUndefined();
      const lease = await waitFor(
        'a dead slot to return',
        () => b.acquireLease(MB, 2),
        (l) => !!l,
        5000,
        50,
      );
      const waited = Date.now() - t0;
      expect(lease!.state).toBe('held');
      expect(waited).toBeLessThan(LEASE_TTL_MS + 2000);
      // a live holder keeps its lease past the TTL: the heartbeat renews it
      await sleep(LEASE_TTL_MS + 300);
      expect(await takeAll(b, 2, 2)).toHaveLength(1);
      expect(lease!.state).toBe('held');
    });

    it('lets exactly one of two concurrent rotations from the same refresh token win', async () => {
      const f = await fixture();
      const [a, b] = [await f.make(), await f.make()];
      const lock = (await a.acquireRefreshLock(MB, 5000))!;
      const w = { configured: 'configured-rt', used: 'configured-rt', fence: lock.fence };
      const results = await Promise.all([
        a.rotateRefreshToken(MB, { ...w, next: 'rotated-by-a' }),
        b.rotateRefreshToken(MB, { ...w, next: 'rotated-by-b' }),
      ]);
      expect(results.filter((r) => r === 'ok')).toHaveLength(1);
      expect(results.filter((r) => r === 'stale')).toHaveLength(1);
      const winner = results[0] === 'ok' ? 'rotated-by-a' : 'rotated-by-b';
      expect(await a.getRefreshToken(MB, 'configured-rt')).toBe(winner);
      expect(await b.getRefreshToken(MB, 'configured-rt')).toBe(winner);
      // the rotation chain goes on from the stored token, and a newly configured token starts over
      expect(await b.rotateRefreshToken(MB, { ...w, used: winner, next: 'third' })).toBe('ok');
      expect(await a.getRefreshToken(MB, 'configured-rt')).toBe('third');
      expect(await a.getRefreshToken(MB, 'newly-configured-rt')).toBeUndefined();
      await lock.release();
    });

    it('fences out a paused lock holder: after its lock expired and was granted again it cannot write', async () => {
      const f = await fixture();
      const [a, b, c] = [await f.make(), await f.make(), await f.make()];
      const la = (await a.acquireRefreshLock(MB, 200))!;
      expect(la).toBeDefined();
      expect(await b.acquireRefreshLock(MB, 5000)).toBeUndefined();
      await sleep(350); // a "pauses" past its TTL
      const lb = (await b.acquireRefreshLock(MB, 5000))!;
      expect(lb).toBeDefined();
      expect(lb.fence).toBeGreaterThan(la.fence);
      const base = { configured: 'configured-rt', used: 'configured-rt' };
      expect(await a.rotateRefreshToken(MB, { ...base, next: 'from-a', fence: la.fence })).toBe('fenced');
      // the stale holder's release does not free the new holder's lock
      await la.release();
      expect(await c.acquireRefreshLock(MB, 5000)).toBeUndefined();
      expect(await b.rotateRefreshToken(MB, { ...base, next: 'from-b', fence: lb.fence })).toBe('ok');
      expect(await c.getRefreshToken(MB, 'configured-rt')).toBe('from-b');
      // even after b's release, a's old fence stays fenced out
      await lb.release();
      expect(await a.rotateRefreshToken(MB, { ...base, used: 'from-b', next: 'late', fence: la.fence })).toBe(
        'fenced',
      );
    });

    it('rotates an authorized refresh token only while it is still the one stored', async () => {
      const f = await fixture();
      const [a, b] = [await f.make(), await f.make()];
      await a.putAuthorizedRefreshToken(MB, 'authorized-1');
      expect(await b.getRefreshToken(MB, undefined)).toBe('authorized-1');
      expect(await b.getRefreshToken(MB, 'configured-rt')).toBeUndefined(); // another lineage
      const lock = (await b.acquireRefreshLock(MB, 5000))!;
      const w = { configured: undefined, fence: lock.fence };
      expect(await b.rotateRefreshToken(MB, { ...w, used: 'authorized-1', next: 'authorized-2' })).toBe('ok');
      expect(await a.getRefreshToken(MB, undefined)).toBe('authorized-2');
      // a new authorization written meanwhile is never overwritten by the old grant's rotation
      await a.putAuthorizedRefreshToken(MB, 'authorized-new');
      expect(await b.rotateRefreshToken(MB, { ...w, used: 'authorized-2', next: 'late' })).toBe('stale');
      expect(await b.getRefreshToken(MB, undefined)).toBe('authorized-new');
      // nor does a rotation bring back an authorization that was removed
      await a.deleteAccount(MB);
      expect(await b.rotateRefreshToken(MB, { ...w, used: 'authorized-new', next: 'late' })).toBe('stale');
      expect(await b.getRefreshToken(MB, undefined)).toBeUndefined();
      await lock.release();
    });

    it('wakes the instances waiting for a refresh when the holder releases', async () => {
      const f = await fixture();
      const [a, b] = [await f.make(), await f.make()];
      const lock = (await a.acquireRefreshLock(MB, 10_000))!;
      const t0 = Date.now();
      const waited = b.waitForRefresh(MB, 8000).then(() => Date.now() - t0);
      await sleep(100);
      await lock.release();
      expect(await waited).toBeLessThan(3000);
      // nobody holds it: no wait at all
      const t1 = Date.now();
      await b.waitForRefresh(MB, 8000);
      expect(Date.now() - t1).toBeLessThan(1000);
      expect(await b.acquireRefreshLock(MB, 1000)).toBeDefined();
    });

    it('costs the provider one refresh for concurrent misses on three coordinators, and uses the rotation next', async () => {
      const f = await fixture();
      const cs = [await f.make(), await f.make(), await f.make()];
      const used: string[] = [];
      let n = 0;
      const refresh = async (rt: string) => {
        used.push(rt);
        await sleep(150);
        n++;
        return { accessToken: `access-${n}`, expiresAt: Date.now() + 3_600_000, refreshToken: `rt-${n}` };
      };
      const opts = {
        mailbox: MB,
        lineage: 'creds-1',
        configured: 'configured-rt',
        minValidityMs: 30_000,
        lockTtlMs: 5000,
        waitMs: 5000,
        refresh,
      };
      const results = await Promise.all(cs.flatMap((c) => [refreshOnce(c, opts), refreshOnce(c, opts)]));
      expect(used).toEqual(['configured-rt']);
      expect(new Set(results.map((r) => r.accessToken))).toEqual(new Set(['access-1']));
      expect(results.filter((r) => r.refreshed)).toHaveLength(1);
      // the token is rejected upstream: the next refresh uses the rotated refresh token
      await cs[1]!.invalidateAccessToken(MB, 'access-1');
      const next = await refreshOnce(cs[2]!, opts);
      expect(next).toMatchObject({ accessToken: 'access-2', refreshed: true, refreshTokenUsed: 'rt-1' });
      expect(await cs[0]!.getRefreshToken(MB, 'configured-rt')).toBe('rt-2');
    });

    it('shares the access-token cache, keyed by lineage, and invalidates only the named token', async () => {
      const f = await fixture();
      const [a, b] = [await f.make(), await f.make()];
      const exp = Date.now() + 3_600_000;
      expect(await b.getAccessToken(MB)).toBeUndefined();
      await a.putAccessToken(MB, 'token-1', exp, 'lineage-1');
      expect(await b.getAccessToken(MB, 'lineage-1')).toEqual({ token: 'token-1', expiresAt: exp });
      expect(await b.getAccessToken(MB, 'lineage-2')).toBeUndefined();
      await b.invalidateAccessToken(MB, 'an-older-token');
      expect(await a.getAccessToken(MB)).toMatchObject({ token: 'token-1' });
      await b.invalidateAccessToken(MB, 'token-1');
      expect(await a.getAccessToken(MB)).toBeUndefined();
      await a.putAccessToken(MB, 'token-2', exp);
      await a.invalidateAccessToken(MB);
      expect(await b.getAccessToken(MB)).toBeUndefined();
    });

    it('tells the other coordinators (not the sender) of account state and admin changes', async () => {
      const f = await fixture();
      const [a, b] = [await f.make(), await f.make()];
      const heardA: string[] = [];
      const heardB: string[] = [];
      a.onAccountsChanged(() => heardA.push('changed'));
      b.onAccountsChanged(() => heardB.push('changed'));
      a.onAccountState((m, s) => heardA.push(`${m}=${s}`));
      b.onAccountState((m, s) => heardB.push(`${m}=${s}`));
      a.announceAccountsChanged();
      await a.setAccountState(MB, 'needs_reauth', 'invalid_grant');
      await waitFor(
        'b hears both',
        () => heardB,
        (h) => h.length === 2,
        3000,
      );
      expect(heardB.sort()).toEqual(['changed', `${MB}=needs_reauth`]);
      expect(await b.getAccountState(MB)).toMatchObject({
        state: 'needs_reauth',
        lastError: 'invalid_grant',
      });
      await sleep(100);
      expect(heardA).toEqual([]);
      await b.deleteAccount(MB);
      expect(await a.getAccountState(MB)).toBeUndefined();
    });

    it('holds a mailbox to its messages per minute across coordinators', async () => {
      const f = await fixture();
      const [a, b] = [await f.make(), await f.make()];
      const first = (await taken(a, 10, 6)) + (await taken(b, 10, 6));
      expect(first).toBeLessThanOrEqual(10);
      // permits one coordinator took ahead and did not spend go back to the window when they lapse
      await sleep(RATE_VALIDITY_MS);
      let total = first;
      await waitFor(
        'the whole limit to be spent',
        async () => (total += (await taken(b, 10, 1)) + (await taken(a, 10, 1))),
        (t) => t >= 10,
        5000,
        50,
      );
      expect(total).toBe(10);
      expect((await taken(a, 10, 3)) + (await taken(b, 10, 3))).toBe(0);
      // the same gate while the limit is the same; a new limit is a new window
      expect(a.rateGate(MB, 10)).toBe(a.rateGate(MB, 10));
      expect(await taken(a, 20, 1)).toBe(1);
    });
  });
}
