// Host:port values: parsing, formatting, loopback checks; peer addresses.
import { isIPv4 } from 'node:net';

export interface HostPort {
  host: string;
  port: number;
}

/** "127.0.0.1:2525", "[::1]:25", ":2525" (loopback) -> HostPort. Throws with a clear message. */
export function parseHostPort(value: string, defaultHost = '127.0.0.1'): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value.trim());
  if (!m) throw new Error(`"${value}" is not HOST:PORT`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`"${value}": port ${port} is out of range`);
  return { host: m[1] ?? (m[2] || defaultHost), port };
}

export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** An IPv4 client on a dual-stack socket ("::ffff:a.b.c.d") as the IPv4 address it is. */
export function plainPeerAddress(address: string): string {
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}
