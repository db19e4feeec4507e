import { describe, expect, it } from 'vitest';
import { unusableSourceAddresses } from '../../src/accounts/source-address.js';
import type { AccountConfig } from '../../src/config/types.js';

const acct = (email: string, sourceAddress?: string): AccountConfig => ({
  email,
  provider: 'google',
  clientId: 'c',
  refreshToken: 'r',
  ...(sourceAddress ? { sourceAddress } : {}),
});

const interfaces = {
  lo: [
    { address: '127.0.0.1', family: 'IPv4' as const },
    { address: '::1', family: 'IPv6' as const },
  ],
  eth0: [
    { address: '192.0.2.10', family: 'IPv4' as const },
    { address: '2001:db8::10', family: 'IPv6' as const },
    { address: 'fe80::1%eth0', family: 'IPv6' as const },
  ],
};

describe('unusableSourceAddresses', () => {
  it('flags only addresses not on a local interface, with a reason naming the address', () => {
    const bad = unusableSourceAddresses(
      [
        acct('none@x.io'),
        acct('ok4@x.io', '192.0.2.10'),
        acct('ok6@x.io', '2001:0db8:0000:0000:0000:0000:0000:0010'), // another spelling of 2001:db8::10
        acct('linklocal@x.io', 'fe80::1'),
        acct('wild@x.io', '0.0.0.0'),
        acct('missing@x.io', '192.0.2.11'),
        acct('missing6@x.io', '2001:db8::11'),
      ],
      interfaces,
    );
    expect([...bad.keys()]).toEqual(['missing@x.io', 'missing6@x.io']);
    expect(bad.get('missing@x.io')).toMatch(/192\.0\.2\.11 is not assigned to any local network interface/);
    expect(bad.get('missing@x.io')).toMatch(/add it to an interface .*or fix sourceAddress/);
    expect(bad.get('missing6@x.io')).toMatch(/2001:db8::11\/128/);
  });

  it('with the real interfaces, loopback is usable and TEST-NET-3 is not', () => {
    const bad = unusableSourceAddresses([acct('lo@x.io', '127.0.0.1'), acct('far@x.io', '203.0.113.77')]);
    expect(bad.has('lo@x.io')).toBe(false);
    expect(bad.has('far@x.io')).toBe(true);
  });
});
