import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import type { Account } from '../../src/accounts/registry.js';
import type { Relay } from '../../src/relay/relay.js';
import { smtpError } from '../../src/shared/replies.js';
import { formatReply, type SmtpReply } from '../../src/shared/smtp-reply.js';
import { ALICE, metric, testAccount, testRelay } from './helpers.js';

const envelope = (size: number) => ({ from: ALICE, to: ['r@example.net'], size });

/** One message through `relay`: reserved, its bytes added, then sent; resolves to the client's reply. */
async function relayMessage(
  relay: Relay,
  account: Account,
  text = 'Subject: hi\r\n\r\nhello\r\n',
): Promise<string> {
  const r = relay.reserve();
  const bytes = Buffer.from(text);
  r.add(bytes.subarray(0, 5));
  r.add(bytes.subarray(5));
  return formatReply(await relay.send(account, envelope(r.bytes), r, 'tx1'));
}

const upstream = (code: number, enhanced: string, text: string): SmtpReply => ({ code, enhanced, text });

describe('Relay.send: the client reply comes from the upstream verdict or a precise local failure', () => {
  it('delivered: the upstream 250 passed through; the deliverer got the bytes and envelope as received', async () => {
    const { relay, deliverer, metrics } = testRelay();
    const account = await testAccount();
    expect(await relayMessage(relay, account)).toBe('250 2.0.0 upstream: OK id=1');
    expect(deliverer.deliveries).toHaveLength(1);
    expect(deliverer.deliveries[0]!.email).toBe(ALICE);
    expect(deliverer.deliveries[0]!.bytes.toString()).toBe('Subject: hi\r\n\r\nhello\r\n');
    expect(deliverer.deliveries[0]!.envelope).toEqual(envelope(22));
    expect(await metric(metrics, 'messages_total', { provider: 'google', result: 'delivered' })).toBe(1);
  });

  it('an upstream 4xx is deferred, a 5xx rejected, each passed through with its codes', async () => {
    const { relay, deliverer, metrics } = testRelay();
    const account = await testAccount();
    deliverer.answer = () => ({
      kind: 'rejected',
      reply: upstream(451, '4.3.0', 'Temporary local problem'),
      failedRecipients: [],
    });
    expect(await relayMessage(relay, account)).toBe('451 4.3.0 upstream: Temporary local problem');
    deliverer.answer = () => ({
      kind: 'rejected',
      reply: upstream(550, '5.1.1', 'No such user\nSee https://example.invalid'),
      failedRecipients: [],
    });
    expect(await relayMessage(relay, account)).toBe(
      '550 5.1.1 upstream: No such user / See https://example.invalid',
    );
    expect(await metric(metrics, 'messages_total', { result: 'deferred' })).toBe(1);
    expect(await metric(metrics, 'messages_total', { result: 'rejected' })).toBe(1);
  });

  it('an SmtpError from the deliverer is the reply, counted as deferred', async () => {
    const { relay, deliverer, metrics } = testRelay();
    deliverer.answer = () => {
      throw smtpError('POOL_TIMEOUT', ALICE, 5000);
    };
    expect(await relayMessage(relay, await testAccount())).toBe(
      `451 4.7.0 No upstream connection for ${ALICE} became free within 5 s`,
    );
    expect(await metric(metrics, 'messages_total', { result: 'deferred' })).toBe(1);
  });

  it('any other error is a temporary 451 4.3.0, logged with the transaction id', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) });
    const { relay, deliverer } = testRelay({ log: pino({ level: 'error' }, sink) });
    deliverer.answer = () => {
      throw new TypeError('a bug');
    };
    expect(await relayMessage(relay, await testAccount())).toBe(
      '451 4.3.0 Internal error in the proxy, message not relayed; try again',
    );
    expect(lines.join('')).toMatch(/"txid":"tx1".*unexpected error while relaying/);
  });

  it('an account that cannot be relayed now gets 451 4.4.1 naming why; the deliverer is not called', async () => {
    const { relay, deliverer } = testRelay();
    const account = { ...(await testAccount()), unusable: 'sourceAddress 192.0.2.10 is not on this host' };
    expect(await relayMessage(relay, account)).toBe(
      `451 4.4.1 Mailbox ${ALICE} cannot be relayed now: sourceAddress 192.0.2.10 is not on this host`,
    );
    expect(deliverer.deliveries).toEqual([]);
  });
});

