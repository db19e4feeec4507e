// The client-facing listener on a real loopback socket, with a real Relay in front of a fake
// Deliverer: what a client sees on the wire, and what reaches the relay.
import { describe, expect, it } from 'vitest';
import { smtpReply, type ReplyCode, type ReplyArgs } from '../../src/shared/replies.js';
import { formatReply } from '../../src/shared/smtp-reply.js';
import { AuthThrottle } from '../../src/smtp/auth-throttle.js';
import { RawSmtp, rawInData } from '../tools/sim/helpers.js';
import { until } from '../helpers/wait.js';
import { ALICE, PASSWORD, metric } from '../relay/helpers.js';
import { plain, useSmtpListeners } from './helpers.js';

const start = useSmtpListeners();

/** The reply line of the catalogue entry `code`, as the wire carries it. */
const line = <C extends ReplyCode>(code: C, ...args: ReplyArgs<C>) => formatReply(smtpReply(code, ...args));

describe('client AUTH and the envelope', () => {
  it('AUTH PLAIN: a wrong password gets 535 5.7.8, the right one 235 (and the upstream side gets ready)', async () => {
    const { connect, metrics, deliverer } = await start();
    const c = await connect();
    expect((await c.cmd('EHLO client.test')).join('\n')).toMatch(/250[- ]AUTH PLAIN LOGIN/);
    expect(await c.cmd(`AUTH PLAIN ${plain(ALICE, 'wrong')}`)).toEqual([line('AUTH_INVALID')]);
    expect(await c.cmd(`AUTH PLAIN ${plain('nobody@example.com', PASSWORD)}`)).toEqual([
      line('AUTH_INVALID'),
    ]);
    expect(deliverer.prepared).toEqual([]);
    expect((await c.cmd(`AUTH PLAIN ${plain(ALICE, PASSWORD)}`))[0]).toMatch(/^235 /);
    expect(deliverer.prepared).toEqual([ALICE]);
    expect(await metric(metrics, 'auth_attempts_total', { result: 'failure' })).toBe(2);
    expect(await metric(metrics, 'auth_attempts_total', { result: 'success' })).toBe(1);
    c.close();
  });

  it('an address past the failed-AUTH limit is refused with 421 4.7.0 when it connects', async () => {
    const throttle = new AuthThrottle({ freeFailures: 5, refuseAfter: 2 });
    const { connect, port } = await start({}, { throttle });
    const c = await connect();
    await c.cmd('EHLO client.test');
    await c.cmd(`AUTH PLAIN ${plain(ALICE, 'wrong')}`);
    await c.cmd(`AUTH PLAIN ${plain(ALICE, 'wrong')}`);
    c.close();
    const again = await RawSmtp.connect({ host: '127.0.0.1', port });
    expect(await again.read()).toEqual([line('AUTH_THROTTLED')]);
    again.close();
  });

  it('MAIL before AUTH gets 530 5.7.0', async () => {
    const { connect } = await start();
    const c = await connect();
    await c.cmd('EHLO client.test');
    expect(await c.cmd(`MAIL FROM:<${ALICE}>`)).toEqual([line('AUTH_REQUIRED')]);
    c.close();
  });

  it('too many recipients get the catalogue reply (given by smtp-server from smtp.maxRecipients)', async () => {
    const { port } = await start({ maxRecipients: 1 });
    const d = await RawSmtp.connect({ host: '127.0.0.1', port });
    await d.read();
    await d.cmd('EHLO client.test');
    await d.cmd(`AUTH PLAIN ${plain(ALICE, PASSWORD)}`);
    await d.cmd(`MAIL FROM:<${ALICE}>`);
    expect((await d.cmd('RCPT TO:<r1@example.net>'))[0]).toMatch(/^250 /);
    expect(await d.cmd('RCPT TO:<r2@example.net>')).toEqual([line('TOO_MANY_RECIPIENTS')]);
    d.close();
  });
});

