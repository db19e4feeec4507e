// The primary's HTTP server on http.listen (serve --workers): what must describe the whole is
// answered here, the rest is one worker's.
// - /metrics: every worker's registry (prom-client JSON over IPC) aggregated with prom-client's
//   AggregatorRegistry (counters and gauges summed), plus the primary's own worker gauges;
// - /readyz: 200 only when every worker is up and ready, else 503 naming those that are not;
// - /healthz: the primary answers;
// - anything else (admin API, status page, onboarding): forwarded to the HTTP server of the first
//   worker that is up, on its loopback port. One worker rather than any: the web onboarding keeps a
//   flow's state in the worker that started it, and the admin API's edits are applied (and then
//   announced to the others) by the worker that received them.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';
import type { HostPort } from '../config/types.js';
import { listenHttp } from '../http/listen.js';
import { send, sendJson } from '../http/respond.js';
import type { Logger } from '../shared/log.js';
import type { Slot } from './primary.js';
import type { FromWorker, ToWorker } from './protocol.js';

const P = 'xoauth2_proxy_';
const METRICS_TIMEOUT_MS = 3000;
const READY_TIMEOUT_MS = 1000;

export interface PrimaryHttp {
  address: HostPort;
  workerRestarted(): void;
  close(): Promise<void>;
}

export interface PrimaryHttpOptions {
  listen: HostPort;
  log: Logger;
  slots: readonly Slot[];
  draining: () => boolean;
  ask: <T extends FromWorker>(
    slot: Slot,
    q: (id: number) => ToWorker,
    timeoutMs: number,
  ) => Promise<T | undefined>;
}

export async function startPrimaryHttp(opts: PrimaryHttpOptions): Promise<PrimaryHttp> {
  const { slots, log, ask } = opts;
  const own = new Registry();
  new Gauge({
    name: P + 'workers',
    help: 'Worker processes (serve --workers) by state (up, down)',
    labelNames: ['state'] as const,
    registers: [own],
    collect() {
      const up = slots.filter((s) => s.up).length;
      this.set({ state: 'up' }, up);
      this.set({ state: 'down' }, slots.length - up);
    },
  });
  const restarts = new Counter({
    name: P + 'worker_restarts_total',
    help: 'Workers restarted after they exited',
    registers: [own],
  });

  const metrics = async (): Promise<string> => {
    const answers = await Promise.all(
      slots.map((s) =>
        ask<Extract<FromWorker, { xow: 'metrics' }>>(
          s,
          (id) => ({ xow: 'metrics?', id }),
          METRICS_TIMEOUT_MS,
        ),
      ),
    );
    const per = answers.filter((a) => a !== undefined).map((a) => a.metrics);
    const merged = Registry.merge([AggregatorRegistry.aggregate(per), own]);
    return merged.metrics();
  };

  const readiness = async (): Promise<{ not: string[]; degraded: string[] }> => {
    if (opts.draining()) return { not: ['draining'], degraded: [] };
    const answers = await Promise.all(
      slots.map((s) =>
        ask<Extract<FromWorker, { xow: 'ready' }>>(s, (id) => ({ xow: 'ready?', id }), READY_TIMEOUT_MS),
      ),
    );
    const not: string[] = [];
    const degraded: string[] = [];
    slots.forEach((s, i) => {
      const a = answers[i];
      if (!s.worker || !s.up) not.push(`worker ${s.n} ${s.worker ? 'starting' : 'down'}`);
      else if (!a) not.push(`worker ${s.n} not answering`);
      else if (!a.ready) not.push(`worker ${s.n} not ready`);
      else if (a.degraded) degraded.push(`worker ${s.n}: ${a.degraded}`);
    });
    return { not, degraded };
  };

  const forward = (req: IncomingMessage, res: ServerResponse) => {
    const target = slots.find((s) => s.up && s.http)?.http;
    if (!target) return sendJson(res, 503, { error: 'no worker is up' });
    const up = http.request(
      { host: target.host, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.statusMessage, r.rawHeaders);
        r.pipe(res);
      },
    );
    up.on('error', (err) => {
      log.warn({ err: err.message }, 'HTTP: the worker did not answer');
      if (!res.headersSent) sendJson(res, 502, { error: 'the worker did not answer' });
      else res.destroy();
    });
    req.pipe(up);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const p = new URL(req.url ?? '/', 'http://localhost').pathname;
    const isGet = req.method === 'GET' || req.method === 'HEAD';
    if (p === '/metrics' || p === '/healthz' || p === '/readyz') {
      if (!isGet) return sendJson(res, 405, { error: 'method not allowed (allowed: GET)' }, { Allow: 'GET' });
      if (p === '/healthz') return send(res, 200, 'ok\n');
      if (p === '/metrics') return send(res, 200, await metrics(), own.contentType);
      // as one process's /readyz: degraded is still ready
      const { not, degraded } = await readiness();
      if (not.length > 0) return send(res, 503, `not ready: ${not.join('; ')}\n`);
      return send(res, 200, degraded.length ? `ready (degraded: ${degraded.join('; ')})\n` : 'ready\n');
    }
    forward(req, res);
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err }, `HTTP ${req.method} ${req.url?.split('?')[0]} failed`);
      if (!res.headersSent)
        sendJson(res, 500, { error: `internal error: ${(err as Error)?.message ?? String(err)}` });
      else res.destroy();
    });
  });
  const address = await listenHttp(server, opts.listen);
  return {
    address,
    workerRestarted: () => restarts.inc(),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 1000).unref();
      }),
  };
}