describe('the in-flight budget: reservations from DATA start to the reply', () => {
  it('counts bytes from the first chunk until the reply, and messages while they are relayed', async () => {
    const { relay, deliverer, metrics } = testRelay();
    const account = await testAccount();
    const open = deliverer.hold();
    const r = relay.reserve();
    r.add(Buffer.alloc(300));
    expect(await metric(metrics, 'inflight_bytes')).toBe(300);
    expect(await metric(metrics, 'inflight_messages')).toBe(0);
    const reply = relay.send(account, envelope(300), r, 'tx');
    await new Promise((res) => setImmediate(res));
    expect(await metric(metrics, 'inflight_bytes')).toBe(300);
    expect(await metric(metrics, 'inflight_messages')).toBe(1);
    expect(relay.inflightMessages).toBe(1);
    r.release(); // the client vanishing now changes nothing: the message is the relay's
    expect(await metric(metrics, 'inflight_bytes')).toBe(300);
    open();
    expect((await reply).code).toBe(250);
    expect(await metric(metrics, 'inflight_bytes')).toBe(0);
    expect(await metric(metrics, 'inflight_messages')).toBe(0);
  });

  it('refuses a message whose bytes pass the budget with 452 4.3.1, without relaying or counting it', async () => {
    const { relay, deliverer, metrics } = testRelay({ maxInflightBytes: 1000 });
    const account = await testAccount();
    const a = relay.reserve();
    a.add(Buffer.alloc(600));
    const b = relay.reserve();
    b.add(Buffer.alloc(300));
    expect(b.refused).toBe(false);
    b.add(Buffer.alloc(300)); // 1200 > 1000
    expect(b.refused).toBe(true);
    b.add(Buffer.alloc(500)); // not held once refused
    expect(await metric(metrics, 'inflight_bytes')).toBe(1200);
    expect(relay.overloaded()).toBe(true);
    expect(formatReply(await relay.send(account, envelope(b.bytes), b, 'tb'))).toBe(
      '452 4.3.1 Proxy busy: too many messages in flight, try again shortly',
    );
    expect(await metric(metrics, 'inflight_bytes')).toBe(600);
    expect(deliverer.deliveries).toEqual([]);
    expect(await metric(metrics, 'messages_total', { result: 'deferred' })).toBe(0);
    // the message that was under the budget still goes through
    expect((await relay.send(account, envelope(600), a, 'ta')).code).toBe(250);
    expect(await metric(metrics, 'inflight_bytes')).toBe(0);
    expect(relay.overloaded()).toBe(false);
  });

  it('a reservation taken while the budget is spent is refused however small the message', async () => {
    const { relay, metrics } = testRelay({ maxInflightBytes: 100 });
    const big = relay.reserve();
    big.add(Buffer.alloc(100)); // exactly the budget: accepted, but nothing more fits
    expect(big.refused).toBe(false);
    const late = relay.reserve();
    expect(late.refused).toBe(true);
    late.add(Buffer.alloc(1));
    expect(late.bytes).toBe(0);
    late.release();
    big.release();
    expect(await metric(metrics, 'inflight_bytes')).toBe(0);
  });

  it('the message budget: overloaded while maxInflightMessages are being relayed', async () => {
    const { relay, deliverer } = testRelay({ maxInflightMessages: 1 });
    const account = await testAccount();
    const open = deliverer.hold();
    const first = relay.reserve();
    const sending = relay.send(account, envelope(0), first, 't1');
    expect(relay.overloaded()).toBe(true);
    expect(relay.reserve().refused).toBe(true);
    open();
    await sending;
    expect(relay.overloaded()).toBe(false);
  });

  it('releasing twice, or after the reply, gives nothing back twice', async () => {
    const { relay, metrics } = testRelay();
    const account = await testAccount();
    const held = relay.reserve();
    held.add(Buffer.alloc(50));
    const gone = relay.reserve();
    gone.add(Buffer.alloc(70));
    gone.release();
    gone.release();
    expect(await metric(metrics, 'inflight_bytes')).toBe(50);
    const sent = relay.reserve();
    sent.add(Buffer.alloc(30));
    await relay.send(account, envelope(30), sent, 't');
    sent.release();
    expect(await metric(metrics, 'inflight_bytes')).toBe(50);
    held.release();
    expect(await metric(metrics, 'inflight_bytes')).toBe(0);
  });

  it('a released reservation is not relayed', async () => {
    const { relay, deliverer } = testRelay();
    const r = relay.reserve();
    r.add(Buffer.from('x'));
    r.release();
    expect((await relay.send(await testAccount(), envelope(1), r, 't')).code).toBe(451);
    expect(deliverer.deliveries).toEqual([]);
  });

  it('idle() resolves once the last message in flight has its reply', async () => {
    const { relay, deliverer } = testRelay();
    const open = deliverer.hold();
    const sending = relay.send(await testAccount(), envelope(0), relay.reserve(), 't');
    let idle = false;
    const waiting = relay.idle().then(() => (idle = true));
    await new Promise((res) => setImmediate(res));
    expect(idle).toBe(false);
    open();
    await sending;
    await waiting;
    expect(idle).toBe(true);
  });
});
