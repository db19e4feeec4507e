// Proactive refresh with real time and 3 s tokens: tokens are renewed before they expire, once per
// expiry, and getToken never waits after the warm-up.
import { afterEach, describe, expect, it } from 'vitest';
import { useTokenServer, type TokenServer } from '../helpers/token-server.js';
import { sleep } from '../helpers/wait.js';
import { Harness, account, provider } from './helpers.js';

const startTokenServer = useTokenServer();
const h = new Harness();
afterEach(() => h.cleanup()); // before the token servers close (hooks run last-registered first)
let srv: TokenServer | undefined;

const LIFETIME_MS = 3000;

describe('proactive refresh', () => {
  it('renews 3 s tokens ahead of expiry, at most once per expiry, without making getToken wait', async () => {
    const expiry = new Map<string, number>();
    let n = 0;
    srv = await startTokenServer(() => {
      const token = `at-${++n}`;
      expiry.set(token, Date.now() + LIFETIME_MS);
      // a slow endpoint makes any wait on the hot path visible
      return { delayMs: 100, body: { access_token: token, expires_in: LIFETIME_MS / 1000 } };
    });
    const p = provider(srv.url);
    const users = ['a@x.com', 'b@x.com'];
    const { tm } = h.manager({ store: h.store(), refreshAheadMs: 60_000 });
    tm.setAccounts(users.map((u) => account(u, p)));
    expect(await tm.warmup()).toEqual({ ok: 2, failed: 0 });

    const until = Date.now() + 8000;
    let calls = 0;
    while (Date.now() < until) {
      for (const u of users) {
        // resolved before the next check phase of the event loop: no HTTP round trip was awaited
        const got = await Promise.race([
          tm.getToken(u),
          new Promise<undefined>((r) => setImmediate(() => r(undefined))),
        ]);
        expect(got, `getToken(${u}) waited`).toBeDefined();
        expect(expiry.get(got!)! - Date.now(), 'served an expired token').toBeGreaterThan(0);
        calls++;
      }
      await sleep(20);
    }
    expect(calls).toBeGreaterThan(200);

    for (const u of users) {
      const at = srv.requests.filter((r) => r.params.get('refresh_token') === `rt.${u}`).map((r) => r.at);
      // ahead = min(60 s, 3 s / 4) = 750 ms plus up to 300 ms jitter: a renewal every 1.95-2.25 s
      expect(at.length).toBeGreaterThanOrEqual(4);
      expect(at.length).toBeLessThanOrEqual(5);
      for (let i = 1; i < at.length; i++) {
        const gap = at[i]! - at[i - 1]!;
        expect(gap).toBeGreaterThanOrEqual(1900);
        expect(gap).toBeLessThan(LIFETIME_MS);
      }
      // the last renewal may still be in flight when the loop ends
      const st = tm.status(u);
      expect(['ok', 'refreshing']).toContain(st.state);
      expect(st.refreshes).toBeGreaterThanOrEqual(at.length - 1);
    }
  }, 20_000);
});
