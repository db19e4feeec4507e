import { describe, expect, it } from 'vitest';
import { plainPeerAddress } from '../../src/shared/net.js';

describe('plainPeerAddress', () => {
  it('gives an IPv4 peer of a dual-stack socket as IPv4, and anything else unchanged', () => {
    expect(plainPeerAddress('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(plainPeerAddress('192.0.2.7')).toBe('192.0.2.7');
    expect(plainPeerAddress('::1')).toBe('::1');
    expect(plainPeerAddress('::ffff:abcd')).toBe('::ffff:abcd');
  });
});
