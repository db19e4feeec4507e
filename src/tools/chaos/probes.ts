// What the chaos suite measures on the proxy between and during scenarios: open file descriptors,
// client and upstream connections (the proxy's own gauges and the simulator's count), readiness.
// Each is polled until it settles, within a bound: one sample right after the load would catch
// connections still closing (the more so on a busy machine) and report a leak that is not there.
import { readdir, readFile, readlink } from 'node:fs/promises';
import type { BenchEnv } from '../harness/env.js';
import { promSum } from '../harness/prom.js';

export interface Snapshot {
  fds: number;
  /**
   * the proxy's pooled keep-alive connections to the token endpoint, and the ones our own probes
   * (/metrics, /readyz) hold open to its HTTP port: open fds too, but neither a leak nor the load's
   */
  tokenSockets: number;
  probeSockets: number;
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

/** The ports (local, remote) of the process's TCP sockets, from /proc (Linux). */
export async function tcpSockets(pid: number): Promise<{ local: number; remote: number }[]> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ''); // closed meanwhile
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m) inodes.add(m[1]!);
  }
  const out: { local: number; remote: number }[] = [];
  for (const table of ['tcp', 'tcp6']) {
    const text = await readFile(`/proc/${pid}/net/${table}`, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || !inodes.has(f[9]!)) continue;
      const port = (addr: string) => parseInt(addr.slice(addr.lastIndexOf(':') + 1), 16);
      out.push({ local: port(f[1]!), remote: port(f[2]!) });
    }
  }
  return out;
}

export async function snapshot(env: BenchEnv): Promise<Snapshot> {
  const text = await (await fetch(`http://127.0.0.1:${env.proxyHttpPort}/metrics`)).text();
  const stats = (await env.simStats(false)) as { connections?: { open?: number } };
  const tokenPort = Number(env.sim.http.slice(env.sim.http.lastIndexOf(':') + 1));
  const sockets = await tcpSockets(env.proxyPid);
  return {
    fds: await countFds(env.proxyPid),
    tokenSockets: sockets.filter((s) => s.remote === tokenPort).length,
    probeSockets: sockets.filter((s) => s.local === env.proxyHttpPort && s.remote !== 0).length,
    clientConnections: promSum(text, 'xoauth2_proxy_smtp_connections_active') ?? 0,
    upstream: promSum(text, 'xoauth2_proxy_upstream_connections') ?? 0, // absent until the first connect
    simOpen: stats.connections?.open ?? -1,
    inflightMessages: promSum(text, 'xoauth2_proxy_inflight_messages') ?? 0,
    inflightBytes: promSum(text, 'xoauth2_proxy_inflight_bytes') ?? 0,
  };
}

/** A settled proxy has no client left, no connection still closing, nothing counted in flight. */
export function unsettled(s: Snapshot): string[] {
  const out: string[] = [];
  if (s.clientConnections > 0) out.push(`${s.clientConnections} client connections left open`);
  if (s.simOpen > s.upstream)
    out.push(`the upstream has ${s.simOpen} connections open, the proxy's pool knows ${s.upstream}`);
  // with every client gone nothing may stay counted against the in-flight budgets (452 4.3.1)
  if (s.inflightMessages > 0 || s.inflightBytes > 0)
    out.push(
      `${s.inflightMessages} messages / ${s.inflightBytes} bytes still counted in flight with no client left`,
    );
  return out;
}

/**
 * Poll snapshots until `problems` finds none for two samples in a row, or `timeoutMs` passes; the
 * last snapshot and what was still wrong with it (empty when it settled).
 */
export async function settle(
  env: BenchEnv,
  problems: (s: Snapshot) => string[] = unsettled,
  timeoutMs = 20_000,
): Promise<{ snapshot: Snapshot; problems: string[]; waitedMs: number }> {
  const t0 = Date.now();
  let calm = 0;
  for (;;) {
    const s = await snapshot(env);
    const p = problems(s);
    calm = p.length ? 0 : calm + 1;
    if (calm >= 2 || Date.now() - t0 >= timeoutMs)
      return { snapshot: s, problems: p, waitedMs: Date.now() - t0 };
    await new Promise((r) => setTimeout(r, 250));
  }
}

export interface Readiness {
  polls: number;
  /** polls answered with something other than 200, or not at all */
  notReady: number;
  /** what those got, with counts: `503`, `no answer within 12 s`, `ECONNREFUSED`, ... */
  why: Record<string, number>;
  /** polls answered 200 only after the first 2 s (a busy machine, not a failed probe) */
  slow: number;
}

/**
 * Polls /readyz every `everyMs` until stopped. A poll not answered within 2 s is asked again at
 * once with 10 s more: a proxy that is up but starved of CPU answers late, a down one not at all,
 * and only the answer decides.
 */
export function pollReady(port: number, everyMs = 200): { stop(): Readiness } {
  const r: Readiness = { polls: 0, notReady: 0, why: {}, slow: 0 };
  let running = true;
  const ask = async (timeoutMs: number): Promise<number> => {
    const res = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.status;
  };
  const isTimeout = (err: unknown) => (err as Error).name === 'TimeoutError';
  const reason = (err: unknown) =>
    isTimeout(err)
      ? 'no answer within 12 s'
      : String(((err as Error).cause as NodeJS.ErrnoException | undefined)?.code ?? (err as Error).message);
  const loop = async () => {
    while (running) {
      let status: number | string;
      try {
        status = await ask(2000);
      } catch (err) {
        if (!isTimeout(err)) status = reason(err);
        else {
          status = await ask(10_000).catch(reason);
          if (status === 200) r.slow++;
        }
      }
      if (status !== 200) {
        r.notReady++;
        r.why[String(status)] = (r.why[String(status)] ?? 0) + 1;
      }
      r.polls++;
      await new Promise((ok) => setTimeout(ok, everyMs));
    }
  };
  void loop();
  return {
    stop() {
      running = false;
      return { ...r, why: { ...r.why } };
    },
  };
}
