// `bench`: the load generator and report (README, "Benchmarks"), registered on the CLI by cli.ts.
import type { Command } from 'commander';
import { writeFile } from 'node:fs/promises';
import { BenchOptionError, parseBenchOptions, type RawBenchOptions } from './options.js';

export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description(
      'load generator: start the simulator and a proxy (or drive --target), send at a fixed rate or as fast ' +
        'as possible, print and write a JSON report (throughput, latency percentiles, proxy CPU/RSS, loss)',
    )
    .option(
      '--mailboxes <n>',
      'mailboxes the connections are spread over (connection i -> mailbox i % n)',
      '100',
    )
    .option('--connections <n>', 'client connections', '50')
    .option(
      '--rate <msg/s>',
      'offered load in messages per second (open loop: latency counts from the scheduled time)',
    )
    .option('--max', 'as fast as possible: every connection sends back to back')
    .option('--duration <sec>', 'how long to send (default 10 s unless --count is given)')
    .option('--count <n>', 'how many messages to send (with --duration: whichever comes first)')
    .option('--size <bytes>', 'message size in bytes', '2048')
    .option('--recipients <n>', 'recipients per message', '1')
    .option(
      '--tls',
      'proxy -> simulator (and the direct run) over STARTTLS, verified against the simulator certificate',
    )
    .option(
      '--target <host:port>',
      'drive an already running proxy instead of starting one (no direct run, no loss check)',
    )
    .option('--user-prefix <prefix>', 'mailboxes are <prefix><i>@<domain>, i from 0', 'bench')
    .option('--user-domain <domain>', 'domain of the mailboxes', 'example.com')
    .option('--password <password>', 'client password of every mailbox (required with --target)')
    .option('--proxy-pid <pid>', 'with --target: sample this process for CPU and RSS')
    .option('--no-direct', 'skip the direct baseline (generator straight to the simulator)')
    .option('--warmup <sec>', 'unmeasured warm-up at the same load before each measured run', '1')
    .option(
      '--warmup-messages <n>',
      'the warm-up also lasts until this many messages were sent (the JIT keeps compiling for the first ' +
        'few thousand); 0 = --warmup seconds alone',
      '5000',
    )
    .option(
      '--workers <n[,n...]>',
      'start the proxy as `serve --workers N`; a list (1,2) runs once per count, each with a fresh proxy and ' +
        'simulator, and prints a comparison (the JSON is then an array); CPU and RSS sum the primary and its workers',
    )
    .option('--pin-proxy <cpus>', 'run the proxy (and its workers) under `taskset -c CPUS`, e.g. 0')
    .option(
      '--pin-load <cpus>',
      'pin the load to CPUS: the generator (this process, taskset -a -p) and the simulator (taskset -c), e.g. 1',
    )
    .option(
      '--sim-arg <flag>',
      'pass a flag to the simulator (repeatable), e.g. --sim-arg=--no-chunking to compare DATA with BDAT upstream',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--json <file>', 'also write the JSON report to this file')
    .option('--quiet', 'no progress lines on stderr')
    .action(async (raw: RawBenchOptions, cmd: Command) => {
      let opts;
      try {
        opts = parseBenchOptions(raw);
      } catch (err) {
        if (err instanceof BenchOptionError) return cmd.error(`error: ${err.message}`);
        throw err;
      }
      // Loaded on use so other commands do not pay for the generator's imports.
      const { runBenchSeries } = await import('./run.js');
      const { formatSummary, formatComparison } = await import('./report.js');
      const results = await runBenchSeries(opts);
      // one run: the result object as always; a --workers list: an array of them
      const json = JSON.stringify(results.length === 1 ? results[0] : results, null, 2);
      if (opts.json) await writeFile(opts.json, json + '\n');
      if (!opts.quiet) {
        process.stderr.write(results.map(formatSummary).join('\n\n') + '\n');
        if (results.length > 1) process.stderr.write('\n' + formatComparison(results) + '\n');
      }
      process.stdout.write(json + '\n');
      process.exitCode = results.some((r) => (r.lost ?? 0) > 0) ? 1 : 0;
    });
}
