// The PROXY protocol v1 line (haproxy's proxy-protocol.txt 2.1): only a real IP address is taken.
import { describe, expect, it } from 'vitest';
import { MAX_PROXY_HEADER, parseProxyHeader } from '../../src/smtp/wire/proxy-header.js';

describe('parseProxyHeader', () => {
  it('TCP4 and TCP6: the source address and port', () => {
    expect(parseProxyHeader('PROXY TCP4 192.0.2.7 198.51.100.1 40000 25')).toEqual({
      ok: true,
      address: '192.0.2.7',
      port: 40000,
    });
    expect(parseProxyHeader('PROXY TCP6 2001:DB8::7 2001:db8::1 40001 587')).toEqual({
      ok: true,
      address: '2001:db8::7',
      port: 40001,
    });
  });

  it('a trailing CR (the line as read up to LF) and lower-case keywords are accepted', () => {
    expect(parseProxyHeader('PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r')).toMatchObject({
      ok: true,
      address: '192.0.2.7',
      port: 40000,
    });
    expect(parseProxyHeader('proxy tcp4 192.0.2.7 198.51.100.1 1 25')).toMatchObject({ ok: true, port: 1 });
  });

  it('UNKNOWN (a balancer health check) keeps the peer address', () => {
    expect(parseProxyHeader('PROXY UNKNOWN')).toEqual({ ok: true });
    expect(parseProxyHeader('PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535')).toEqual({
      ok: true,
    });
  });

  it('a port that is not 1-65535 is left out, the address still taken', () => {
    for (const p of ['0', '65536', 'x', '-1', '1.5', ''])
      expect(parseProxyHeader(`PROXY TCP4 192.0.2.7 198.51.100.1 ${p} 25`), p).toEqual({
        ok: true,
        address: '192.0.2.7',
        port: undefined,
      });
  });

  it('not a PROXY line, an unknown family or a source that is not an IP address: refused', () => {
    expect(parseProxyHeader('EHLO client.example')).toEqual({ ok: false, reason: 'not a PROXY header' });
    expect(parseProxyHeader('')).toMatchObject({ ok: false });
    expect(parseProxyHeader('PROXY UDP4 192.0.2.7 198.51.100.1 1 25')).toEqual({
      ok: false,
      reason: 'unknown PROXY protocol family',
    });
    expect(parseProxyHeader('PROXY')).toMatchObject({ ok: false, reason: 'unknown PROXY protocol family' });
    for (const src of ['host.example', '192.0.2.256', '192.0.2.7\r\n250 x', '<script>', ''])
      expect(parseProxyHeader(`PROXY TCP4 ${src} 198.51.100.1 1 25`), src).toEqual({
        ok: false,
        reason: 'invalid PROXY source address',
      });
  });

  it('the v1 header is at most 107 bytes', () => {
    expect(MAX_PROXY_HEADER).toBe(107);
    const longest =
      'PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n';
    expect(longest.length).toBeLessThanOrEqual(MAX_PROXY_HEADER);
    expect(parseProxyHeader(longest.slice(0, -2))).toMatchObject({ ok: true, port: 65535 });
  });
});
