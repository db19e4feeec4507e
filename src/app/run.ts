// A running proxy with its HTTP server: what `serve` (one process, or each of its workers) and the
// demo start and stop.
import { Proxy } from './proxy.js';
import type { Logger } from '../shared/log.js';
import type { HostPort } from '../config/types.js';
import type { CoordinatorFactory } from './coordinator.js';
import { adminBackend, startAdminHttp } from './admin-backend.js';
import { startHttpServer } from '../http/server.js';

export interface RunningProxy {
  proxy: Proxy;
  http?: { address: { host: string; port: number }; close(): Promise<void> };
  stop(): Promise<void>;
}

export interface RunProxyOptions {
  /** the shared state (a worker's: IpcCoordinator); default: Redis with state.redis, else in-process */
  coordinator?: CoordinatorFactory;
  /**
   * serve HTTP here instead of http.listen (a worker: the primary owns http.listen and forwards the
   * admin API and the status page to one worker's server on a loopback port)
   */
  httpListen?: HostPort;
}

/** Start the proxy and its HTTP server (used by `serve` and `demo`). */
export async function runProxy(
  configFile: string,
  log: Logger,
  opts: RunProxyOptions = {},
): Promise<RunningProxy> {
  const proxy = await Proxy.start({
    configFile,
    log,
    ...(opts.coordinator ? { coordinator: opts.coordinator } : {}),
  });
  let http: RunningProxy['http'];
  try {
    http = opts.httpListen ? await startHttpAt(proxy, opts.httpListen) : await startAdminHttp(proxy);
  } catch (err) {
    await proxy.drain();
    throw err;
  }
  return {
    proxy,
    http,
    async stop() {
      await proxy.drain();
      await http?.close();
    },
  };
}

/** The proxy's HTTP server (as startAdminHttp) on another address, if http.listen is configured. */
async function startHttpAt(proxy: Proxy, listen: HostPort): Promise<RunningProxy['http']> {
  if (!proxy.config.http.listen) return undefined;
  const { backend, close } = adminBackend(proxy);
  try {
    const server = await startHttpServer({
      listen,
      adminToken: proxy.config.http.adminToken,
      metrics: proxy.metrics,
      backend,
      log: proxy.log,
    });
    return {
      address: server.address,
      async close() {
        await server.close();
        close();
      },
    };
  } catch (err) {
    close();
    throw err;
  }
}
