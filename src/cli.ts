#!/usr/bin/env -S node --max-semi-space-size=4 --v8-pool-size=1
// xoauth2-proxy command line (README, "Commands"). The shebang caps V8's young generation at 2 x 4 MB
// (at load it otherwise grows to 2 x 16 MB, a quarter of the proxy's memory) and V8's background
// threads at one (each of the default four keeps a malloc arena of its compiles and GC work: ~6 MB
// in all), for no measurable cost in CPU (docs/performance.md, memory). They can only be set when
// Node starts; deploy/ and the bench start Node with the same flags.
import { Command } from 'commander';
import { createRequire } from 'node:module';

const pkg = createRequire(import.meta.url)('../package.json') as { version: string };

type Register = (program: Command) => void;

// Each group of commands is loaded only when it is the one run (or for the full help): a `serve`
// that also loaded the simulator, the demo and the bench kept their code in its heap for its
// whole life (docs/performance.md, memory).
const GROUPS: { names: readonly string[]; load: () => Promise<Register> }[] = [
  { names: ['serve'], load: async () => (await import('./commands/serve.js')).registerServeCommand },
  {
    names: ['check', 'hash-password'],
    load: async () => (await import('./commands/check.js')).registerConfigCommands,
  },
  { names: ['simulate'], load: async () => (await import('./tools/sim/index.js')).registerSimulateCommand },
  { names: ['demo'], load: async () => (await import('./tools/demo/demo.js')).registerDemoCommand },
  { names: ['bench'], load: async () => (await import('./tools/bench/command.js')).registerBenchCommand },
  {
    names: ['accounts'],
    load: async () => (await import('./commands/accounts.js')).registerAccountsCommands,
  },
];

async function main(): Promise<void> {
  const program = new Command();
  program
    .name('xoauth2-proxy')
    .description('SMTP relay: password-only SMTP clients in, XOAUTH2 to Gmail / Microsoft 365 out')
    .version(pkg.version)
    .showHelpAfterError();
  const wanted = process.argv[2];
  const one = GROUPS.find((g) => wanted !== undefined && g.names.includes(wanted));
  for (const g of one ? [one] : GROUPS) (await g.load())(program);
  await program.parseAsync(process.argv);
}

main().catch((err: unknown) => {
  process.stderr.write(`xoauth2-proxy: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
