// One worker of `serve --workers N`: the normal proxy (runProxy), whose listeners node's cluster
// shares with the other workers, with the primary's hub as its shared state (IpcCoordinator) unless
// state.redis is set (then each worker is a Redis instance of its own). It answers the primary's
// control messages: reload, drain, readiness, metrics.
import process from 'node:process';
import { runProxy, type RunningProxy } from '../app/run.js';
import { IpcCoordinator } from '../coordination/ipc.js';
import { peerChannel } from '../coordination/ipc-channel.js';
import type { Logger } from '../shared/log.js';
import { WORKER_HTTP_ENV, isControl, type FromWorker, type ToWorker } from './protocol.js';

const send = (m: FromWorker) => {
  if (process.connected) process.send?.(m, undefined, {}, () => undefined);
};

/** Run this process as a worker until the primary says drain (or SIGTERM/SIGINT). */
export async function runWorker(configFile: string, log: Logger): Promise<void> {
  const httpPort = Number(process.env[WORKER_HTTP_ENV] ?? 0);
  let ipc: IpcCoordinator | undefined;
  let running: RunningProxy;
  try {
    running = await runProxy(configFile, log, {
      // state.redis: the default factory makes this worker a Redis instance
      coordinator: ({ config }) =>
        (ipc = new IpcCoordinator({ channel: peerChannel(process), log, instances: config.workers })),
      ...(httpPort > 0 ? { httpListen: { host: '127.0.0.1', port: httpPort } } : {}),
    });
  } catch (err) {
    send({ xow: 'failed', error: err instanceof Error ? err.message : String(err) });
    throw err;
  }
  const { proxy, http } = running;
  // with state.redis the factory above is not called; the proxy's own coordinator is in use
  void ipc;

  let draining: Promise<void> | undefined;
  const drain = (why: string) =>
    (draining ??= (async () => {
      log.info({ reason: why }, 'worker draining');
      try {
        await running.stop();
        await ipc?.close();
        log.flush?.();
      } catch (err) {
        log.error({ err: String(err) }, 'error during the worker drain');
        process.exitCode = 1;
      }
      // the primary counts an exit after its drain as done, not as a crash
      setTimeout(() => process.exit(), 50).unref();
    })());

  process.on('message', (m: unknown) => {
    if (!isControl(m)) return;
    const msg = m as ToWorker;
    switch (msg.xow) {
      case 'reload':
        void proxy
          .reload(msg.reason)
          .then((r) => send({ xow: 'reloaded', ok: r.ok, ...(r.error ? { error: r.error } : {}) }));
        return;
      case 'drain':
        void drain('primary');
        return;
      case 'ready?':
        {
          const degraded = proxy.degraded();
          send({
            xow: 'ready',
            id: msg.id,
            ready: !draining && proxy.isReady(),
            ...(degraded ? { degraded } : {}),
          });
        }
        return;
      case 'metrics?':
        void proxy.metrics.registry.getMetricsAsJSON().then(
          (metrics) => send({ xow: 'metrics', id: msg.id, metrics }),
          () => send({ xow: 'metrics', id: msg.id, metrics: [] }),
        );
    }
  });
  // a signal to the whole process group (Ctrl-C, systemd's control-group kill) reaches the workers too
  process.on('SIGTERM', () => void drain('SIGTERM'));
  process.on('SIGINT', () => void drain('SIGINT'));
  process.on('SIGHUP', () => void proxy.reload('SIGHUP'));

  send({ xow: 'up', smtp: proxy.smtpAddresses, ...(http ? { http: http.address } : {}) });
}
