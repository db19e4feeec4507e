// `serve`: run the proxy until SIGTERM/SIGINT; SIGHUP reloads. With `--workers N` (or `workers:` in
// the config) the process becomes the primary of N workers (src/workers/README.md).
import cluster from 'node:cluster';
import os from 'node:os';
import { InvalidArgumentError, type Command } from 'commander';
import { createLogger, type Logger } from '../shared/log.js';
import { ConfigError } from '../config/errors.js';
import { loadCheckedConfig } from '../app/credentials.js';
import { formatHostPort } from '../shared/net.js';
import { runProxy, type RunningProxy } from '../app/run.js';
import { runPrimary } from '../workers/primary.js';
import { runWorker } from '../workers/worker.js';

function parseWorkers(v: string): number {
  if (v === 'auto') return Math.max(1, os.availableParallelism());
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 1024)
    throw new InvalidArgumentError('expected a number of workers (1-1024) or "auto"');
  return n;
}

function cannotStart(configFile: string, err: unknown): void {
  if (err instanceof ConfigError) {
    process.stderr.write(`${configFile}: invalid configuration\n${err.message}\n`);
  } else {
    process.stderr.write(
      `xoauth2-proxy: cannot start: ${err instanceof Error ? err.message : String(err)}\n`,
    );
  }
  process.exitCode = 1;
}

/** SIGTERM/SIGINT: run `stop` once, then exit 0 (1 if it failed) */
function onStopSignals(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal: sig }, 'shutting down');
    stop().then(
      () => {
        log.info('stopped');
        log.flush?.();
        setTimeout(() => process.exit(0), 50).unref();
      },
      (err) => {
        log.error({ err: String(err) }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => handler('SIGTERM'));
  process.on('SIGINT', () => handler('SIGINT'));
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the proxy')
    .option('-c, --config <file>', 'config file (YAML or JSON)', './xoauth2-proxy.yaml')
    .option(
      '-w, --workers <n>',
      'worker processes sharing the listeners, or "auto" (one per core); overrides `workers:` in the config',
      parseWorkers,
    )
    .action(async (opts: { config: string; workers?: number }) => {
      const log = createLogger();
      if (cluster.isWorker) {
        // forked by the primary below, with the same arguments
        await runWorker(opts.config, log).catch((err) => {
          cannotStart(opts.config, err);
          log.flush?.();
          setTimeout(() => process.exit(1), 50).unref();
        });
        return;
      }
      let workers = opts.workers;
      if (workers === undefined) {
        try {
          workers = (await loadCheckedConfig(opts.config)).config.workers;
        } catch (err) {
          cannotStart(opts.config, err);
          return;
        }
      }
      if (workers > 1) return servePrimary(opts.config, workers, log);

      let running: RunningProxy;
      try {
        running = await runProxy(opts.config, log);
      } catch (err) {
        cannotStart(opts.config, err);
        return;
      }
      const { proxy, http } = running;
      for (const l of proxy.smtpAddresses) {
        process.stderr.write(`smtp${l.tls ? 's' : ''} listening on ${formatHostPort(l.address)}\n`);
      }
      if (http)
        process.stderr.write(
          `http listening on ${formatHostPort(http.address)} (/metrics /healthz /readyz)\n`,
        );
      process.on('SIGHUP', () => void proxy.reload('SIGHUP'));
      onStopSignals(log, () => running.stop());
    });
}

async function servePrimary(configFile: string, workers: number, log: Logger): Promise<void> {
  // signals that arrive while the workers start are handled once they are up
  let primary: Awaited<ReturnType<typeof runPrimary>>;
  try {
    primary = await runPrimary({ configFile, log, workers });
  } catch (err) {
    cannotStart(configFile, err);
    log.flush?.();
    setTimeout(() => process.exit(1), 50).unref();
    return;
  }
  for (const l of primary.smtpAddresses) {
    process.stderr.write(`smtp${l.tls ? 's' : ''} listening on ${formatHostPort(l.address)}\n`);
  }
  if (primary.http)
    process.stderr.write(
      `http listening on ${formatHostPort(primary.http.address)} (/metrics /healthz /readyz)\n`,
    );
  process.stderr.write(`${workers} workers\n`);
  process.on('SIGHUP', () => primary.reload('SIGHUP'));
  onStopSignals(log, () => primary.stop('signal'));
}
