// Rotated refresh tokens: persisted before the access token is used, and reused after a restart
// unless the operator configured a different refresh token.
import { afterEach, describe, expect, it } from 'vitest';
import type { StateStore } from '../../src/state/store.js';
import { expectSmtpError } from '../helpers/expect-rejection.js';
import { useTokenServer, type TokenServer } from '../helpers/token-server.js';
import { sleep } from '../helpers/wait.js';
import { Harness, account, provider, rotatingProvider } from './helpers.js';

const startTokenServer = useTokenServer();
const h = new Harness();
afterEach(() => h.cleanup()); // before the token servers close (hooks run last-registered first)
let srv: TokenServer | undefined;

describe('refresh token rotation', () => {
  it('persists the rotated token before the access token is handed out', async () => {
    srv = await startTokenServer(rotatingProvider(new Set(['rt-1'])));
    const store = h.store();
    const events: string[] = [];
    const spied: StateStore = {
      ...store,
      putRotatedRefreshToken: (e, c, n) => {
        events.push('persist-rotated');
        store.putRotatedRefreshToken(e, c, n);
      },
      putAccessToken: (e, t, x) => {
        events.push('persist-access');
        store.putAccessToken(e, t, x);
      },
    };
    const { tm } = h.manager({ store: spied });
    tm.setAccounts([account('a@x.com', provider(srv.url), { refreshToken: 'rt-1' })]);
    const token = await tm.getToken('a@x.com').then((t) => {
      events.push('resolved');
      // by the time anyone can use the access token, the new refresh token is on disk
      expect(store.getRotatedRefreshToken('a@x.com', 'rt-1')).toBe('rt-1~1');
      return t;
    });
    expect(token).toBe('at-1');
    expect(events.indexOf('persist-rotated')).toBeLessThan(events.indexOf('resolved'));
    // the next refresh uses the rotated token
    tm.invalidate('a@x.com', token);
    expect(await tm.getToken('a@x.com')).toBe('at-2');
    expect(srv.requests.map((r) => r.params.get('refresh_token'))).toEqual(['rt-1', 'rt-1~1']);
    expect(store.getRotatedRefreshToken('a@x.com', 'rt-1')).toBe('rt-1~2');
  });

  it('does not use the access token when the rotated refresh token cannot be persisted', async () => {
    srv = await startTokenServer(rotatingProvider(new Set(['rt-1'])));
    const store = h.store();
    let broken = true;
    const flaky: StateStore = {
      ...store,
      putRotatedRefreshToken: (e, c, n) => {
        if (broken) throw new Error('disk full');
        store.putRotatedRefreshToken(e, c, n);
      },
    };
    const { tm } = h.manager({ store: flaky, backoffBaseMs: 1 });
    tm.setAccounts([account('a@x.com', provider(srv.url), { refreshToken: 'rt-1' })]);
    const err = await expectSmtpError(tm.getToken('a@x.com'));
    expect(err.reply.text).toMatch(/could not persist the rotated refresh token/);
    broken = false;
    await sleep(10); // past the 1 ms backoff
    // the rotated token was kept in memory (the old one is retired) and is persisted now
    expect(await tm.getToken('a@x.com')).toBe('at-2');
    expect(srv.requests.map((r) => r.params.get('refresh_token'))).toEqual(['rt-1', 'rt-1~1']);
    expect(store.getRotatedRefreshToken('a@x.com', 'rt-1')).toBe('rt-1~2');
  });

  it('survives reopening the store with a new manager', async () => {
    srv = await startTokenServer(rotatingProvider(new Set(['rt-1'])));
    const dir = h.tmpDir();
    const s1 = h.store(dir);
    const m1 = h.manager({ store: s1 });
    const acct = account('a@x.com', provider(srv.url), { refreshToken: 'rt-1' });
    m1.tm.setAccounts([acct]);
    m1.tm.invalidate('a@x.com', await m1.tm.getToken('a@x.com'));
    await m1.tm.getToken('a@x.com'); // rotated twice: rt-1~2 is the only valid one now
    m1.tm.close();
    s1.close();

    const { tm } = h.manager({ store: h.store(dir) });
    tm.setAccounts([acct]); // the config still says rt-1
    const cachedToken = await tm.getToken('a@x.com');
    expect(cachedToken).toBe('at-2'); // the stored access token, no request
    expect(srv.requests).toHaveLength(2);
    tm.invalidate('a@x.com', cachedToken);
    expect(await tm.getToken('a@x.com')).toBe('at-3');
    expect(srv.requests.map((r) => r.params.get('refresh_token'))).toEqual(['rt-1', 'rt-1~1', 'rt-1~2']);
    expect(tm.status('a@x.com').state).toBe('ok');
  });

  it('a newly configured refresh token overrides a stale rotated one (restart and reload)', async () => {
    const valid = new Set(['rt-1']);
    srv = await startTokenServer(rotatingProvider(valid));
    const dir = h.tmpDir();
    const s1 = h.store(dir);
    const m1 = h.manager({ store: s1 });
    const p = provider(srv.url);
    m1.tm.setAccounts([account('a@x.com', p, { refreshToken: 'rt-1' })]);
    await m1.tm.getToken('a@x.com'); // stored rotation: rt-1 -> rt-1~1

    // reload: the operator re-authorized the mailbox and configured rt-new
    valid.add('rt-new');
    m1.tm.setAccounts([account('a@x.com', p, { refreshToken: 'rt-new' })]);
    await m1.tm.getToken('a@x.com');
    expect(srv.requests.at(-1)!.params.get('refresh_token')).toBe('rt-new');
    m1.tm.close();
    s1.close();

    // restart with yet another configured token: neither stale rotation is used
    valid.add('rt-newer');
    const { tm } = h.manager({ store: h.store(dir) });
    tm.setAccounts([account('a@x.com', p, { refreshToken: 'rt-newer' })]);
    await tm.warmup();
    expect(srv.requests.at(-1)!.params.get('refresh_token')).toBe('rt-newer');
    expect(tm.status('a@x.com').state).toBe('ok');
  });

  it('an account removed while its refresh is in flight leaves no rotated token behind', async () => {
    const rotate = rotatingProvider(new Set(['rt-a', 'rt-b']));
    srv = await startTokenServer(async (req, n) => ({ ...(await rotate(req, n)), delayMs: 100 }));
    const store = h.store();
    const { tm } = h.manager({ store });
    const p = provider(srv.url);
    const b = account('b@x.com', p, { refreshToken: 'rt-b' });
    tm.setAccounts([account('a@x.com', p, { refreshToken: 'rt-a' }), b]);
    await tm.getToken('b@x.com');
    const inFlight = tm.getToken('a@x.com');
    await sleep(20); // the request is at the server
    tm.setAccounts([b]);
    expect(await inFlight).toMatch(/^at-/); // whoever asked is served
    expect(store.getRotatedRefreshToken('a@x.com', 'rt-a')).toBeUndefined();
    expect(store.getAccessToken('a@x.com')).toBeUndefined();
    expect(store.retainAccounts(['a@x.com', 'b@x.com'])).toEqual([]); // no row for it, b's intact
    expect(store.getRotatedRefreshToken('b@x.com', 'rt-b')).toMatch(/^rt-b~/);
  });
});
