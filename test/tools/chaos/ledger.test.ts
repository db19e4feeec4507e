import { describe, expect, it } from 'vitest';
import {
  describeSeconds,
  Ledger,
  recoverySec,
  secondsAfter,
  type Entry,
} from '../../../src/tools/chaos/ledger.js';

const ok = (id: string, t: number, latencyMs = 5): Entry => ({
  id,
  user: 'a@example.com',
  t,
  latencyMs,
  outcome: { kind: 'reply', code: 250, text: '250 2.0.0 OK' },
});
const tempfail = (id: string, t: number, user = 'a@example.com'): Entry => ({
  id,
  user,
  t,
  outcome: { kind: 'reply', code: 451, text: '451 4.4.1 upstream: connection lost' },
});

describe('chaos ledger', () => {
  it('finds a 250 the upstream never got, an abandoned message that was delivered, and a message without reply', () => {
    const l = new Ledger();
    l.add(ok('<a>', 1));
    l.add(ok('<b>', 1));
    l.add(tempfail('<c>', 1));
    l.add({ id: '<d>', user: 'x', t: 1, outcome: { kind: 'abandoned' } });
    l.add({ id: '<e>', user: 'x', t: 1, outcome: { kind: 'abandoned' } });
    l.add({ id: '<f>', user: 'x', t: 1, outcome: { kind: 'no-reply', why: 'ECONNECTION: closed' } });
    l.add({ id: '<g>', user: 'x', t: 1, outcome: { kind: 'reply', code: 550, text: '550 5.7.1 no' } });
    const check = l.check(new Set(['<a>', '<c>', '<e>']));
    expect(check.lost).toEqual(['<b>']);
    expect(check.abandonedDelivered).toEqual(['<e>']);
    expect(check.noReply.map((e) => e.id)).toEqual(['<f>']);
    expect(l.counts()).toEqual({
      messages: 7,
      accepted: 2,
      deferred: 1,
      rejected: 1,
      noReply: 1,
      abandoned: 2,
    });
    // a 4xx that the upstream happens to have is not a lie (the client retries; a duplicate, not a loss)
    expect(l.check(new Set(['<a>', '<b>'])).lost).toEqual([]);
  });

  it('measures recovery from the end of the fault to the first second after which every second is healthy', () => {
    const entries: Entry[] = [];
    // fault ends at t=10; seconds 10 and 11 still fail, 12 is healthy, 13 relapses, 14.. healthy
    for (const t of [10.1, 10.5, 11.2]) entries.push(tempfail(`<f${t}>`, t));
    entries.push(ok('<o12>', 12.5));
    entries.push(tempfail('<f13>', 13.5));
    for (let t = 14; t < 20; t++) entries.push(ok(`<o${t}>`, t + 0.5));
    expect(recoverySec(entries, 10)).toBe(4);
    // healthy from the start
    expect(recoverySec([ok('<x>', 10.2), ok('<y>', 11.5)], 10)).toBe(0);
    // never
    expect(recoverySec([ok('<x>', 10.2), tempfail('<y>', 11.5)], 10)).toBeNull();
    // slow 250s are not healthy yet when a latency bound is given
    const slow = [ok('<s1>', 10.5, 2600), ok('<s2>', 11.5, 900), ok('<s3>', 12.5, 20)];
    expect(recoverySec(slow, 10, undefined, { maxLatencyMs: 500 })).toBe(2);
    // stragglers answered after the load stopped count in the second they were due: one slow one
    // among a healthy second's messages is not a relapse of its own
    const tail = Array.from({ length: 40 }, (_, i) => ok(`<h${i}>`, 10.02 + i / 50, 20));
    tail.push(ok('<late>', 11.3, 700)); // due at 10.6, answered after the last due message
    expect(recoverySec(tail, 10, undefined, { maxLatencyMs: 500 })).toBe(0);
    tail.push(...Array.from({ length: 3 }, (_, i) => ok(`<l${i}>`, 11.4, 900))); // 4 of 44 slow: < 95 %
    expect(recoverySec(tail, 10, undefined, { maxLatencyMs: 500 })).toBeNull();
    // what a failed recovery saw, second by second
    expect(describeSeconds(secondsAfter(tail, 10, undefined, { maxLatencyMs: 500 }))).toBe(
      '0 s: 40/44 ok (4 slow)',
    );
    expect(describeSeconds(secondsAfter(entries, 10))).toBe(
      '0 s: 0/2 ok (2 failed), 1 s: 0/1 ok (1 failed), 2 s: 1/1 ok, 3 s: 0/1 ok (1 failed), 4 s: 1/1 ok, 5 s: 1/1 ok, 6 s: 1/1 ok, 7 s: 1/1 ok, 8 s: 1/1 ok, 9 s: 1/1 ok',
    );
    // a mailbox broken on purpose does not count
    const broken = [tempfail('<b1>', 10.5, 'revoked@example.com'), ok('<o>', 10.6)];
    expect(recoverySec(broken, 10, (e) => e.user !== 'revoked@example.com')).toBe(0);
  });
});
