// What the chaos suite measures on the proxy between and during scenarios: open file descriptors,
// client and upstream connections (the proxy's own gauges and the simulator's count), readiness.
import { readdir } from 'node:fs/promises';
import type { BenchEnv } from '../harness/env.js';
import { promSum } from '../harness/prom.js';

export interface Snapshot {
  fds: number;
  clientConnections: number;
  /** the proxy's upstream_connections gauge (idle + busy) */
  upstream: number;
  /** connections the simulator has open (what really exists on the upstream side) */
  simOpen: number;
  /** the proxy's in-flight gauges: messages being relayed, message bytes held */
  inflightMessages: number;
  inflightBytes: number;
}

export async function countFds(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

export async function snapshot(env: BenchEnv): Promise<Snapshot> {
  const text = await (await fetch(`http://127.0.0.1:${env.proxyHttpPort}/metrics`)).text();
  const stats = (await env.simStats(false)) as { connections?: { open?: number } };
  return {
    fds: await countFds(env.proxyPid),
    clientConnections: promSum(text, 'xoauth2_proxy_smtp_connections_active') ?? 0,
    upstream: promSum(text, 'xoauth2_proxy_upstream_connections') ?? 0, // absent until the first connect
    simOpen: stats.connections?.open ?? -1,
    inflightMessages: promSum(text, 'xoauth2_proxy_inflight_messages') ?? 0,
    inflightBytes: promSum(text, 'xoauth2_proxy_inflight_bytes') ?? 0,
  };
}

/**
 * Wait until the proxy is quiet: no client connection left, and the simulator sees no more
 * upstream connections than the proxy's pool holds (closing ones have finished closing).
 */
export async function settle(env: BenchEnv, timeoutMs = 15_000): Promise<Snapshot> {
  const deadline = Date.now() + timeoutMs;
  let s = await snapshot(env);
  while (Date.now() < deadline && (s.clientConnections > 0 || s.simOpen > s.upstream)) {
    await new Promise((r) => setTimeout(r, 200));
    s = await snapshot(env);
  }
  await new Promise((r) => setTimeout(r, 300));
  return snapshot(env);
}

/** Polls /readyz until stopped; counts answers other than 200. */
export function pollReady(port: number, everyMs = 200): { stop(): { polls: number; notReady: number } } {
  let polls = 0;
  let notReady = 0;
  let running = true;
  const loop = async () => {
    while (running) {
      try {
        const r = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2000) });
        await r.arrayBuffer();
        if (r.status !== 200) notReady++;
      } catch {
        notReady++;
      }
      polls++;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  };
  void loop();
  return {
    stop() {
      running = false;
      return { polls, notReady };
    },
  };
}
