// The PROXY protocol v1 header a load balancer sends before the client's first byte
// (haproxy's proxy-protocol.txt, 2.1): "PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n", at most
// 107 bytes. Only the client's address (and port) is taken from it; anything but an IP address
// there is refused, since the address ends up in replies, logs and trust decisions.
import net from 'node:net';

export const MAX_PROXY_HEADER = 107;

export type ProxyHeader = { ok: true; address?: string; port?: number } | { ok: false; reason: string };

/** Parse one header line (without its line break). */
export function parseProxyHeader(line: string): ProxyHeader {
  const parts = line.trim().split(' ');
  if (parts[0]?.toUpperCase() !== 'PROXY') return { ok: false, reason: 'not a PROXY header' };
  const family = (parts[1] ?? '').toUpperCase();
  if (family === 'UNKNOWN') return { ok: true }; // the balancer's own health check: keep the peer address
  if (family !== 'TCP4' && family !== 'TCP6') return { ok: false, reason: 'unknown PROXY protocol family' };
  const address = (parts[2] ?? '').toLowerCase();
  if (!net.isIP(address)) return { ok: false, reason: 'invalid PROXY source address' };
  const port = Number(parts[4]);
  return { ok: true, address, port: Number.isInteger(port) && port > 0 && port < 65536 ? port : undefined };
}
