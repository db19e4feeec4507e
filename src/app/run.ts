// A running proxy with its HTTP server: what `serve` and the demo start and stop.
import { Proxy } from './proxy.js';
import type { Logger } from '../shared/log.js';
import { startAdminHttp } from './admin-backend.js';

export interface RunningProxy {
  proxy: Proxy;
  http?: { address: { host: string; port: number }; close(): Promise<void> };
  stop(): Promise<void>;
}

/** Start the proxy and its HTTP server (used by `serve` and `demo`). */
export async function runProxy(configFile: string, log: Logger): Promise<RunningProxy> {
  const proxy = await Proxy.start({ configFile, log });
  let http: RunningProxy['http'];
  try {
    http = await startAdminHttp(proxy);
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
