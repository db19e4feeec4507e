// The primary of `serve --workers N` (src/workers/README.md): forks N workers with node:cluster
// (they share the SMTP listeners, round-robin), keeps the shared state (the InProcessHub on the
// embedded state store, served to each worker over IPC; with state.redis the workers share Redis
// instead), owns the public HTTP port, restarts crashed workers with backoff, passes SIGHUP on and
// drains every worker on SIGTERM/SIGINT.
import cluster, { type Worker } from 'node:cluster';
import net from 'node:net';
import type { Config, HostPort } from '../config/types.js';
import { loadCheckedConfig } from '../app/credentials.js';
import { InProcessHub } from '../coordination/in-process.js';
import { IpcHost } from '../coordination/ipc.js';
import { peerChannel } from '../coordination/ipc-channel.js';
import type { Logger } from '../shared/log.js';
import { openStateStore, type StateStore } from '../state/store.js';
import { startPrimaryHttp, type PrimaryHttp } from './http.js';
import { WORKER_HTTP_ENV, WORKER_SLOT_ENV, isControl, type FromWorker, type ToWorker } from './protocol.js';

/** restart delays: 0.5 s doubling to 30 s; a worker that ran this long resets the count */
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const HEALTHY_AFTER_MS = 30_000;
/** a worker that has not said `up` within this is taken for stuck and killed */
const START_TIMEOUT_MS = 60_000;

export interface Slot {
  /** 1..N, stable across restarts (names the worker in /readyz and the logs) */
  readonly n: number;
  worker?: Worker;
  /** its SMTP listeners (the same for every worker: cluster shares them), once up */
  smtp?: { address: HostPort; tls: boolean }[];
  /** its HTTP server (loopback), once up */
  http?: { host: string; port: number };
  httpPort: number;
  up: boolean;
  startedAt: number;
  failures: number;
  restarts: number;
  timer?: NodeJS.Timeout;
  detach?: () => Promise<void>;
}

export interface PrimaryOptions {
  configFile: string;
  log: Logger;
  /** --workers (overrides the config's `workers`) */
  workers?: number;
}

export interface RunningPrimary {
  slots: readonly Slot[];
  http?: PrimaryHttp;
  /** the SMTP listeners, as the first worker reported them */
  smtpAddresses: { address: HostPort; tls: boolean }[];
  /** drain every worker, then close (resolves when all are gone) */
  stop(reason: string): Promise<void>;
  reload(reason: string): void;
}

