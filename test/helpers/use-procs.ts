// The simulator and proxy processes of a test file, stopped for it: `useProcs()` registers the
// cleanup with vitest (after each test, or after all tests of the enclosing describe), so no test
// keeps its own `let sim; let proxy; afterEach(...)` and a failed test leaves no process behind.
import { afterAll, afterEach } from 'vitest';
import { runProxy, startProxy, startSim, type Proc, type ProxyProc, type SimProc } from './procs.js';

export interface Procs {
  /** `xoauth2-proxy simulate` with these flags (see startSim) */
  sim(args?: string[], withTls?: boolean): Promise<SimProc>;
  /** `xoauth2-proxy serve` on this config (see startProxy) */
  proxy(config: any, opts?: Parameters<typeof startProxy>[1]): Promise<ProxyProc>;
  /** `serve` again on the files of a proxy that was stopped (state and ports kept) */
  restart(p: ProxyProc, env?: Record<string, string>): Promise<ProxyProc>;
}

/**
 * Processes started through the returned functions are stopped (SIGTERM, awaited) after each test
 * (`'each'`, the default) or after the enclosing describe (`'all'`: call it inside the describe),
 * the last started first: the proxy goes before the simulator it relays to.
 */
export function useProcs(scope: 'each' | 'all' = 'each'): Procs {
  const running: Proc[] = [];
  (scope === 'each' ? afterEach : afterAll)(async () => {
    for (const p of running.splice(0).reverse()) await p.stop();
  });
  const keep = <P extends Proc>(p: P): P => {
    running.push(p);
    return p;
  };
  return {
    sim: (args, withTls) => startSim(args, withTls).then(keep),
    proxy: (config, opts) => startProxy(config, opts).then(keep),
    restart: (p, env) => runProxy(p.dir, p.configFile, p.smtpPort, p.httpPort, env).then(keep),
  };
}
