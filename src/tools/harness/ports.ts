// A free loopback port for the tools and tests.
import fs from 'node:fs';
import net from 'node:net';

/**
 * The lowest port the kernel hands out to outgoing connections (Linux: ip_local_port_range).
 * A port picked by listen(0) comes from that same range, so any connect() elsewhere (the suite
 * makes thousands) can take it before it is bound; ports below it are taken only by listeners.
 */
function ephemeralLow(): number {
  try {
    const low = Number(
      fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0],
    );
    return Number.isInteger(low) && low > 1024 ? low : 0;
  } catch {
    return 0;
  }
}

const FLOOR = 10_000;
const low = ephemeralLow();

function tryListen(port: number, host: string): Promise<number | null> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(null));
    srv.listen(port, host, () => {
      const bound = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(bound));
    });
  });
}

/** A port that was free a moment ago on host (for tests, demo and bench). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  if (low - FLOOR >= 1000) {
    for (let i = 0; i < 20; i++) {
      const port = await tryListen(FLOOR + Math.floor(Math.random() * (low - FLOOR)), host);
      if (port !== null) return port;
    }
  }
  const port = await tryListen(0, host);
  if (port === null) throw new Error(`no free port on ${host}`);
  return port;
}
