// One HTTP server's limits and its listen step, shared by the proxy's server (server.ts) and the
// workers' primary (workers/http.ts), so both keep the same slow-client bounds.
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HostPort } from '../shared/net.js';

/** Bound slow clients (headers 10 s, a request 30 s, idle keep-alive 5 s) and listen; the bound address. */
export async function listenHttp(server: http.Server, listen: HostPort): Promise<HostPort> {
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  return { host: addr.address, port: addr.port };
}