/** a free loopback port for a worker's own HTTP server (the primary keeps it for the slot) */
async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export async function runPrimary(opts: PrimaryOptions): Promise<RunningPrimary> {
  const { log } = opts;
  const { config, warnings } = await loadCheckedConfig(opts.configFile);
  for (const w of warnings) log.warn(w);
  const count = opts.workers ?? config.workers;

  // the shared state: with state.redis each worker is a Redis instance (no hub here)
  let store: StateStore | undefined;
  let host: IpcHost | undefined;
  if (!config.state.redis) {
    store = openStateStore({ dir: config.state.dir, secretKey: config.state.secretKey, log });
    host = new IpcHost(new InProcessHub({ store, log, leaseTtlMs: config.state.leaseTtlMs }), log);
  }

  const slots: Slot[] = [];
  for (let n = 1; n <= count; n++) {
    slots.push({
      n,
      httpPort: config.http.listen ? await freeLoopbackPort() : 0,
      up: false,
      startedAt: 0,
      failures: 0,
      restarts: 0,
    });
  }

  let stopping: Promise<void> | undefined;
  let seq = 0;
  const waiting = new Map<number, (m: FromWorker) => void>();
  let failedStart: ((err: Error) => void) | undefined;

  const fork = (slot: Slot) => {
    slot.timer = undefined;
    slot.up = false;
    slot.http = undefined;
    slot.startedAt = Date.now();
    const worker = cluster.fork({
      [WORKER_SLOT_ENV]: String(slot.n),
      ...(slot.httpPort ? { [WORKER_HTTP_ENV]: String(slot.httpPort) } : {}),
    });
    slot.worker = worker;
    if (host) {
      const endpoint = host.attach(peerChannel(worker), `worker:${worker.id}`);
      slot.detach = () => endpoint.close({ release: true });
    }
    const startTimer = setTimeout(() => {
      if (!slot.up && slot.worker === worker) {
        log.error({ worker: slot.n }, `worker ${slot.n} did not start within ${START_TIMEOUT_MS / 1000} s`);
        worker.process.kill('SIGKILL');
      }
    }, START_TIMEOUT_MS);
    startTimer.unref();
    worker.on('message', (m: unknown) => {
      if (!isControl(m)) return;
      const msg = m as FromWorker;
      if (msg.xow === 'up') {
        clearTimeout(startTimer);
        slot.up = true;
        slot.smtp = msg.smtp;
        if (msg.http) slot.http = msg.http;
        log.info({ worker: slot.n, workerPid: worker.process.pid }, `worker ${slot.n} up`);
      } else if (msg.xow === 'failed') {
        // a start that fails for a reason of the config (or a taken port) fails again: stop
        if (slot.restarts === 0) failedStart?.(new Error(msg.error));
      } else if (msg.xow === 'reloaded') {
        if (!msg.ok) log.warn({ worker: slot.n }, `worker ${slot.n} kept its configuration: ${msg.error}`);
      } else if ('id' in msg) {
        waiting.get(msg.id)?.(msg);
      }
    });
    worker.once('exit', (code, signal) => {
      clearTimeout(startTimer);
      const wasUp = slot.up;
      slot.up = false;
      slot.http = undefined;
      if (slot.worker === worker) slot.worker = undefined;
      // its leases and refresh locks return now, not after the lease TTL
      void slot.detach?.().catch(() => undefined);
      slot.detach = undefined;
      if (stopping) return;
      const ran = Date.now() - slot.startedAt;
      if (ran >= HEALTHY_AFTER_MS) slot.failures = 0;
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** slot.failures);
      slot.failures++;
      slot.restarts++;
      http?.workerRestarted();
      log.error(
        { worker: slot.n, workerPid: worker.process.pid, code, signal, wasUp, restartInMs: delay },
        `worker ${slot.n} exited (${signal ?? `code ${code}`}); restarting in ${delay} ms`,
      );
      slot.timer = setTimeout(() => fork(slot), delay);
    });
  };

  /**
   * ask one worker; undefined when it does not answer in time, or at once when it exits meanwhile
   * (so /readyz names a worker that died while asked, instead of waiting out the timeout and
   * answering about the state after its quick restart)
   */
  const ask = <T extends FromWorker>(slot: Slot, q: (id: number) => ToWorker, timeoutMs: number) =>
    new Promise<T | undefined>((resolve) => {
      const worker = slot.worker;
      if (!worker || !slot.up || !worker.isConnected()) return resolve(undefined);
      const id = ++seq;
      const settle = (m: unknown) => {
        clearTimeout(timer);
        waiting.delete(id);
        worker.off('exit', gone);
        resolve(m as T | undefined);
      };
      const gone = () => settle(undefined);
      const timer = setTimeout(gone, timeoutMs);
      waiting.set(id, settle);
      // after the slot's own exit handler, which marks the slot down
      worker.once('exit', gone);
      worker.send(q(id), undefined, {}, () => undefined);
    });

  const tell = (m: ToWorker) => {
    for (const s of slots) if (s.worker?.isConnected()) s.worker.send(m, undefined, {}, () => undefined);
  };

  let http: PrimaryHttp | undefined;
  if (config.http.listen) {
    http = await startPrimaryHttp({
      listen: config.http.listen,
      log,
      slots,
      draining: () => stopping !== undefined,
      ask,
    });
  }

  // start: every worker up, or the first failure
  const started = new Promise<void>((resolve, reject) => {
    const check = setInterval(() => {
      if (slots.every((s) => s.up)) {
        clearInterval(check);
        resolve();
      }
    }, 20);
    check.unref();
    failedStart = (err) => {
      clearInterval(check);
      reject(err);
    };
  });
  for (const s of slots) fork(s);

  const stop = (reason: string): Promise<void> =>
    (stopping ??= (async () => {
      log.info({ reason, workers: slots.length }, 'draining the workers');
      for (const s of slots) clearTimeout(s.timer);
      tell({ xow: 'drain' });
      // a worker drains within shutdownTimeout (+ closing its upstream connections); then it is killed
      const deadline = shutdownDeadline(config);
      await Promise.all(
        slots.map(
          (s) =>
            new Promise<void>((resolve) => {
              const w = s.worker;
              if (!w || w.isDead()) return resolve();
              const kill = setTimeout(() => {
                log.error({ worker: s.n }, `worker ${s.n} did not drain in time; killing it`);
                w.process.kill('SIGKILL');
              }, deadline);
              w.once('exit', () => {
                clearTimeout(kill);
                resolve();
              });
            }),
        ),
      );
      await http?.close();
      await host?.close();
      store?.close();
    })());

  try {
    await started;
  } catch (err) {
    await stop('a worker could not start');
    throw err;
  }
  failedStart = undefined;

  return {
    slots,
    ...(http ? { http } : {}),
    smtpAddresses: slots[0]?.smtp ?? [],
    stop,
    reload: (reason) => tell({ xow: 'reload', reason }),
  };
}

function shutdownDeadline(config: Config): number {
  return config.shutdownTimeoutMs + Math.max(1000, config.shutdownTimeoutMs / 10) + 5000;
}
