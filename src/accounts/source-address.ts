// An account's `sourceAddress` must be assigned to a local interface, or every upstream connect
// fails with EADDRNOTAVAIL. Checked at start-up / reload / `check` so the operator hears it once,
// by name, instead of as a stream of 451s.

import net from 'node:net';
import os from 'node:os';
import type { AccountConfig } from '../config/types.js';

type Interfaces = NodeJS.Dict<readonly Pick<os.NetworkInterfaceInfo, 'address' | 'family'>[]>;

/** email -> reason, for every account whose sourceAddress is not on a local interface. */
export function unusableSourceAddresses(
  accounts: readonly AccountConfig[],
  interfaces: Interfaces = os.networkInterfaces(),
): Map<string, string> {
  // BlockList compares addresses, not spellings: "::1" and "0:0:0:0:0:0:0:1" are the same.
  const local = new net.BlockList();
  for (const list of Object.values(interfaces)) {
    for (const info of list ?? []) {
      const addr = info.address.replace(/%.*$/, ''); // drop an IPv6 zone id (fe80::1%eth0)
      const type = net.isIPv6(addr) ? 'ipv6' : net.isIPv4(addr) ? 'ipv4' : undefined;
      if (type) local.addAddress(addr, type);
    }
  }
  const out = new Map<string, string>();
  for (const a of accounts) {
    const src = a.sourceAddress?.trim();
    if (!src) continue;
    const addr = src.replace(/%.*$/, '');
    const type = net.isIPv6(addr) ? 'ipv6' : net.isIPv4(addr) ? 'ipv4' : undefined;
    if (!type) {
      out.set(a.email, `sourceAddress "${src}" is not an IP address: fix sourceAddress`);
      continue;
    }
    if (addr === '0.0.0.0' || addr === '::') continue; // the wildcard: the kernel picks the address
    if (!local.check(addr, type)) {
      out.set(
        a.email,
        `sourceAddress ${src} is not assigned to any local network interface: add it to an interface ` +
          `(e.g. \`ip addr add ${src}/${type === 'ipv4' ? 32 : 128} dev eth0\`) or fix sourceAddress`,
      );
    }
  }
  return out;
}
