import { BlockList, isIPv4 } from 'node:net';
import { plainPeerAddress } from '../shared/net.js';

/** Client addresses allowed to send without AUTH (smtp.trustedNetworks). */
export class TrustedNetworks {
  private readonly list = new BlockList();
  readonly empty: boolean;

  constructor(cidrs: readonly string[]) {
    for (const c of cidrs) {
      const [addr, bits] = c.split('/');
      const type = isIPv4(addr!) ? 'ipv4' : 'ipv6';
      if (bits === undefined) this.list.addAddress(addr!, type);
      else this.list.addSubnet(addr!, Number(bits), type);
    }
    this.empty = cidrs.length === 0;
  }

  has(address: string | undefined): boolean {
    if (this.empty || !address) return false;
    const a = plainPeerAddress(address);
    return this.list.check(a, isIPv4(a) ? 'ipv4' : 'ipv6');
  }
}
