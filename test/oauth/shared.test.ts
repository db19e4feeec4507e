// Shared mode (several instances on one Coordinator, as workers or Redis): one refresh per mailbox
// however many instances ask, a rotation that never forks, a dead grant seen by all.
import { afterEach, describe, expect, it } from 'vitest';
import { InProcessHub } from '../../src/coordination/in-process.js';
import { silentLogger } from '../../src/shared/log.js';
import { expectSmtpError } from '../helpers/expect-rejection.js';
import { useTokenServer, type Handler } from '../helpers/token-server.js';
import { sleep, until } from '../helpers/wait.js';
import { Harness, account, provider } from './helpers.js';

const startTokenServer = useTokenServer();
const h = new Harness();
afterEach(() => h.cleanup());

/**
 * A strict provider: every grant rotates the refresh token; presenting a retired one revokes the
 * whole grant (RFC 9700 4.14.2), so a fork would be fatal.
 */
function strictProvider(lifetimeSec = 3600) {
  const live = new Map<string, string>(); // family -> current refresh token
  const retired = new Set<string>();
  const revoked = new Set<string>();
  let n = 0;
  const handler: Handler = async (req) => {
    const rt = req.params.get('refresh_token') ?? '';
    const family = rt.split('~')[0]!;
    await sleep(20); // long enough for concurrent askers to overlap
    if (revoked.has(family)) return { status: 400, body: { error: 'invalid_grant' } };
    if (retired.has(rt)) {
      revoked.add(family);
      return { status: 400, body: { error: 'invalid_grant', error_description: 'reuse detected' } };
    }
    const cur = live.get(family) ?? family;
    if (rt !== cur) return { status: 400, body: { error: 'invalid_grant' } };
    retired.add(rt);
    const next = `${family}~${++n}`;
    live.set(family, next);
    return { body: { access_token: `at-${n}`, expires_in: lifetimeSec, refresh_token: next } };
  };
  return { handler, revoked };
}

function instances(count: number, url: string, lifetimeMs?: number) {
  const store = h.store();
  const hub = new InProcessHub({ store, log: silentLogger });
  return Array.from({ length: count }, (_, i) => {
    const member = hub.member(`i${i}`);
    h.closers.unshift(() => void member.close());
    const { tm, metrics } = h.manager({
      store,
      shared: member,
      ...(lifetimeMs !== undefined ? { refreshAheadMs: lifetimeMs } : {}),
    });
    tm.setAccounts([account('a@x.com', provider(url), { refreshToken: 'rt-a' })]);
    return { tm, metrics, member };
  });
}

describe('token manager, shared mode', () => {
  it('three instances asking at once: one token request, one rotation, the same token everywhere', async () => {
    const p = strictProvider();
    const srv = await startTokenServer(p.handler);
    const all = instances(3, srv.url);
    const tokens = await Promise.all(all.map(({ tm }) => tm.getToken('a@x.com')));
    expect(new Set(tokens).size).toBe(1);
    expect(srv.requests).toHaveLength(1);
    expect(all.map(({ tm }) => tm.status('a@x.com').refreshes).reduce((a, b) => a + b)).toBe(1);
    expect(p.revoked.size).toBe(0);
  });

  it('after the token is rejected upstream, the next refresh uses the latest rotation (no reuse)', async () => {
    const p = strictProvider();
    const srv = await startTokenServer(p.handler);
    const [a, b] = instances(2, srv.url);
    const first = await a!.tm.getToken('a@x.com');
    expect(await b!.tm.getToken('a@x.com')).toBe(first);
    // b's upstream refuses it: b refreshes with rt-a~1 (the rotation a stored), not rt-a
    b!.tm.invalidate('a@x.com', first);
    const second = await b!.tm.getToken('a@x.com');
    expect(second).not.toBe(first);
    a!.tm.invalidate('a@x.com', first);
    expect(await a!.tm.getToken('a@x.com')).toBe(second);
    expect(srv.requests.map((r) => r.params.get('refresh_token'))).toEqual(['rt-a', 'rt-a~1']);
    expect(p.revoked.size).toBe(0);
  });

  it('proactive refreshes of short-lived tokens: one request per lifetime across instances', async () => {
    const p = strictProvider(2);
    const srv = await startTokenServer(p.handler);
    const all = instances(3, srv.url, 60_000);
    await Promise.all(all.map(({ tm }) => tm.getToken('a@x.com')));
    await sleep(5_200);
    // 2 s tokens renewed ahead: about 5.2 / (2 - ahead) requests, but never one per instance
    const n = srv.requests.length;
    expect(n).toBeGreaterThanOrEqual(3);
    expect(n).toBeLessThanOrEqual(5);
    expect(p.revoked.size).toBe(0);
    const now = await Promise.all(all.map(({ tm }) => tm.getToken('a@x.com')));
    expect(new Set(now).size).toBe(1);
  }, 15_000);

  it("one instance's dead grant puts the mailbox in needs_reauth on the others too", async () => {
    const srv = await startTokenServer(() => ({ status: 400, body: { error: 'invalid_grant' } }));
    const [a, b] = instances(2, srv.url);
    await expectSmtpError(a!.tm.getToken('a@x.com'));
    await until(() => b!.tm.status('a@x.com').state === 'needs_reauth');
    const err = await expectSmtpError(b!.tm.getToken('a@x.com'));
    expect(err.reply.enhanced).toBe('4.7.0');
    expect(srv.requests).toHaveLength(1);
  });
});
