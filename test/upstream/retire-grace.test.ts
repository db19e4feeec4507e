// A connection due for retirement (maxMessagesPerConnection, maxAge) during a token-endpoint outage:
// it keeps carrying mail until a replacement can authenticate, within a bounded grace, instead of
// closing first and leaving the next messages to defer on the token error.
import { afterEach, describe, expect, it } from 'vitest';
import { SmtpError } from '../../src/shared/smtp-reply.js';
import { smtpError } from '../../src/shared/replies.js';
import type { TokenSource, UpstreamAccount } from '../../src/upstream/types.js';
import { FakeSmtpServer } from '../helpers/fake-smtp-server.js';
import { sleep, until } from '../helpers/wait.js';
import { GOOD_TOKEN, USER, account, env, makePools, msg } from './helpers.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** A token source whose endpoint can be switched off: it then fails the way the token manager does. */
class SwitchableTokens implements TokenSource {
  down = false;
  /** answers left before every further refresh never answers */
  answersBeforeHang = Infinity;
  async getToken(email: string): Promise<string> {
    if (this.answersBeforeHang-- <= 0) return new Promise<string>(() => {});
    if (this.down) throw smtpError('TOKEN_REFRESH_FAILED', email, 'token endpoint unreachable');
    return GOOD_TOKEN;
  }
  invalidate(): void {}
}

async function setup(over: Partial<UpstreamAccount>) {
  const tokens = new SwitchableTokens();
  const fake = await FakeSmtpServer.start();
  const pools = makePools(tokens);
  pools.setAccounts([account(fake.port, { maxConnections: 1, ...over })]);
  cleanup.push(
    () => fake.close(),
    () => pools.close(1000),
  );
  const send = () => pools.deliver(USER, env(), msg());
  /** the local failure a message got, or null when it was delivered */
  const deferral = () =>
    send().then(
      (r) => {
        expect(r.kind).toBe('delivered');
        return null;
      },
      (e: unknown) => {
        expect(e).toBeInstanceOf(SmtpError);
        return e as SmtpError;
      },
    );
  return { fake, pools, tokens, send, deferral };
}

describe('retiring a connection while the token endpoint is down', () => {
  it('keeps the spent connection carrying mail, then retires it once a replacement can authenticate', async () => {
    const { fake, tokens, deferral } = await setup({ maxMessagesPerConnection: 3, retireGraceMs: 60_000 });
    for (let i = 0; i < 2; i++) expect(await deferral()).toBeNull();
    tokens.down = true;
    // the third message spends the connection; the next ones still go out on it
    for (let i = 0; i < 3; i++) expect(await deferral()).toBeNull();
    expect(fake.conns.map((c) => c.messages)).toEqual([5]);
    expect(fake.conns[0].closed).toBe(false);
    tokens.down = false;
    expect(await deferral()).toBeNull();
    expect(fake.conns.map((c) => c.messages)).toEqual([5, 1]);
    await until(() => fake.conns[0].closed);
    expect(fake.conns[0].commands.at(-1)).toBe('QUIT');
  });

  it('retires it when the grace ends; the next messages defer with the token error', async () => {
    const { fake, tokens, deferral } = await setup({ maxMessagesPerConnection: 2, retireGraceMs: 300 });
    expect(await deferral()).toBeNull();
    tokens.down = true;
    expect(await deferral()).toBeNull(); // spent now: the grace starts
    expect(await deferral()).toBeNull();
    await sleep(350);
    const err = await deferral();
    expect(err?.code).toBe('TOKEN_REFRESH_FAILED');
    expect(err?.reply.code).toBe(451);
    expect(err?.reply.enhanced).toBe('4.4.3');
    await until(() => fake.conns[0].closed);
    expect(fake.conns[0].commands.at(-1)).toBe('QUIT');
    expect(fake.conns.map((c) => c.messages)).toEqual([3]);
    expect((await deferral())?.code).toBe('TOKEN_REFRESH_FAILED');
  });

  it('carries at most maxMessagesPerConnection more messages, however long the grace', async () => {
    const { fake, tokens, deferral } = await setup({ maxMessagesPerConnection: 2, retireGraceMs: 60_000 });
    tokens.down = false;
    expect(await deferral()).toBeNull();
    tokens.down = true;
    const outcomes: (string | null)[] = [];
    for (let i = 0; i < 5; i++) outcomes.push((await deferral())?.code ?? null);
    // messages 2 (the limit), 3 and 4 (the overrun) go out; then it retires
    expect(outcomes).toEqual([null, null, null, 'TOKEN_REFRESH_FAILED', 'TOKEN_REFRESH_FAILED']);
    expect(fake.conns.map((c) => c.messages)).toEqual([4]);
    await until(() => fake.conns[0].closed);
  });

  it('keeps a connection past maxAge no longer than twice maxAge', async () => {
    const { fake, tokens, deferral } = await setup({
      maxMessagesPerConnection: 100,
      maxAgeMs: 300,
      retireGraceMs: 60_000,
    });
    const born = Date.now();
    expect(await deferral()).toBeNull();
    tokens.down = true;
    await sleep(born + 400 - Date.now()); // past maxAge, within twice maxAge
    expect(await deferral()).toBeNull();
    expect(await deferral()).toBeNull();
    await sleep(born + 650 - Date.now()); // past twice maxAge
    expect((await deferral())?.code).toBe('TOKEN_REFRESH_FAILED');
    expect(fake.conns.map((c) => c.messages)).toEqual([3]);
    await until(() => fake.conns[0].closed);
  });

  it('a shutdown does not wait for the token answer that decides whether a spent connection stays', async () => {
    const { fake, pools, tokens, deferral } = await setup({ maxMessagesPerConnection: 1 });
    tokens.answersBeforeHang = 1; // the connection's own token; the question at its retirement hangs
    expect(await deferral()).toBeNull();
    const t0 = Date.now();
    await pools.close(200);
    expect(Date.now() - t0).toBeLessThan(1500);
    await until(() => fake.open === 0);
  });

  it('with the token endpoint up, retires at the limit exactly, as before', async () => {
    const { fake, deferral } = await setup({ maxMessagesPerConnection: 2, maxConnections: 3 });
    for (let i = 0; i < 5; i++) expect(await deferral()).toBeNull();
    expect(fake.conns.map((c) => c.messages)).toEqual([2, 2, 1]);
  });
});