describe('DATA: the message reaches the relay as received', () => {
  it('the deliverer gets the bytes (dot-unstuffed) and the envelope; the client gets the upstream 250', async () => {
    const { port, deliverer, metrics } = await start();
    const c = await rawInData(port, ALICE, PASSWORD, 'r@example.net');
    c.write('Subject: t\r\n\r\n..a line starting with a dot\r\nbye\r\n.\r\n');
    expect(await c.read()).toEqual(['250 2.0.0 upstream: OK id=1']);
    expect(deliverer.deliveries).toHaveLength(1);
    const d = deliverer.deliveries[0]!;
    expect(d.bytes.toString()).toBe('Subject: t\r\n\r\n.a line starting with a dot\r\nbye\r\n');
    expect(d.envelope).toMatchObject({ from: ALICE, to: ['r@example.net'], size: d.bytes.length });
    expect(await metric(metrics, 'inflight_bytes')).toBe(0);
    c.close();
  });

  it('a message over maxMessageSize gets 552 5.3.4 and is not relayed', async () => {
    const { port, deliverer } = await start({ maxMessageSize: 100 });
    const c = await rawInData(port, ALICE, PASSWORD, 'r@example.net');
    c.write(`Subject: big\r\n\r\n${'x'.repeat(200)}\r\n.\r\n`);
    expect(await c.read()).toEqual([line('MESSAGE_TOO_BIG', 100)]);
    expect(deliverer.deliveries).toEqual([]);
    c.close();
  });

  it('a message past the in-flight byte budget gets 452 4.3.1 and is not relayed', async () => {
    const { port, deliverer, metrics } = await start({}, { maxInflightBytes: 1000 });
    const c = await rawInData(port, ALICE, PASSWORD, 'r@example.net');
    c.write(`Subject: big\r\n\r\n${'x'.repeat(2000)}\r\n.\r\n`);
    expect(await c.read()).toEqual([line('OVERLOADED')]);
    expect(deliverer.deliveries).toEqual([]);
    expect(await metric(metrics, 'inflight_bytes')).toBe(0);
    c.close();
  });

  it('while the budget is spent, a new transaction is refused at MAIL with 452 4.3.1', async () => {
    const { port, connect, metrics } = await start({}, { maxInflightBytes: 1000 });
    const holder = await rawInData(port, ALICE, PASSWORD, 'r@example.net');
    holder.write(`Subject: held\r\n\r\n${'x'.repeat(1500)}`);
    await until(async () => (await metric(metrics, 'inflight_bytes')) >= 1000);
    const c = await connect();
    await c.cmd('EHLO client.test');
    await c.cmd(`AUTH PLAIN ${plain(ALICE, PASSWORD)}`);
    expect(await c.cmd(`MAIL FROM:<${ALICE}>`)).toEqual([line('OVERLOADED')]);
    holder.write('\r\n.\r\n');
    expect(await holder.read()).toEqual([line('OVERLOADED')]);
    expect((await c.cmd(`MAIL FROM:<${ALICE}>`))[0]).toMatch(/^250 /);
    holder.close();
    c.close();
  });

  it('a client vanishing mid-DATA releases its reservation; nothing is relayed', async () => {
    const { port, deliverer, metrics } = await start();
    const c = await rawInData(port, ALICE, PASSWORD, 'r@example.net');
    c.write(`Subject: held\r\n\r\n${'x'.repeat(5000)}`);
    await until(async () => (await metric(metrics, 'inflight_bytes')) > 4000);
    c.close();
    await until(async () => (await metric(metrics, 'inflight_bytes')) === 0);
    expect(deliverer.deliveries).toEqual([]);
  });
});

describe('drain', () => {
  it('closes an idle connection with 421 4.3.2; a message in flight gets its reply first, then the 421', async () => {
    const { listeners, port, deliverer, connect } = await start();
    const idle = await connect();
    await idle.cmd('EHLO client.test');
    const busy = await rawInData(port, ALICE, PASSWORD, 'r@example.net');
    const release = deliverer.hold();
    busy.write('Subject: t\r\n\r\nhi\r\n.\r\n');
    await until(() => deliverer.deliveries.length === 1);
    const drained = listeners.drain();
    expect(await idle.read()).toEqual([line('SHUTTING_DOWN')]);
    release();
    expect(await busy.read()).toEqual(['250 2.0.0 upstream: OK id=1']);
    expect(await busy.read()).toEqual([line('SHUTTING_DOWN')]);
    await drained;
    await idle.closedPromise;
    await busy.closedPromise;
  });
});
