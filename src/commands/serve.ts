// `serve`: run the proxy until SIGTERM/SIGINT; SIGHUP reloads.
import type { Command } from 'commander';
import { createLogger } from '../shared/log.js';
import { ConfigError } from '../config/errors.js';
import { formatHostPort } from '../shared/net.js';
import { runProxy, type RunningProxy } from '../app/run.js';

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the proxy')
    .option('-c, --config <file>', 'config file (YAML or JSON)', './xoauth2-proxy.yaml')
    .action(async (opts: { config: string }) => {
      const log = createLogger();
      let running: RunningProxy;
      try {
        running = await runProxy(opts.config, log);
      } catch (err) {
        if (err instanceof ConfigError) {
          process.stderr.write(`${opts.config}: invalid configuration\n${err.message}\n`);
        } else {
          process.stderr.write(
            `xoauth2-proxy: cannot start: ${err instanceof Error ? err.message : String(err)}\n`,
          );
        }
        process.exitCode = 1;
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
      let stopping = false;
      const stop = (sig: string) => {
        if (stopping) return;
        stopping = true;
        log.info({ signal: sig }, 'shutting down');
        running.stop().then(
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
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}
